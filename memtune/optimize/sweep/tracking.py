"""MLflow logging for memtune-sweep: one parent run per study, one nested run per trial.

Parent run (tag memtune.role=study): the search space and sweep config as params; at the end the held-out
scores as metrics and the study artifacts (trials.parquet, pareto.parquet, heldout.json, plots).
Trial run (tag mlflow.parentRunId = the parent): every knob as a param (the trial's overrides and the resolved
policy config, flattened), every metric of summary.json overall and per category, cost metrics (memories
stored, LM calls/tokens per phase, context tokens), the ingestion-cache hit rate, the objective after each
tune conversation (as steps), and artifacts policy.json + questions.parquet. An oracle trial (a stage that reads
the benchmark's annotations, `policy/extractor=observations`) has the metric `oracle` = 1 and the tag
`memtune.oracle` = true (false otherwise), so it is never read as a policy. A failed trial ends FAILED with
its error as a tag and error.txt; a trial whose worker died is marked KILLED when the sweep finds it.

MLflow is optional: `tracking=none` gives `NullTracker`, and mlflow is imported only by `MlflowTracker`.
Set LITELLM_LOCAL_MODEL_COST_MAP=True before importing mlflow offline (memtune.optimize.sweep.study does).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # mlflow (via litellm) hangs offline without it

from .run_record import as_number, oracle_tags, sanitize


class NullTracker:
    """tracking=none: nothing is logged anywhere but the Optuna storage and the run directory."""

    enabled = False
    parent_run_id: str | None = None
    link: Callable[[int, str], None] | None = None  # told (trial number, run id) when a queued run is created

    def start_study(self, key: str, name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> None: ...
    def start_trial(self, number: int, params: Mapping[str, Any]) -> str | None:
        return None

    def log_step(self, run_id: str | None, step: int, metrics: Mapping[str, float]) -> None: ...
    def end_trial(
        self,
        run_id: str | None,
        status: str,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        artifacts: Iterable[Path] = (),
        dicts: Mapping[str, Any] | None = None,
        error: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None: ...
    def mark_killed(self, run_id: str | None, reason: str) -> None: ...
    def end_study(
        self, *, metrics: Mapping[str, float] | None = None, artifacts: Iterable[Path] = (), finished: bool = True
    ) -> None: ...
    def settle(self, study: Any, objectives: Sequence[str] = ()) -> None:
        """Make the trial runs agree with the Optuna study (ResilientTracker, tracking_buffer.py)."""

    def ui_hint(self) -> str:
        return "tracking=none: no MLflow runs were logged"


class MlflowTracker(NullTracker):
    enabled = True

    def __init__(
        self, tracking_uri: str, experiment: str, artifact_location: str | None = None, open_attempts: int = 5
    ):
        self.tracking_uri, self.experiment_name = tracking_uri, experiment
        # opening the store creates/migrates its tables; workers starting together race for that: retry
        self.client = retrying(lambda: _open(tracking_uri), "open the MLflow tracking store", attempts=open_attempts)
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            location = Path(artifact_location).resolve().as_uri() if artifact_location else None
            try:
                self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
            except Exception:  # another worker created it first
                found = self.client.get_experiment_by_name(experiment)
                if found is None:
                    raise
                self.experiment_id = found.experiment_id
        else:
            self.experiment_id = found.experiment_id
        self.parent_run_id = None
        self.study_key = ""

    # ---- study ----------------------------------------------------------------------------------------------
    def _parents(self) -> list:
        return self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`memtune.study_key` = '{self.study_key}' and tags.`memtune.role` = 'study'",
            order_by=["attributes.start_time ASC"],
            max_results=50,
        )

    def start_study(self, key: str, name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        """Create the study's parent run, or re-open the one an earlier (or parallel) worker created.

        Workers that race to create it converge on the oldest parent run; a duplicate is deleted (one that looked
        oldest until a slower worker's older run appeared is deleted when the runs are settled: tracking_settle.py)."""
        from mlflow.entities import Param

        self.study_key = key
        while parents := self._parents():
            self.parent_run_id = parents[0].info.run_id
            try:
                self.client.update_run(self.parent_run_id, status="RUNNING")
                return
            except Exception as err:  # deleted as a duplicate between the search and now: look again
                if "deleted" not in str(err):
                    raise
        run = self.client.create_run(
            self.experiment_id, run_name=name, tags={"memtune.role": "study", "memtune.study_key": key, **tags}
        )
        mine = run.info.run_id
        oldest = self._parents()[0].info.run_id
        if oldest != mine:
            self.client.set_terminated(mine, "KILLED")  # no deleted run is left RUNNING either
            self.client.delete_run(mine)
            self.parent_run_id = oldest
            return
        self.parent_run_id = mine
        items = [Param(sanitize(k), str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(mine, params=items[start : start + 100])

    def end_study(
        self, *, metrics: Mapping[str, float] | None = None, artifacts: Iterable[Path] = (), finished: bool = True
    ) -> None:
        if self.parent_run_id is None:
            return
        self._metrics(self.parent_run_id, metrics or {})
        for path in artifacts:
            if Path(path).exists():
                self.client.log_artifact(self.parent_run_id, str(path))
        if finished:
            self.client.set_terminated(self.parent_run_id, "FINISHED")

    # ---- trials ---------------------------------------------------------------------------------------------
    def start_trial(self, number: int, params: Mapping[str, Any]) -> str | None:
        run_id = self.create_trial_run(number)
        self.log_params(run_id, params)
        return run_id

    def create_trial_run(self, number: int) -> str:
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"trial-{number:04d}",
            tags={
                "mlflow.parentRunId": self.parent_run_id,
                "memtune.role": "trial",
                "memtune.study_key": self.study_key,
                "memtune.trial": str(number),
            },
        )
        return run.info.run_id

    def log_params(self, run_id: str | None, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        if not run_id:
            return
        items = [Param(sanitize(k), str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[start : start + 100])

    def _metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(sanitize(k), float(v), now, step) for k, v in metrics.items() if as_number(v) is not None]
        for start in range(0, len(items), 1000):
            self.client.log_batch(run_id, metrics=items[start : start + 1000])

    def log_step(self, run_id: str | None, step: int, metrics: Mapping[str, float]) -> None:
        if run_id:
            self._metrics(run_id, metrics, step=step)

    def end_trial(
        self,
        run_id: str | None,
        status: str,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        artifacts: Iterable[Path] = (),
        dicts: Mapping[str, Any] | None = None,
        error: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """status: FINISHED (complete), KILLED (pruned), FAILED (error). `tags` (e.g. `summary_tags`) are set on
        the run; without them the memtune.oracle tag still follows the `oracle` metric (`oracle_tags`)."""
        if not run_id:
            return
        from mlflow.entities import Param

        try:
            for key, value in {**oracle_tags(metrics), **(tags or {})}.items():
                self.client.set_tag(run_id, key, value)
            if params:
                logged = set(self.client.get_run(run_id).data.params)
                items = [Param(sanitize(k), str(v)[:6000]) for k, v in params.items() if sanitize(k) not in logged]
                for start in range(0, len(items), 100):
                    self.client.log_batch(run_id, params=items[start : start + 100])
            self._metrics(run_id, metrics or {})
            for name, value in (dicts or {}).items():
                self.client.log_dict(run_id, value, name)
            for path in artifacts:
                if Path(path).exists():
                    self.client.log_artifact(run_id, str(path))
            if error:
                self.client.set_tag(run_id, "memtune.error", error[:5000])
                self.client.log_text(run_id, error, "error.txt")
        finally:
            self.client.set_terminated(run_id, status)

    def mark_killed(self, run_id: str | None, reason: str) -> None:
        if not run_id:
            return
        try:
            self.client.set_tag(run_id, "memtune.error", reason[:5000])
            self.client.set_terminated(run_id, "KILLED")
        except Exception as err:  # the run may not exist in this tracking store
            print(f"[tracking] could not mark MLflow run {run_id} killed: {err}", file=sys.stderr)

    def ui_hint(self) -> str:
        if self.tracking_uri.startswith(("http://", "https://")):
            return f"MLflow UI: {self.tracking_uri} (experiment {self.experiment_name!r})"
        return (
            f"MLflow UI: LITELLM_LOCAL_MODEL_COST_MAP=True uv run mlflow ui --backend-store-uri "
            f"{self.tracking_uri}  (experiment {self.experiment_name!r}, then http://127.0.0.1:5000)"
        )


def _open(tracking_uri: str):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    client.search_experiments(max_results=1)  # forces the store (and its schema migration) now
    return client


def retrying(fn, what: str, attempts: int = 5, wait: float = 2.0):
    """fn(), retried a few times: workers that start together race to create a store's tables."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as err:  # sqlalchemy OperationalError ("duplicate column", "database is locked")
            if attempt == attempts:
                raise
            print(
                f"[tracking] {what}: {type(err).__name__}: {str(err)[:200]} (attempt {attempt}/{attempts}, retrying)",
                file=sys.stderr,
            )
            time.sleep(wait * attempt)


def absolute_sqlite(url: str) -> str:
    """sqlite:///relative/path.db -> sqlite:////abs/path.db (and create its folder); other URLs unchanged."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == prefix + ":memory:":
        return url
    path = Path(url[len(prefix) :])
    path = path if path.is_absolute() else Path.cwd() / path
    path.parent.mkdir(parents=True, exist_ok=True)
    return prefix + str(path.resolve())


def make_tracker(cfg) -> NullTracker:
    """From the tracking config node: MlflowTracker behind a queue that outlives MLflow outages
    (tracking_buffer.py) when enabled, NullTracker otherwise."""
    if cfg is None or not cfg.get("enabled", False):
        return NullTracker()
    from .tracking_buffer import ResilientTracker, http_settings

    http_settings(cfg)
    uri = absolute_sqlite(str(cfg.tracking_uri))
    attempts = 5 if uri.startswith("sqlite") else 1  # a server migrates its own tables; the queue retries the rest
    return ResilientTracker(
        lambda: MlflowTracker(uri, str(cfg.experiment), cfg.get("artifact_location"), open_attempts=attempts),
        retry_every=float(cfg.get("retry_every", 10)),
        flush_seconds=float(cfg.get("flush_seconds", 300)),
    )


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)
