"""An MLflow outage does not fail trials: calls are queued and sent in order later (tracking_buffer.py), and the
runs are settled from the Optuna study (tracking_settle.py). MLflow is a real sqlite store whose client is cut off
on demand (no server)."""

from __future__ import annotations

import optuna
import pytest
from mlflow.exceptions import MlflowException, RestException
from mlflow.utils.rest_utils import get_error_code

from memtune.optimize.sweep import tracking
from memtune.optimize.sweep.tracking import MlflowTracker
from memtune.optimize.sweep.tracking_buffer import ResilientTracker, unreachable
from memtune.optimize.sweep.tracking_settle import settle_runs

optuna.logging.set_verbosity(optuna.logging.ERROR)
REFUSED = "API request to http://127.0.0.1:5055/api/2.0/mlflow/runs/create failed with exception ConnectionError"


class CutOff:
    """An MlflowClient that raises what MLflow raises for a dead server while `down` is set."""

    def __init__(self, client):
        self.client, self.down, self.calls = client, False, 0

    def __getattr__(self, name):
        attr = getattr(self.client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            if self.down:
                raise MlflowException(REFUSED)
            self.calls += 1
            return attr(*args, **kwargs)

        return call


def test_unreachable_tells_an_outage_from_a_wrong_call():
    assert unreachable(MlflowException(REFUSED))
    assert unreachable(RestException({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "db restarting"}))
    assert unreachable(ConnectionRefusedError(111, "refused"))
    assert not unreachable(RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad param"}))
    # what MLflow raises for a non-JSON error reply: the status's error code (rest_utils.verify_rest_response)
    reply = "API request to endpoint /x failed with error code {} != 200"
    assert not unreachable(MlflowException(reply.format(404), error_code=get_error_code(404)))
    assert unreachable(MlflowException(reply.format(503), error_code=get_error_code(503)))
    assert not unreachable(ValueError("x"))


@pytest.fixture
def cut(tmp_path):
    """A ResilientTracker over a real sqlite MLflow store, with its client behind a CutOff switch."""
    holder = {}

    def open_tracker():
        inner = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "exp", str(tmp_path / "art"))
        holder["switch"] = inner.client = CutOff(inner.client)
        return inner

    tracker = ResilientTracker(open_tracker, retry_every=0.0, flush_seconds=0.0)
    tracker.start_study("key", "study", {"n_trials": 3}, {})
    return tracker, holder["switch"]


def status(tracker, run_id):
    return tracker.inner.client.client.get_run(run_id).info.status


def test_calls_made_while_mlflow_is_down_are_sent_in_order_when_it_is_back(cut):
    tracker, switch = cut
    linked = []
    tracker.link = lambda number, run_id: linked.append((number, run_id))
    first = tracker.start_trial(0, {"a": 1})
    assert first and not first.startswith("pending:")  # MLflow up: a real run at once
    switch.down = True
    tracker.log_step(first, 0, {"step.x": 0.5})  # the running trial's run: queued
    tracker.end_trial(first, "FINISHED", metrics={"objective.x": 0.5})
    second = tracker.start_trial(1, {"a": 2})  # a run created while down: a placeholder
    assert second.startswith("pending:") and len(tracker.pending) == 4  # step, end, create, params: nothing sent
    tracker.log_step(second, 0, {"step.x": 0.7})
    assert status(tracker, first) == "RUNNING"  # nothing reached MLflow
    switch.down = False
    tracker.end_trial(second, "FINISHED", metrics={"objective.x": 0.7})  # MLflow back: the queue drains first
    assert not tracker.pending
    real = tracker.ids[second]
    assert linked == [(1, real)] and status(tracker, first) == status(tracker, real) == "FINISHED"
    run = tracker.inner.client.client.get_run(real)
    assert run.data.params["a"] == "2" and run.data.metrics["objective.x"] == 0.7
    assert run.data.tags["mlflow.parentRunId"] == tracker.inner.parent_run_id


def test_a_call_mlflow_refuses_is_dropped_and_does_not_block_the_queue(cut, capsys):
    tracker, switch = cut
    run_id = tracker.start_trial(0, {"a": 1})
    tracker.start_trial(1, {"a": 1})
    switch.down = True
    tracker.end_trial(run_id, "FINISHED")
    tracker.log_step("no-such-run", 0, {"x": 1.0})  # a call MLflow will refuse (an unknown run)
    tracker.mark_killed("pending:of-another-process", "died")  # not ours: left to settle(), nothing queued
    switch.down = False
    assert tracker.drain() and not tracker.pending and tracker.dropped == 1
    assert status(tracker, run_id) == "FINISHED" and "refused by MLflow" in capsys.readouterr().err


def test_a_flush_that_times_out_keeps_the_queue_and_says_so(cut, capsys):
    tracker, switch = cut
    switch.down = True
    tracker.start_trial(0, {"a": 1})
    assert tracker.flush() is False and tracker.pending
    assert "re-run the same command" in capsys.readouterr().err


def study_with(states):
    study = optuna.create_study(directions=["maximize"])
    for i, (state, attrs) in enumerate(states):
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=0.1 * i if state == optuna.trial.TrialState.COMPLETE else None,
                params={"k": i},
                distributions={"k": optuna.distributions.IntDistribution(0, 100)},
                user_attrs=attrs,
            )
        )
    return study


def test_settle_makes_mlflow_agree_with_the_study(tmp_path):
    S = optuna.trial.TrialState
    inner = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "exp", str(tmp_path / "art"))
    inner.start_study("key", "study", {}, {})
    c = inner.client
    cut_short = inner.start_trial(0, {"k": 0})  # COMPLETE, but its end never reached MLflow
    dead = inner.start_trial(1, {"k": 1})  # worker died after logging FINISHED, before Optuna heard of it
    inner.end_trial(dead, "FINISHED")
    twin_a, twin_b = inner.start_trial(3, {"k": 3}), inner.start_trial(3, {"k": 3})  # a retried creation
    inner.end_trial(twin_a, "FINISHED")
    study = study_with(
        [
            (S.COMPLETE, {"mlflow_run_id": cut_short}),
            (S.FAIL, {"mlflow_run_id": dead, "error": "worker h:1:2 died during the trial"}),
            (S.COMPLETE, {}),  # trial 2: its worker's calls never reached MLflow
            (S.COMPLETE, {"mlflow_run_id": twin_a}),
        ]
    )
    counts = settle_runs(inner, study, ["x"], lambda t: True)
    assert counts == {"ended": 2, "duplicates": 1, "backfilled": 1, "errors": 0, "parent_fixes": 0}
    assert (
        c.get_run(cut_short).info.status == "FINISHED"
        and "was RUNNING" in c.get_run(cut_short).data.tags["memtune.settled"]
    )
    assert c.get_run(cut_short).data.metrics["objective.x"] == 0.0
    assert c.get_run(dead).info.status == "KILLED"
    assert c.get_run(twin_b).info.status == "KILLED" and "memtune.duplicate" in c.get_run(twin_b).data.tags
    backfilled = [r for r in c.search_runs([inner.experiment_id]) if r.data.tags.get("memtune.trial") == "2"]
    assert len(backfilled) == 1 and backfilled[0].info.status == "FINISHED"
    assert (
        backfilled[0].data.metrics["objective.x"] == pytest.approx(0.2)
        and "memtune.backfilled" in backfilled[0].data.tags
    )
    assert settle_runs(inner, study, ["x"], lambda t: True) == {
        "ended": 0,
        "duplicates": 0,
        "backfilled": 0,
        "errors": 0,
        "parent_fixes": 0,
    }  # idempotent


def test_settle_keeps_one_parent_run_and_nests_every_trial_under_it(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    a = MlflowTracker(uri, "exp", str(tmp_path / "art"))
    a.start_study("key", "study", {}, {})
    b = MlflowTracker(uri, "exp")  # a worker that made its own parent run at the same moment
    b.study_key = "key"
    b.parent_run_id = b.client.create_run(
        b.experiment_id, tags={"memtune.role": "study", "memtune.study_key": "key"}
    ).info.run_id
    own_parent = b.parent_run_id
    run = b.start_trial(0, {"k": 0})
    counts = settle_runs(b, study_with([]), [], lambda t: True)
    assert counts["parent_fixes"] == 2  # b's parent ended and deleted, b's trial run re-nested
    assert b.parent_run_id == a.parent_run_id
    assert b.client.get_run(run).data.tags["mlflow.parentRunId"] == a.parent_run_id
    old = b.client.get_run(own_parent).info
    assert old.status == "KILLED" and old.lifecycle_stage == "deleted"  # no deleted run left RUNNING


def test_make_tracker_sets_quick_http_retries(monkeypatch):
    import os

    from omegaconf import OmegaConf

    for var in (
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
        "MLFLOW_HTTP_REQUEST_TIMEOUT",
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT",
    ):
        monkeypatch.setenv(var, "x")  # so that teardown restores the environment as it was
        monkeypatch.delenv(var)
    cfg = OmegaConf.create(
        {
            "enabled": True,
            "tracking_uri": "http://127.0.0.1:9",
            "experiment": "e",
            "http": {"max_retries": 2, "timeout": 30},
        }
    )
    tracker = tracking.make_tracker(cfg)
    assert isinstance(tracker, ResilientTracker) and tracker.inner is None  # nothing contacted yet
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2" and os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "30"
