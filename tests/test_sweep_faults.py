"""A sweep whose MLflow goes away mid-trial: no trial fails, and every run ends FINISHED once MLflow is back (in the
same sweep, or settled by the next run of the same command). MLflow is a sqlite store cut off on demand."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from memtune.optimize.sweep import tracking
from memtune.optimize.sweep import trial as trial_module
from memtune.optimize.sweep.app import CONF_DIR, run_sweep

ROOT = Path(__file__).resolve().parents[1]
DOWN = {"down": False}


class CutOff:
    def __init__(self, client):
        self.client = client

    def __getattr__(self, name):
        attr = getattr(self.client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            if DOWN["down"]:
                raise MlflowException("API request to http://mlflow/api/2.0/mlflow/x failed with exception refused")
            return attr(*args, **kwargs)

        return call


@pytest.fixture
def outage(monkeypatch):
    """MLflow down while the evaluations listed in `plan` run (by their order in the test), up otherwise."""
    real_open, real_eval = tracking._open, trial_module.evaluate_conversations
    plan: dict = {"down_for": set(), "n": 0}
    monkeypatch.setattr(tracking, "_open", lambda uri: CutOff(real_open(uri)))

    def evaluate(*args, **kwargs):
        DOWN["down"] = plan["n"] in plan["down_for"]
        plan["n"] += 1
        return real_eval(*args, **kwargs)

    monkeypatch.setattr(trial_module, "evaluate_conversations", evaluate)
    yield plan
    DOWN["down"] = False


def sweep(tmp: Path, *overrides: str) -> dict:
    from hydra import compose, initialize_config_dir

    base = [
        f"cache_dir={tmp / 'cache'}",
        "dataset=fixture",
        f"sweep.storage=sqlite:///{tmp / 'optuna.db'}",
        "sweep.tune_conversations=null",
        "sweep.holdout_conversations=null",
        "sweep.heldout.baselines=[]",
        "sweep.study_name=outage",
        "sweep.n_trials=3",
        "tracking=mlflow",
        f"tracking.tracking_uri=sqlite:///{tmp / 'mlflow.db'}",
        f"tracking.artifact_location={tmp / 'artifacts'}",
        "+tracking.retry_every=0",
        *overrides,
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return run_sweep(compose(config_name="sweep", overrides=base), tmp / "run", base)


def runs_of(tmp: Path) -> tuple[list, list]:
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("memtune-sweep").experiment_id], run_view_type=3)
    return [r for r in runs if r.data.tags.get("memtune.role") == "study"], [
        r for r in runs if r.data.tags.get("memtune.role") == "trial"
    ]


def trials(tmp: Path):
    return optuna.load_study(study_name="outage", storage=f"sqlite:///{tmp / 'optuna.db'}").trials


def test_an_outage_during_a_sweep_fails_no_trial_and_loses_no_run(tmp_path, outage):
    outage["down_for"] = {1}  # down from trial 1's evaluation until trial 2's evaluation starts
    result = sweep(tmp_path)
    assert result["finished"] == 3 and [t.state.name for t in trials(tmp_path)] == ["COMPLETE"] * 3
    parents, runs = runs_of(tmp_path)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(int(r.data.tags["memtune.trial"]) for r in runs) == [0, 1, 2]  # one run per trial
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parents[0].info.run_id}
    by_trial = {int(r.data.tags["memtune.trial"]): r for r in runs}
    assert "objective.evidence_recall" in by_trial[1].data.metrics  # logged late, not lost
    t2 = trials(tmp_path)[2]  # its run was created while MLflow was down; its id was recorded once it was
    assert t2.user_attrs["mlflow_run_id"] == by_trial[2].info.run_id
    assert "memtune.settled" not in by_trial[1].data.tags  # nothing needed settling: the queue delivered all


def test_mlflow_down_until_the_end_is_settled_by_the_next_run_of_the_command(tmp_path, outage, capsys):
    outage["down_for"] = {1, 2, 3, 4, 5}  # never back during the first run
    first = sweep(tmp_path, "+tracking.flush_seconds=0")
    assert first["finished"] == 3 and [t.state.name for t in trials(tmp_path)] == ["COMPLETE"] * 3
    assert "re-run the same command" in capsys.readouterr().err
    parents, runs = runs_of(tmp_path)
    assert {int(r.data.tags["memtune.trial"]) for r in runs} == {0, 1}  # trial 2's run never reached MLflow
    assert next(r for r in runs if r.data.tags["memtune.trial"] == "1").info.status == "RUNNING"
    outage["down_for"] = set()
    DOWN["down"] = False
    again = sweep(tmp_path, "+tracking.flush_seconds=0")  # the same command: nothing to run, the runs are settled
    assert again["finished"] == 3 and len(trials(tmp_path)) == 3
    parents, runs = runs_of(tmp_path)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    by_trial = {int(r.data.tags["memtune.trial"]): r for r in runs}
    assert sorted(by_trial) == [0, 1, 2] and {r.info.status for r in runs} == {"FINISHED"}
    assert "was RUNNING" in by_trial[1].data.tags["memtune.settled"]
    assert "memtune.backfilled" in by_trial[2].data.tags
    value = trials(tmp_path)[2].values[0]
    assert by_trial[2].data.metrics["objective.evidence_recall"] == pytest.approx(value)
    assert (
        json.loads(by_trial[2].data.params["policy.retriever.top_k"])
        == trials(tmp_path)[2].params["policy.retriever.top_k"]
    )
