"""memtune-export's third source: an MLflow trial run of memtune-sweep, its config re-composed from the run's params
and checked against its policy.json artifact."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from omegaconf import DictConfig

from .sources import ExportError, redact, same_policy, scores_of


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
    same_policy(composed, json.loads(Path(local).read_text()), f"the policy.json artifact of run {cfg.run_id}")
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
    return composed, scores_of(tune, heldout), source


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


def _csv(value: str | None) -> list[str] | None:
    return [v for v in value.split(",") if v] if value else None


def _scratch() -> Path:
    import tempfile

    return Path(tempfile.mkdtemp(prefix="memtune-export-"))
