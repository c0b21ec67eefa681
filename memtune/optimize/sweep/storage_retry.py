"""An Optuna storage that rides out a database server's restart: every call that loses its connection is retried.

`RetryingStorage` wraps an `RDBStorage` on a server (PostgreSQL, MySQL): a call that fails because the connection
is gone (the server restarted, failed over, or dropped idle connections) is retried with backoff for up to
`budget` seconds, then raised. The engine should be made with `pool_pre_ping=True` (workers.make_storage), so a
connection that died while idle in the pool is replaced before use instead of failing the call.

Retrying is safe because the storage's writes are idempotent or checked, with two exceptions handled here or by
the sweep: a state change that committed but whose reply was lost fails on retry with UpdateFinishedTrialError
(the trial already has that state: taken as success); a new trial whose reply was lost exists twice, and the
copy no worker runs has no `worker` attribute and no heartbeat: the sweep fails and re-queues it (orphans.py).
While a call is retried the worker waits (so does its heartbeat thread); after an outage, stale heartbeats are
not judged for one grace period, so live workers get to beat again before anyone fails their trials.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import TrialState

T = TypeVar("T")


def lost_connection(err: BaseException) -> bool:
    """True when `err` (or what caused it) says the database connection is gone, not that the request was bad."""
    from sqlalchemy import exc as sa_exc

    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError)):
            return True
        if isinstance(cur, sa_exc.DBAPIError) and cur.connection_invalidated:
            return True
        if type(cur).__name__ in ("OperationalError", "InterfaceError") and "psycopg" in type(cur).__module__:
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _root(err: BaseException) -> BaseException:
    """The first cause in the chain (the driver's error, not Optuna's StorageInternalError around it)."""
    seen = {id(err)}
    while (nxt := err.__cause__ or err.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        err = nxt
    return err


class RetryingStorage(BaseStorage, BaseHeartbeat):
    """`inner`'s storage API, each call retried while the database connection is lost (module docstring)."""

    def __init__(
        self,
        inner: RDBStorage,
        budget: float = 120.0,
        first_wait: float = 0.5,
        max_wait: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.inner, self.budget, self.first_wait, self.max_wait = inner, budget, first_wait, max_wait
        self._sleep, self._clock = sleep, clock
        self.recovered_at: float | None = None  # when a call last succeeded after retries
        self.retries = 0  # calls retried so far (for the log and tests)

    def _call(self, name: str, fn: Callable[[], T]) -> T:
        start, wait, attempt = self._clock(), self.first_wait, 0
        while True:
            try:
                out = fn()
            except Exception as err:
                if not lost_connection(err) or self._clock() - start + wait > self.budget:
                    raise
                attempt += 1
                self.retries += 1
                cause = _root(err)
                print(
                    f"[storage] {name}: lost the database connection ({type(cause).__name__}: "
                    f"{(str(cause).strip().splitlines() or [''])[0][:160]}); retry {attempt} in {wait:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
                self._sleep(wait)
                wait = min(wait * 2, self.max_wait)
                continue
            if attempt:
                self.recovered_at = self._clock()
                print(f"[storage] {name}: back after {attempt} retries", file=sys.stderr, flush=True)
            return out

    def _delegate(self, name: str, *args: Any, **kwargs: Any) -> Any:
        method = getattr(self.inner, name)
        return self._call(name, lambda: method(*args, **kwargs))

    # ---- writes whose retry needs care ----------------------------------------------------------------------
    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
        first = [True]

        def attempt() -> bool:
            try:
                return self.inner.set_trial_state_values(trial_id, state, values)
            except optuna.exceptions.UpdateFinishedTrialError:
                # a retried call whose first attempt committed: the trial already has this state
                if not first[0] and self.inner.get_trial(trial_id).state == state:
                    return True
                raise
            finally:
                first[0] = False

        return self._call("set_trial_state_values", attempt)

    # ---- heartbeat ------------------------------------------------------------------------------------------
    def record_heartbeat(self, trial_id: int) -> None:
        self._delegate("record_heartbeat", trial_id)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        interval = self.inner.get_heartbeat_interval() or 0
        grace = self.inner.grace_period if self.inner.grace_period is not None else 2 * interval
        if self.recovered_at is not None and self._clock() - self.recovered_at < grace:
            return []  # everyone's heartbeat stopped during the outage: let live workers beat again first
        return self._delegate("_get_stale_trial_ids", study_id)

    def get_heartbeat_interval(self) -> int | None:
        return self.inner.get_heartbeat_interval()

    def get_heartbeat_stale_trial_callback(self) -> Any:
        return self.inner.get_heartbeat_stale_trial_callback()

    def get_failed_trial_callback(self) -> Any:
        return self.inner.get_failed_trial_callback()

    def remove_session(self) -> None:
        self.inner.remove_session()

    # ---- the rest of the storage API (reads and idempotent writes), each retried ------------------------------
    def create_new_study(self, *args: Any, **kwargs: Any) -> Any:
        return self._delegate("create_new_study", *args, **kwargs)

    def delete_study(self, *args: Any, **kwargs: Any) -> Any:
        return self._delegate("delete_study", *args, **kwargs)

    def set_study_user_attr(self, *args: Any, **kwargs: Any) -> Any:
        return self._delegate("set_study_user_attr", *args, **kwargs)

    def set_study_system_attr(self, *args: Any, **kwargs: Any) -> Any:
        return self._delegate("set_study_system_attr", *args, **kwargs)

    def get_study_id_from_name(self, *args: Any, **kwargs: Any) -> Any:
        return self._delegate("get_study_id_from_name", *args, **kwargs)

    def get_study_name_from_id(self, *args: Any, **kwargs: Any) -> Any:
        return self._delegate("get_study_name_from_id", *args, **kwargs)

    def get_study_directions(self, *args: Any, **kwargs: Any) -> Any:
        return self._delegate("get_study_directions", *args, **kwargs)

    def get_study_user_attrs(self, *args: Any, **kwargs: Any) -> Any:
        return self._delegate("get_study_user_attrs", *args, **kwargs)

    def get_study_system_attrs(self, *args: Any, **kwargs: Any) -> Any:
        return self._delegate("get_study_system_attrs", *args, **kwargs)

    def get_all_studies(self, *args: Any, **kwargs: Any) -> Any:
        return self._delegate("get_all_studies", *args, **kwargs)

    def create_new_trial(self, *args: Any, **kwargs: Any) -> Any:
        return self._delegate("create_new_trial", *args, **kwargs)

    def set_trial_param(self, *args: Any, **kwargs: Any) -> Any:
        return self._delegate("set_trial_param", *args, **kwargs)

    def get_trial_id_from_study_id_trial_number(self, *args: Any, **kwargs: Any) -> Any:
        return self._delegate("get_trial_id_from_study_id_trial_number", *args, **kwargs)

    def get_trial_number_from_id(self, *args: Any, **kwargs: Any) -> Any:
        return self._delegate("get_trial_number_from_id", *args, **kwargs)

    def get_trial_param(self, *args: Any, **kwargs: Any) -> Any:
        return self._delegate("get_trial_param", *args, **kwargs)

    def set_trial_intermediate_value(self, *args: Any, **kwargs: Any) -> Any:
        return self._delegate("set_trial_intermediate_value", *args, **kwargs)

    def set_trial_user_attr(self, *args: Any, **kwargs: Any) -> Any:
        return self._delegate("set_trial_user_attr", *args, **kwargs)

    def set_trial_system_attr(self, *args: Any, **kwargs: Any) -> Any:
        return self._delegate("set_trial_system_attr", *args, **kwargs)

    def get_trial(self, *args: Any, **kwargs: Any) -> Any:
        return self._delegate("get_trial", *args, **kwargs)

    def get_all_trials(self, *args: Any, **kwargs: Any) -> Any:
        return self._delegate("get_all_trials", *args, **kwargs)

    def get_n_trials(self, *args: Any, **kwargs: Any) -> Any:
        return self._delegate("get_n_trials", *args, **kwargs)

    def get_best_trial(self, *args: Any, **kwargs: Any) -> Any:
        return self._delegate("get_best_trial", *args, **kwargs)

    def get_trial_params(self, *args: Any, **kwargs: Any) -> Any:
        return self._delegate("get_trial_params", *args, **kwargs)

    def get_trial_user_attrs(self, *args: Any, **kwargs: Any) -> Any:
        return self._delegate("get_trial_user_attrs", *args, **kwargs)

    def get_trial_system_attrs(self, *args: Any, **kwargs: Any) -> Any:
        return self._delegate("get_trial_system_attrs", *args, **kwargs)
