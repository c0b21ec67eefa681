"""MLflow logging for memtune-compile: one run per compile in the sweep's tracking store (conf/tracking/mlflow.yaml,
experiment memtune-compile): optimizer and data as params, the stage metric before and after on the held-out
examples as metrics (before.*, after.*), the program state, its metadata and report.json as artifacts."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..sweep.run_record import as_number, sanitize
from ..sweep.tracking import _open, absolute_sqlite, retrying


def flat(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out |= flat(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return {prefix: value}


def compile_metrics(meta: Mapping[str, Any]) -> dict[str, float]:
    """before.* / after.* numbers of the metadata (per-op scores flattened: after.per_op.UPDATE.f1)."""
    out = {}
    for side in ("before", "after"):
        for key, value in flat(meta.get(side) or {}, side).items():
            number = as_number(value)
            if number is not None and not isinstance(value, bool):
                out[key] = float(number)
    return out


def log_compile_run(tracking: Any, name: str, meta: Mapping[str, Any], artifacts: Iterable[Path]) -> str | None:
    """Log one compile run; returns its run id (None with tracking disabled)."""
    if tracking is None or not tracking.get("enabled", False):
        return None
    from mlflow.entities import Metric, Param

    client = retrying(lambda: _open(absolute_sqlite(str(tracking.tracking_uri))), "open the MLflow tracking store")
    experiment = str(tracking.experiment)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        location = tracking.get("artifact_location")
        experiment_id = client.create_experiment(
            experiment, artifact_location=Path(location).resolve().as_uri() if location else None
        )
    else:
        experiment_id = found.experiment_id
    run = client.create_run(experiment_id, run_name=name, tags={"memtune.role": "compile"})
    run_id = run.info.run_id
    params = {
        k: v for k, v in flat({k: meta[k] for k in ("optimizer", "metric", "trainset", "prompt_knobs")}, "").items()
    }
    params |= {
        "lm": meta.get("lm"),
        "proposer_lm": meta.get("proposer_lm"),
        "stage": meta.get("stage", ""),
        "name": name,
    }
    items = [Param(sanitize(k), json.dumps(v) if isinstance(v, (list, dict)) else str(v)) for k, v in params.items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start : start + 100])
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(sanitize(k), v, now, 0) for k, v in compile_metrics(meta).items()])
    for path in artifacts:
        if Path(path).exists():
            client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, "FINISHED")
    return run_id
