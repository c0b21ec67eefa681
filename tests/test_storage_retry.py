"""The sweep's storage rides out a lost database connection (storage_retry.py), an unclaimed trial is reaped
(orphans.py), one worker creates a study (joining.py) and workers do not share a sampler seed (seeding.py).
No database server: failures are injected into a real sqlite RDBStorage."""

from __future__ import annotations

import datetime as dt

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.exc import IntegrityError, OperationalError

from memtune.optimize.sweep.joining import create_or_join, wait_for_signature
from memtune.optimize.sweep.orphans import is_orphan
from memtune.optimize.sweep.seeding import TrialSeeded
from memtune.optimize.sweep.storage_retry import RetryingStorage, lost_connection

optuna.logging.set_verbosity(optuna.logging.ERROR)


def gone() -> OperationalError:
    return OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))


def test_lost_connection_reads_the_cause_chain():
    assert lost_connection(gone())
    try:  # Optuna wraps a failed commit in StorageInternalError ... from the driver's error
        raise optuna.exceptions.StorageInternalError("commit failed") from gone()
    except optuna.exceptions.StorageInternalError as err:
        assert lost_connection(err)
    assert not lost_connection(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not lost_connection(ValueError("bad value"))


class Clock:
    def __init__(self):
        self.now, self.sleeps = 0.0, []

    def sleep(self, s):
        self.sleeps.append(s)
        self.now += s


class Flaky:
    """A storage stand-in: each named method fails `fails[name]` times with a lost connection, then answers."""

    grace_period = 30

    def __init__(self, **fails):
        self.fails, self.calls = dict(fails), []

    def get_heartbeat_interval(self):
        return 10

    def __getattr__(self, name):
        def method(*args, **kwargs):
            self.calls.append(name)
            if self.fails.get(name, 0) > 0:
                self.fails[name] -= 1
                raise optuna.exceptions.StorageInternalError("commit failed") from gone()
            return f"{name} ok"

        return method


def retrying(inner, budget=60.0):
    clock = Clock()
    return RetryingStorage(inner, budget=budget, sleep=clock.sleep, clock=lambda: clock.now), clock


def test_a_call_is_retried_with_backoff_until_the_database_answers():
    storage, clock = retrying(Flaky(get_all_trials=4))
    assert storage.get_all_trials(0) == "get_all_trials ok"
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0] and storage.retries == 4 and storage.recovered_at == clock.now


def test_retries_stop_at_the_budget_and_other_errors_are_not_retried():
    storage, clock = retrying(Flaky(get_trial=100), budget=10.0)
    with pytest.raises(optuna.exceptions.StorageInternalError):
        storage.get_trial(1)
    assert sum(clock.sleeps) <= 10.0 and len(clock.sleeps) == 4  # 0.5 + 1 + 2 + 4; the next wait (8) would overrun

    class Bad(Flaky):
        def get_trial(self, trial_id):
            self.calls.append("get_trial")
            raise ValueError("no such trial")

    storage, clock = retrying(Bad())
    with pytest.raises(ValueError):
        storage.get_trial(1)
    assert clock.sleeps == [] and storage.inner.calls == ["get_trial"]


def test_a_state_change_whose_reply_was_lost_is_taken_as_done():
    """First attempt commits COMPLETE, then the connection drops before the reply; the retry sees a finished trial."""

    class Committed(Flaky):
        state = TrialState.RUNNING

        def set_trial_state_values(self, trial_id, state, values=None):
            if self.state == TrialState.RUNNING:
                self.state = state
                raise optuna.exceptions.StorageInternalError("commit failed") from gone()
            raise optuna.exceptions.UpdateFinishedTrialError("trial already finished")

        def get_trial(self, trial_id):
            return type("T", (), {"state": self.state})()

    storage, _ = retrying(Committed())
    assert storage.set_trial_state_values(7, TrialState.COMPLETE, [1.0]) is True
    other = Committed()
    other.state = TrialState.FAIL  # finished by someone else, in another state: still an error
    storage, _ = retrying(other)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        storage.set_trial_state_values(7, TrialState.COMPLETE, [1.0])


def test_stale_heartbeats_are_not_judged_right_after_an_outage():
    storage, clock = retrying(Flaky(record_heartbeat=2))
    storage.record_heartbeat(3)  # recovers at clock.now
    assert storage._get_stale_trial_ids(0) == [] and "_get_stale_trial_ids" not in storage.inner.calls
    clock.now += 31  # one grace period later, the heartbeats are judged again
    assert storage._get_stale_trial_ids(0) == "_get_stale_trial_ids ok"


class Injected(optuna.storages.RDBStorage):
    """A real sqlite RDBStorage whose every 4th call loses its connection once (before touching the database)."""

    n = 0

    def _maybe_fail(self):
        Injected.n += 1
        if Injected.n % 4 == 0:
            raise optuna.exceptions.StorageInternalError("commit failed") from gone()


for _name in ("create_new_trial", "set_trial_param", "set_trial_state_values", "get_all_trials", "get_trial"):

    def _wrap(name=_name):
        base = getattr(optuna.storages.RDBStorage, name)

        def method(self, *args, **kwargs):
            self._maybe_fail()
            return base(self, *args, **kwargs)

        setattr(Injected, name, method)

    _wrap()


def test_a_study_completes_through_injected_connection_losses(tmp_path):
    inner = Injected(f"sqlite:///{tmp_path / 'o.db'}", heartbeat_interval=10, grace_period=30)
    storage = RetryingStorage(inner, budget=30, first_wait=0.01)
    study = optuna.create_study(storage=storage, study_name="s", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=12)
    trials = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'o.db'}").trials
    assert [t.number for t in trials] == list(range(12)) and {t.state for t in trials} == {TrialState.COMPLETE}
    assert storage.retries >= 5  # the failures happened and were ridden out


def frozen(state, worker=None, age=0.0):
    now = dt.datetime(2026, 1, 1, 12, 0, 0)
    return (
        optuna.trial.create_trial(state=TrialState.COMPLETE, value=1.0)
        if state != TrialState.RUNNING
        else optuna.trial.FrozenTrial(
            number=0,
            state=state,
            value=None,
            datetime_start=now - dt.timedelta(seconds=age),
            datetime_complete=None,
            params={},
            distributions={},
            user_attrs={"worker": worker} if worker else {},
            system_attrs={},
            intermediate_values={},
            trial_id=0,
        ),
        now,
    )


def test_an_unclaimed_running_trial_is_an_orphan_only_when_old_enough():
    trial, now = frozen(TrialState.RUNNING, age=200)
    assert is_orphan(trial, 150, now)
    trial, now = frozen(TrialState.RUNNING, age=100)
    assert not is_orphan(trial, 150, now)  # its worker may still be writing its `worker` attribute
    trial, now = frozen(TrialState.RUNNING, worker="host:1:2", age=10_000)
    assert not is_orphan(trial, 150, now)  # claimed: its worker's liveness decides (Sweep.reap_dead_workers)
    trial, now = frozen(TrialState.COMPLETE)
    assert not is_orphan(trial, 150, now)


def test_only_one_worker_creates_a_study(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}")
    assert create_or_join(storage, "s", ["maximize"]) is True
    assert create_or_join(storage, "s", ["maximize"]) is False
    study = optuna.load_study(study_name="s", storage=storage)
    assert wait_for_signature(study, wait=0.2, poll=0.05) is False  # its creator never wrote one
    study.set_user_attr("signature", {"x": 1})
    assert wait_for_signature(study, wait=0.2, poll=0.05) is True


def test_workers_asking_at_the_same_count_get_different_knobs_and_one_process_is_reproducible(tmp_path):
    url = f"sqlite:///{tmp_path / 'o.db'}"

    def make(n):
        return optuna.samplers.RandomSampler(seed=100 + n)

    optuna.create_study(storage=url, study_name="s")
    a = optuna.load_study(study_name="s", storage=url, sampler=TrialSeeded(make))
    b = optuna.load_study(study_name="s", storage=url, sampler=TrialSeeded(make))
    ta, tb = a.ask(), b.ask()  # two workers, both having seen 0 trials
    assert (ta.number, tb.number) == (0, 1)
    assert ta.suggest_int("k", 1, 10_000) != tb.suggest_int("k", 1, 10_000)
    old = [optuna.samplers.RandomSampler(seed=100 + 0) for _ in range(2)]  # the old count-based seeds collide
    assert len({s.sample_independent(a, None, "k", optuna.distributions.IntDistribution(1, 10_000)) for s in old}) == 1
    again = optuna.create_study(sampler=TrialSeeded(make))  # a new process: trial 0 gets trial 0's knobs again
    assert (
        again.ask().suggest_int("k", 1, 10_000) == optuna.load_study(study_name="s", storage=url).trials[0].params["k"]
    )
