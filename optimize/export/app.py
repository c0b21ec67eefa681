"""`memtune-export`: write the bundle of one chosen policy (policies/runtime/bundle.py), optionally registered in MLflow.

    memtune-export policy=mem0_offline                             # a plain Hydra config: no sweep, no scores
    memtune-export study=<name> pick=best|pareto:<objective>|trial:<n> [storage=sqlite:///.../optuna.db]
    memtune-export run_id=<MLflow trial run id>                    # tracking URI: tracking.tracking_uri
    memtune-export ... out=bundles/mine register=memtune-policy    # + MLflow pyfunc model, registered

A study trial's config is re-composed exactly as memtune-sweep composed it (`sweep_config` + the sweep's
command-line overrides + the trial's overrides, all recorded on the trial); an MLflow run's config the same
way from its params, then checked against its policy.json artifact. The bundle says which split its scores come
from: `tune` (the conversations the trial was selected on: optimistic) and, when memtune-sweep re-scored the
trial, `heldout` (never tuned on); and, in source.knobs, which settings the study tuned (the trial's own
overrides), which it left at the base config's value (`defaulted`), and which search-space knobs it did not
sample and why (`not_sampled`: no objective depends on them, or inactive in this trial).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm/mlflow hang offline without it

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ...policies.runtime.bundle import build_stages
from ...policies.runtime.bundle_config import bundle_config
from ...policies.runtime.bundle_save import graph_stages, module_states, policy_hash, save_bundle
from ..sweep.knob_deps import knob_record

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
_USERINFO = re.compile(r"://[^/@\s]+@")


class ExportError(ValueError):
    """The chosen source (run, study, trial) cannot be exported; the message says why and what to do."""


# ---- sources: each returns (composed config, scores, source) ------------------------------------------------
EXPORT_KEYS = (
    "run_id",
    "study",
    "storage",
    "pick",
    "sweep_config",
    "base_overrides",
    "out",
    "name",
    "version",
    "force",
    "register",
    "registry",
    "tracking",
    "hydra",
)


def policy_overrides(overrides: Sequence[str]) -> list[str]:
    """The overrides that shaped the policy config (memtune-export's own settings left out)."""

    def key(o: str) -> str:
        return re.split(r"[=.@/]", o.lstrip("+~"), maxsplit=1)[0]

    return [o for o in overrides if key(o) not in EXPORT_KEYS]


def from_config(cfg: DictConfig) -> tuple[DictConfig, dict, dict]:
    overrides = policy_overrides(_task_overrides())
    return (
        cfg,
        {
            "chosen_on": None,
            "tune": None,
            "heldout": None,
            "note": "exported from a plain config, not chosen by a sweep: no scores (memtune-eval scores it)",
        },
        {"kind": "config", "overrides": overrides},
    )


def from_study(cfg: DictConfig) -> tuple[DictConfig, dict, dict]:
    import optuna

    from ..sweep.tracking import absolute_sqlite

    storage = str(cfg.storage)
    url = storage if storage.endswith((".journal", ".log")) and "://" not in storage else absolute_sqlite(storage)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).exists():
        raise ExportError(f"storage {url} does not exist: pass storage=<the sweep's sweep.storage>")
    if "://" not in url:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        backend = JournalStorage(JournalFileBackend(str(Path(url).resolve())))
    else:
        backend = url
    names = [s.study_name for s in optuna.get_all_study_summaries(backend)]
    if str(cfg.study) not in names:
        raise ExportError(f"study {cfg.study!r} is not in {redact(url)} (has: {names})")
    study = optuna.load_study(study_name=str(cfg.study), storage=backend)
    signature = study.user_attrs.get("signature") or {}
    objectives = signature.get("objectives") or [
        {"name": f"objective_{i}", "metric": f"objective_{i}", "direction": d.name.lower()}
        for i, d in enumerate(study.directions)
    ]
    trial = pick_trial(study, str(cfg.pick), objectives)
    overrides = list(trial.user_attrs.get("overrides") or [])
    base = trial.user_attrs.get("base_overrides")
    if base is None:
        base = list(cfg.base_overrides or [])
        print(
            f"[export] trial {trial.number} did not record the sweep's own overrides (older memtune-sweep): "
            f"using base_overrides={base}",
            file=sys.stderr,
        )
    composed = hydra.compose(
        config_name=str(trial.user_attrs.get("config_name") or cfg.sweep_config), overrides=[*base, *overrides]
    )
    summary_path = trial.user_attrs.get("summary")
    if summary_path and Path(summary_path).is_file():  # the trial's own record of the config it ran
        ran = json.loads(Path(summary_path).read_text()).get("config", {}).get("policy")
        _same_policy(composed, ran, f"{summary_path} (the config trial {trial.number} ran)")
    metrics = dict(trial.user_attrs.get("metrics") or {})
    metrics |= {o["metric"]: v for o, v in zip(objectives, trial.values)}
    tune = {
        "conversations": signature.get("tune"),
        "metrics": metrics,
        "objectives": {o["name"]: v for o, v in zip(objectives, trial.values)},
    }
    heldout = _heldout_from_dir(Path(summary_path).parents[2] if summary_path else None, trial.number)
    source = {
        "kind": "study",
        "study": study.study_name,
        "storage": redact(url),
        "trial": trial.number,
        "pick": str(cfg.pick),
        "overrides": overrides,
        "base_overrides": list(base),
        "mlflow_run_id": trial.user_attrs.get("mlflow_run_id"),
        "not_sampled": trial.user_attrs.get("not_sampled") or signature.get("not_sampled") or {},
    }
    return composed, _scores(tune, heldout), source


def pick_trial(study, pick: str, objectives: Sequence[Mapping[str, Any]]):
    """best | pareto:<objective name> | trial:<number>; only COMPLETE trials (a pruned one was never fully scored)."""
    from optuna.trial import TrialState

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not complete:
        raise ExportError(f"study {study.study_name!r} has no COMPLETE trial yet")
    if pick == "best":
        if len(study.directions) > 1:
            names = [o["name"] for o in objectives]
            raise ExportError(
                f"study {study.study_name!r} has {len(names)} objectives {names}: 'best' is ambiguous; "
                f"use pick=pareto:<objective> (e.g. pick=pareto:{names[0]}) or pick=trial:<n>"
            )
        return study.best_trial
    if pick.startswith("pareto:"):
        name = pick.split(":", 1)[1]
        index = next((i for i, o in enumerate(objectives) if o["name"] == name), None)
        if index is None:
            raise ExportError(f"pick={pick}: no objective {name!r} (has: {[o['name'] for o in objectives]})")
        sign = 1 if objectives[index]["direction"] == "maximize" else -1
        return max(study.best_trials, key=lambda t: (sign * t.values[index], -t.number))
    if pick.startswith("trial:"):
        try:
            number = int(pick.split(":", 1)[1])
        except ValueError:
            raise ExportError(f"pick={pick}: trial:<number>, e.g. trial:12") from None
        found = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
        if found is None or found.state != TrialState.COMPLETE:
            state = found.state.name if found else "missing"
            raise ExportError(
                f"trial {number} of study {study.study_name!r} is {state}: only COMPLETE trials can be "
                f"exported (COMPLETE: {[t.number for t in complete][:50]})"
            )
        return found
    raise ExportError(f"pick={pick!r}: use best, pareto:<objective name> or trial:<number>")


def from_run(cfg: DictConfig) -> tuple[DictConfig, dict, dict]:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from ..sweep.tracking import absolute_sqlite

    uri = absolute_sqlite(str(cfg.tracking.tracking_uri))
    client = MlflowClient(tracking_uri=uri)
    try:
        run = client.get_run(str(cfg.run_id))
    except MlflowException as err:
        raise ExportError(
            f"MLflow run {cfg.run_id!r} not found in {redact(uri)} ({err.message[:200]}): pass "
            "tracking.tracking_uri=<the sweep's tracking URI>"
        ) from None
    tags, params = run.data.tags, run.data.params
    if tags.get("memtune.role") != "trial":
        raise ExportError(
            f"MLflow run {cfg.run_id} is not a memtune-sweep trial run (tag memtune.role="
            f"{tags.get('memtune.role')!r}): pass the run id of one trial"
        )
    if run.info.status != "FINISHED":
        raise ExportError(
            f"MLflow run {cfg.run_id} is {run.info.status}: only FINISHED (complete) trials can be exported"
        )
    parent = client.get_run(tags["mlflow.parentRunId"]) if tags.get("mlflow.parentRunId") else None
    pparams = parent.data.params if parent else {}
    base = split_overrides(pparams.get("base_overrides", "")) if parent else list(cfg.base_overrides or [])
    overrides = split_overrides(params.get("overrides", ""))
    composed = hydra.compose(config_name=str(cfg.sweep_config), overrides=[*base, *overrides])
    local = client.download_artifacts(run.info.run_id, "policy.json", str(_scratch()))
    _same_policy(composed, json.loads(Path(local).read_text()), f"the policy.json artifact of run {cfg.run_id}")
    metrics = run.data.metrics
    tune = {
        "conversations": _csv(pparams.get("tune_conversations")),
        "metrics": {_metric_path(k.removeprefix("overall.")): v for k, v in metrics.items() if k.startswith("overall.")}
        | {k: v for k, v in metrics.items() if k.startswith("cost.")},
        "objectives": {k.removeprefix("objective."): v for k, v in metrics.items() if k.startswith("objective.")},
    }
    trial = tags.get("memtune.trial")
    prefix = f"heldout.trial-{trial}."
    held = {
        _metric_path(k[len(prefix) :]): v
        for k, v in (parent.data.metrics if parent else {}).items()
        if k.startswith(prefix)
    }
    heldout = {"conversations": _csv(pparams.get("holdout_conversations")), "metrics": held} if held else None
    source = {
        "kind": "mlflow_run",
        "run_id": run.info.run_id,
        "tracking_uri": redact(uri),
        "experiment_id": run.info.experiment_id,
        "study": (parent.data.tags.get("memtune.study") if parent else None),
        "trial": int(trial) if trial is not None else None,
        "overrides": overrides,
        "base_overrides": base,
        "not_sampled": json.loads(params.get("not_sampled") or pparams.get("not_sampled") or "{}"),
    }
    return composed, _scores(tune, heldout), source


# ---- helpers --------------------------------------------------------------------------------------------------
def _scores(tune: dict | None, heldout: dict | None) -> dict:
    note = "'tune' scores come from the conversations the trial was selected on (optimistic); " + (
        "'heldout' scores come from conversations the sweep never tuned on."
        if heldout
        else "no held-out score was recorded for this trial (memtune-sweep re-scores only the "
        "trials it reports): run memtune-eval on held-out conversations before trusting it."
    )
    return {"chosen_on": "tune", "tune": tune, "heldout": heldout, "note": note}


def _heldout_from_dir(sweep_dir: Path | None, number: int) -> dict | None:
    """The trial's held-out scores from the sweep's heldout.json, when the sweep re-scored it."""
    path = sweep_dir / "heldout.json" if sweep_dir else None
    if path is None or not path.is_file():
        return None
    doc = json.loads(path.read_text())
    row = next((r for r in doc.get("selected", []) if r.get("trial") == number and r.get("heldout")), None)
    return (
        {"conversations": doc.get("holdout_conversations"), "metrics": row["heldout"], "file": str(path)}
        if row
        else None
    )


def _same_policy(composed: DictConfig, recorded: Any, where: str) -> None:
    mine = OmegaConf.to_container(composed.policy, resolve=True)
    if recorded is not None and json.loads(json.dumps(mine)) != json.loads(json.dumps(recorded)):
        diff = sorted(k for k in set(mine) | set(recorded) if mine.get(k) != recorded.get(k))
        raise ExportError(
            f"re-composed policy differs from {where} in {diff}: the conf/ tree changed since the "
            "sweep, or the sweep's own overrides are unknown (pass base_overrides=[...])"
        )


def split_overrides(text: str) -> list[str]:
    """'a=1 b=[x, y]' -> ['a=1', 'b=[x, y]']: split on spaces outside brackets and quotes."""
    out, cur, depth, quote = [], "", 0, ""
    for ch in text or "":
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch.isspace() and depth == 0:
            if cur:
                out.append(cur)
            cur = ""
            continue
        cur += ch
    return out + ([cur] if cur else [])


def _metric_path(name: str) -> str:
    """An MLflow metric name of memtune-sweep back to its summary.json path (overall scores, or cost.*)."""
    return name if name.startswith("cost.") else f"scores.overall.{name}"


def redact(url: str) -> str:
    """Drop a user:password@ part from a URL before it is written anywhere."""
    return _USERINFO.sub("://***@", url)


def _csv(value: str | None) -> list[str] | None:
    return [v for v in value.split(",") if v] if value else None


def _scratch() -> Path:
    import tempfile

    return Path(tempfile.mkdtemp(prefix="memtune-export-"))


def _task_overrides() -> list[str]:
    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:  # not inside a Hydra app (tests compose directly)
        return []


# ---- the command ------------------------------------------------------------------------------------------------
def run_export(cfg: DictConfig, overrides: Sequence[str] | None = None) -> dict:
    """Export one policy as a bundle (and register it when `register` is set). Hydra must be initialised."""
    if cfg.run_id and cfg.study:
        raise ExportError("give one source: run_id=... or study=..., not both")
    if cfg.run_id:
        composed, scores, source = from_run(cfg)
    elif cfg.study:
        composed, scores, source = from_study(cfg)
    else:
        composed, scores, source = from_config(cfg)
        if overrides is not None:
            source["overrides"] = policy_overrides(overrides)
    config = bundle_config(composed)
    if source["kind"] in ("study", "mlflow_run"):  # which settings the study chose, which it left at their defaults
        source["knobs"] = knob_record(config, source["overrides"], source.pop("not_sampled"))
    if cfg.get("bundle_store"):  # store settings are the deployment's, not the tuned policy's (eval keeps no versions)
        config["store"] = OmegaConf.to_container(
            hydra.compose(config_name="eval", overrides=[f"store={cfg.bundle_store}"]).store, resolve=True
        )
    embedder = instantiate(composed.embedder)  # id and dim only: MiniLM loads its weights on first use
    name = str(cfg.name) if cfg.name else None
    stages = build_stages(config) | graph_stages(config)
    version = str(cfg.version) if cfg.version else None
    target = Path(str(cfg.out)) if cfg.out else None
    if target is None:
        label = name or str(config["policy"].get("name") or "policy")
        target = Path("bundles") / (version or f"{label}-{policy_hash(config, module_states(stages))}")
    info = save_bundle(
        target,
        config,
        embedder_id=embedder.id,
        embedder_dim=int(embedder.dim),
        stages=stages,
        name=name,
        version=version,
        scores=scores,
        source=source,
        overwrite=bool(cfg.force),
    )
    result = {"bundle": info.path, "version": info.version, "source": source, "scores": scores}
    print(f"[export] bundle {info.version} -> {info.path}")
    print(f"[export] scores: {_score_line(scores)}")
    if cfg.register:
        from .registry import register_bundle

        reg = register_bundle(
            info.path,
            str(cfg.register),
            tracking_uri=str(cfg.tracking.tracking_uri),
            experiment=str(cfg.registry.experiment),
            artifact_location=cfg.tracking.get("artifact_location"),
            store_uri=cfg.registry.store_uri,
        )
        result["registered"] = reg
        print(f"[export] registered {reg['model_uri']} (MLflow run {reg['run_id']})")
    return result


def _score_line(scores: Mapping[str, Any]) -> str:
    if not scores.get("tune"):
        return scores.get("note", "none")
    parts = [f"tune {k}={v:.4g}" for k, v in (scores["tune"].get("objectives") or {}).items()]
    if scores.get("heldout"):
        held = scores["heldout"]["metrics"].items()
        parts += [
            f"heldout {k.removeprefix('scores.overall.')}={v:.4g}"
            for k, v in held
            if isinstance(v, (int, float)) and k.startswith("scores.overall.")
        ]
    else:
        parts.append("no held-out score")
    return ", ".join(parts)


def export_from_overrides(overrides: Sequence[str]) -> dict:
    """memtune-export as a function (tests, notebooks): compose conf/export.yaml with `overrides` and run it."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="export", overrides=list(overrides))
        return run_export(cfg, overrides=list(overrides))


@hydra.main(config_path="pkg://memtune.conf", config_name="export", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        run_export(cfg)
    except (ExportError, FileExistsError, ValueError) as err:
        print(f"memtune-export: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
