"""MLflow logging that an outage of the tracking server (or its database) cannot fail: calls are queued and sent in
order when MLflow answers again; at the end the trial runs are settled from the Optuna study (tracking_settle.py).

`ResilientTracker` wraps `MlflowTracker` (tracking.py) behind the same interface. Each call is tried at once
while the queue is empty; a call that fails because MLflow cannot be reached (connection refused, timeout, HTTP
5xx/429, a lost database connection) is queued, and so is every later call until the queue drains: the queue is
retried at most every `retry_every` seconds, so a trial does not wait on a dead server. A run created while the
server was down gets a placeholder id (`pending:<uuid>`), replaced by the real one when the creation goes
through (`link(trial_number, run_id)` then tells the sweep). A call MLflow refuses for good (a bad value) is
dropped with a message, as before. MLflow is never the source of truth: a trial's result is in the Optuna study
whatever happens here.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .tracking import MlflowTracker, NullTracker

Op = Callable[[MlflowTracker], Any]
QUEUED = object()  # what _run returns for a call it queued


def unreachable(err: BaseException) -> bool:
    """True when `err` says MLflow (or its database) could not be reached, not that the call was wrong."""
    from .storage_retry import lost_connection

    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        name = type(cur).__name__
        if name in ("ConnectionError", "Timeout", "ConnectTimeout", "ReadTimeout", "RetryError", "MaxRetryError"):
            return True
        if isinstance(cur, (ConnectionError, TimeoutError)):  # builtins: refused, reset, ...
            return True
        status = getattr(cur, "get_http_status_code", None)
        # an error reply of the server (RestException) or a failed request (MlflowException "API request to ...":
        # refused, timed out, retries exhausted) with a 5xx/429 status; a 4xx is a wrong call, not an outage
        if callable(status) and (name == "RestException" or "API request to" in str(cur)):
            code = status()
            if code >= 500 or code == 429:
                return True
        cur = cur.__cause__ or cur.__context__
    return lost_connection(err)


class ResilientTracker(NullTracker):
    enabled = True

    def __init__(
        self,
        open_tracker: Callable[[], MlflowTracker],
        *,
        retry_every: float = 10.0,
        flush_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._open = open_tracker
        self.inner: MlflowTracker | None = None
        self.retry_every, self.flush_seconds = retry_every, flush_seconds
        self._clock, self._sleep = clock, sleep
        self.pending: deque[tuple[str, Op, str | None]] = deque()
        self.ids: dict[str, str | None] = {}  # placeholder -> real run id (None: its creation was refused)
        self.numbers: dict[str, int] = {}  # placeholder -> trial number
        self._last_try = -float("inf")
        self.dropped = 0
        self.parent_run_id: str | None = None
        self.study_key = ""

    # ---- the queue ------------------------------------------------------------------------------------------
    def _run(self, what: str, op: Op, placeholder: str | None = None) -> Any:
        """Do `op` now if nothing is queued (and MLflow answers): its result, or None when MLflow refused it.
        Else queue it (QUEUED); a queued run creation resolves `placeholder` when it goes through."""
        if not self.pending:
            try:
                return self._do(op)
            except Exception as err:
                if not unreachable(err):
                    self.dropped += 1
                    print(f"[tracking] {what} refused by MLflow, not logged: {_short(err)}", file=sys.stderr)
                    return None
                self._last_try = self._clock()
                print(f"[tracking] MLflow unreachable ({_short(err)}): queueing calls", file=sys.stderr, flush=True)
        self.pending.append((what, op, placeholder))
        self.drain()
        return QUEUED

    def _do(self, op: Op) -> Any:
        if self.inner is None:
            self.inner = self._open()
        return op(self.inner)

    def drain(self, force: bool = False) -> bool:
        """Send queued calls in order; stop at the first one MLflow cannot take yet. True when the queue is empty."""
        if not self.pending:
            return True
        if not force and self._clock() - self._last_try < self.retry_every:
            return False
        self._last_try = self._clock()
        sent = 0
        while self.pending:
            what, op, placeholder = self.pending[0]
            try:
                result = self._do(op)
            except Exception as err:
                if unreachable(err):
                    return False
                self.dropped += 1
                print(f"[tracking] queued {what} refused by MLflow, not logged: {_short(err)}", file=sys.stderr)
                result = None
            self.pending.popleft()
            sent += 1
            if placeholder is not None:
                self.ids[placeholder] = result
                if result and self.link is not None:
                    self.link(self.numbers[placeholder], result)
        print(f"[tracking] MLflow is back: {sent} queued calls sent", file=sys.stderr, flush=True)
        return True

    def flush(self) -> bool:
        """Wait up to flush_seconds for MLflow to take every queued call (the end of a worker's sweep)."""
        deadline = self._clock() + self.flush_seconds
        while not self.drain(force=True):
            if self._clock() >= deadline:
                print(
                    f"[tracking] MLflow still unreachable after {self.flush_seconds:.0f} s: {len(self.pending)} calls "
                    "not logged; the runs are settled from the Optuna study by the next sweep on this study "
                    "(re-run the same command)",
                    file=sys.stderr,
                )
                return False
            self._sleep(min(self.retry_every, max(0.0, deadline - self._clock())))
        return True

    def _real(self, run_id: str | None) -> str | None:
        return self.ids.get(run_id) if run_id in self.ids else run_id

    # ---- the tracker interface ------------------------------------------------------------------------------
    def start_study(self, key: str, name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        self.study_key = key

        def op(t: MlflowTracker) -> None:
            t.start_study(key, name, params, tags)
            self.parent_run_id = t.parent_run_id

        self._run("start the study run", op)

    def start_trial(self, number: int, params: Mapping[str, Any]) -> str | None:
        """The trial's run id, or a placeholder while MLflow is unreachable (None: MLflow refused the run)."""
        placeholder = f"pending:{uuid.uuid4().hex}"
        self.numbers[placeholder] = number
        # two calls, so a retry after a lost reply to the second one does not create a second run
        run_id = self._run(f"trial {number}: create its run", lambda t: t.create_trial_run(number), placeholder)
        if run_id is None:
            return None
        if run_id is not QUEUED:
            self.ids[placeholder] = run_id
        self._run(f"trial {number}: log its params", lambda t: t.log_params(self._real(placeholder), params))
        return run_id if run_id is not QUEUED else (self.ids.get(placeholder) or placeholder)

    def log_step(self, run_id: str | None, step: int, metrics: Mapping[str, float]) -> None:
        self._run("log a step", lambda t: t.log_step(self._real(run_id), step, metrics))

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
        files = list(artifacts)
        self._run(
            f"end run {run_id} ({status})",
            lambda t: t.end_trial(
                self._real(run_id),
                status,
                params=params,
                metrics=metrics,
                artifacts=files,
                dicts=dicts,
                error=error,
                tags=tags,
            ),
        )

    def mark_killed(self, run_id: str | None, reason: str) -> None:
        if run_id and run_id.startswith("pending:") and run_id not in self.ids:
            return  # a placeholder of another process: settle() finds that trial's run by its tags

        def op(t: MlflowTracker) -> None:
            real = self._real(run_id)
            if real:
                t.client.set_tag(real, "memtune.error", reason[:5000])
                t.client.set_terminated(real, "KILLED")

        self._run(f"mark run {run_id} killed", op)

    def end_study(
        self, *, metrics: Mapping[str, float] | None = None, artifacts: Iterable[Path] = (), finished: bool = True
    ) -> None:
        files = list(artifacts)
        self._run("end the study run", lambda t: t.end_study(metrics=metrics, artifacts=files, finished=finished))
        self.flush()

    def settle(self, study: Any, objectives: Sequence[str] = ()) -> None:
        """Flush the queue, then make every trial run agree with the Optuna study (tracking_settle.py)."""
        from .tracking_settle import settle_runs

        if not self.flush() or self.inner is None:
            return
        try:
            counts = settle_runs(self.inner, study, list(objectives), self._ours)
        except Exception as err:
            print(f"[tracking] could not settle the MLflow runs: {_short(err)}", file=sys.stderr)
            return
        if any(counts.values()):
            print(f"[tracking] MLflow runs settled from the Optuna study: {counts}", file=sys.stderr, flush=True)

    def _ours(self, trial: Any) -> bool:
        """Settle a trial's runs here when this process ran it, its worker is dead, or it ended long enough ago
        for its (live) worker to have sent or given up its queued calls; else its own worker settles it."""
        from .workers import worker_alive

        if trial.number in set(self.numbers.values()):
            return True
        worker = trial.user_attrs.get("worker")
        if not worker or worker_alive(worker) is False:
            return True
        end = trial.datetime_complete
        return end is not None and (dt.datetime.now() - end).total_seconds() > self.flush_seconds + self.retry_every

    def ui_hint(self) -> str:
        if self.inner is None:
            return "MLflow was unreachable: nothing logged by this worker"
        return self.inner.ui_hint()


def _short(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"


def http_settings(cfg: Any) -> None:
    """One call's own HTTP retries before the tracker queues it (MLflow's defaults wait minutes inside a trial).
    Environment variables already set win. The run links MLflow prints on each run's end are left out of the log."""
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    http = cfg.get("http") or {}
    for key, env in (
        ("max_retries", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"),
        ("backoff_factor", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"),
        ("timeout", "MLFLOW_HTTP_REQUEST_TIMEOUT"),
    ):
        if http.get(key) is not None:
            os.environ.setdefault(env, str(http[key]))
