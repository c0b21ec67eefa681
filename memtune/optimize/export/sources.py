"""Where memtune-export takes a policy from: a plain config or a study trial (an MLflow trial run: mlflow_run.py).
Each source returns (composed config, scores, source); app.py writes the bundle."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ...policies.runtime.renamed_targets import current_targets

_USERINFO = re.compile(r"://[^/@\s]+@")


class ExportError(ValueError):
    """The chosen source (run, study, trial) cannot be exported; the message says why and what to do."""


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

        backend: str | JournalStorage = JournalStorage(JournalFileBackend(str(Path(url).resolve())))
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
        same_policy(composed, ran, f"{summary_path} (the config trial {trial.number} ran)")
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
    return composed, scores_of(tune, heldout), source


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


def scores_of(tune: dict | None, heldout: dict | None) -> dict:
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


def same_policy(composed: DictConfig, recorded: Any, where: str) -> None:
    mine = cast(dict, OmegaConf.to_container(composed.policy, resolve=True))
    recorded = current_targets(recorded)  # a trial recorded before the source tree was split
    if recorded is not None and json.loads(json.dumps(mine)) != json.loads(json.dumps(recorded)):
        diff = sorted(k for k in set(mine) | set(recorded) if mine.get(k) != recorded.get(k))
        raise ExportError(
            f"re-composed policy differs from {where} in {diff}: the conf/ tree changed since the "
            "sweep, or the sweep's own overrides are unknown (pass base_overrides=[...])"
        )


def redact(url: str) -> str:
    """Drop a user:password@ part from a URL before it is written anywhere."""
    return _USERINFO.sub("://***@", url)


def _task_overrides() -> list[str]:
    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:  # not inside a Hydra app (tests compose directly)
        return []
