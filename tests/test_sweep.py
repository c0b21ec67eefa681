"""memtune-sweep: the search space, a tiny sweep on the fixture (MLflow to a temp sqlite), failures, resume."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import polars as pl
import pytest
from omegaconf import OmegaConf

from memtune.optimize.sweep.app import CONF_DIR, run_sweep
from memtune.optimize.sweep.knob_deps import restrict
from memtune.optimize.sweep.scoring import get_path, objectives_from
from memtune.optimize.sweep.search_space import SearchSpace, format_value
from memtune.optimize.sweep.workers import worker_alive, worker_id

ROOT = Path(__file__).resolve().parents[1]


def parse(overrides: list[str]) -> dict[str, str]:
    return dict(o.split("=", 1) for o in overrides)


# ------------------------------------------------------------------------------------------- search space


def test_offline_space_honours_types_ranges_and_conditions():
    space = SearchSpace.from_config(OmegaConf.load(CONF_DIR / "search_space" / "offline.yaml"))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1), directions=["maximize"])
    seen = set()
    for _ in range(300):
        trial = study.ask()
        chosen = parse(space.suggest(trial))
        study.tell(trial, 0.0)
        extractor, decider = chosen["policy/extractor"], chosen["policy/decider"]
        seen |= {extractor, decider}
        assert extractor in {"heuristic", "verbatim", "chunks"} and decider in {"threshold", "add_only", "offline"}
        # conditional knobs appear exactly when their condition holds
        assert ("policy.extractor.min_words" in chosen) == (extractor == "heuristic")
        assert ("policy.extractor.chunk_turns" in chosen) == (extractor == "chunks")
        assert ("policy.decider.update_threshold" in chosen) == (decider in ("threshold", "offline"))
        assert ("policy.decider.noop_threshold" in chosen) == (decider in ("threshold", "offline"))
        if extractor == "heuristic":
            assert 2 <= int(chosen["policy.extractor.min_words"]) <= 8
        if extractor == "chunks":
            assert 2 <= int(chosen["policy.extractor.chunk_turns"]) <= 4
        if decider in ("threshold", "offline"):
            update, noop = (
                float(chosen["policy.decider.update_threshold"]),
                float(chosen["policy.decider.noop_threshold"]),
            )
            assert 0.75 <= update <= 0.95 <= noop <= 1.0  # always a valid ThresholdDecider
            assert round(update * 20) == update * 20  # on the 0.05 grid, printed without float noise
            assert chosen["policy.decider.update_threshold"] in {"0.75", "0.85", "0.95"}  # a coarse grid
        top_k = chosen["policy.retriever.top_k"]
        assert top_k.isdigit() and 1 <= int(top_k) <= 50  # int, not "7.0"
        assert 0.0 <= float(chosen["policy.retriever.threshold"]) <= 0.5
        assert (
            2 <= int(chosen["policy.answerer.max_words"]) <= 12 and 1 <= int(chosen["policy.answerer.candidates"]) <= 8
        )
        # every lever is always sampled (off is one of its choices); its own settings only when it is on
        hybrid, fusion = chosen["policy.retriever.hybrid"], chosen.get("policy.retriever.fusion")
        assert hybrid in {"true", "false"} and chosen["policy.extractor.resolve_dates"] in {"true", "false"}
        for knob in ("fusion", "keyword_weight", "keyword_depth", "dense_depth"):
            assert (f"policy.retriever.{knob}" in chosen) == (hybrid == "true")
        assert ("policy.retriever.rrf_k" in chosen) == (fusion == "rrf")
        recency = chosen["policy.retriever.recency_weight"]
        assert ("policy.retriever.recency_half_life_days" in chosen) == (recency != "0.0")
        assert ("policy.retriever.date_boost" in chosen) == (chosen["policy.retriever.date_filter"] == "boost")
        assert chosen["policy.retriever.mmr_lambda"] in {"null", "0.5", "0.7", "0.9"}
        assert chosen["policy.retriever.dedup_threshold"] in {"null", "0.85", "0.9", "0.95"}
        assert chosen["policy.answerer.render"] in {"json", "lines", "lines_date"}
        answerer = chosen["policy/answerer"]
        seen |= {answerer, f"hybrid={hybrid}", f"fusion={fusion}"}
        assert (
            ("policy.answerer.pool" in chosen)
            == ("policy.answerer.expand" in chosen)
            == ("policy.answerer.fresh_weight" in chosen)
            == (answerer in {"question_aware", "offline"})  # offline: question_aware at mem0_offline's tuned knobs
        )
    assert seen >= {
        "heuristic",
        "verbatim",
        "chunks",
        "threshold",
        "add_only",
        "extractive",
        "question_aware",
        "offline",
    }
    assert seen >= {"hybrid=true", "hybrid=false", "fusion=rrf", "fusion=weighted"}
    # a stored trial's params give back its overrides (FixedTrial)
    last = study.trials[-1]
    assert space.overrides_for(last.params) == space.suggest(optuna.trial.FixedTrial(last.params))


def test_log_scale_top_k_prefers_small_values():
    space = SearchSpace.from_config(
        {"knobs": [{"target": "policy.retriever.top_k", "type": "int", "low": 1, "high": 50, "log": True}]}
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    values = []
    for _ in range(400):
        trial = study.ask()
        values.append(int(parse(space.suggest(trial))["policy.retriever.top_k"]))
        study.tell(trial, 0.0)
    assert min(values) >= 1 and max(values) <= 50
    assert sum(v <= 7 for v in values) > 0.35 * len(values)  # log-uniform: ~half below sqrt(50)


@pytest.mark.parametrize(
    "knob, message",
    [
        ({"target": "a.b", "type": "int", "low": 5, "high": 1}, "low <= high"),
        ({"target": "a.b", "type": "float", "low": 0.0, "high": 1.0, "log": True}, "log scale needs low > 0"),
        ({"target": "a.b", "type": "float", "low": 0.1, "high": 1.0, "log": True, "step": 0.1}, "cannot be combined"),
        ({"target": "a.b", "type": "categorical", "choices": []}, "non-empty list"),
        ({"target": "a.b", "type": "bool"}, "type must be one of"),
        ({"target": "a.b", "type": "int", "low": 1, "high": 3, "when": {"policy/x": "y"}}, "not a knob listed above"),
        ({"target": "a.b", "type": "int", "low": 1, "high": 3, "hihg": 4}, "unknown field"),
    ],
)
def test_bad_knobs_are_clear_errors(knob, message):
    with pytest.raises(ValueError, match=message):
        SearchSpace.from_config({"knobs": [knob]})


def test_override_values_and_metric_paths():
    assert [format_value(v) for v in (None, True, 3, 0.75, "chunks")] == ["null", "true", "3", "0.75", "chunks"]
    summary = {"scores": {"overall": {"f1": 0.5}, "1 multi-hop": {"f1": 0.1}}}
    assert get_path(summary, "scores.1 multi-hop.f1") == 0.1
    with pytest.raises(KeyError, match="no 'f2' under scores.overall"):
        get_path(summary, "scores.overall.f2")


def test_worker_liveness_uses_pid_and_start_time():
    assert worker_alive(worker_id()) is True
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    host = socket.gethostname()
    assert worker_alive(f"{host}:{proc.pid}:12345") is False  # exited (or pid reused with another start time)
    assert worker_alive(f"elsewhere:{os.getpid()}:1") is None  # another host: unknown, left to the heartbeat


# ------------------------------------------------------------------------------------------- sweeps


def two_conversation_fixture(tmp: Path) -> Path:
    """The fixture conversation twice (fixture-1 tunes, fixture-2 is held out)."""
    data = json.loads((ROOT / "data" / "fixture" / "fixture.json").read_text())
    copy = json.loads(json.dumps(data[0]))
    copy["sample_id"] = "fixture-2"
    path = tmp / "two.json"
    path.write_text(json.dumps([data[0], copy]))
    return path


def sweep(tmp: Path, *overrides: str, edit=None) -> dict:
    from hydra import compose, initialize_config_dir

    base = [
        f"cache_dir={tmp / 'cache'}",
        "dataset=fixture",
        f"sweep.storage=sqlite:///{tmp / 'optuna.db'}",
        "sweep.tune_conversations=null",
        "sweep.holdout_conversations=null",
        "tracking=none",
        "sweep.heldout.baselines=[]",
        *overrides,
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="sweep", overrides=base)
        if edit:
            edit(cfg)
        return run_sweep(cfg, tmp / "run", base)


INVALID = {
    "policy/extractor": "heuristic",
    "policy/decider": "threshold",
    "policy.decider.update_threshold": 0.99,
    "policy.retriever.top_k": 5,
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """3 finished trials on fixture-1, held out on fixture-2, MLflow in a temp sqlite; trial 0 is invalid
    (update_threshold 0.99 > noop_threshold 0.95)."""
    tmp = tmp_path_factory.mktemp("sweep")
    space = {
        "name": "tiny",
        "knobs": [
            {"target": "policy/extractor", "type": "categorical", "choices": ["heuristic", "verbatim"]},
            {"target": "policy/decider", "type": "categorical", "choices": ["threshold", "add_only"]},
            {
                "target": "policy.decider.update_threshold",
                "type": "float",
                "low": 0.7,
                "high": 0.9,
                "step": 0.05,
                "when": {"policy/decider": "threshold"},
            },
            {"target": "policy.retriever.top_k", "type": "int", "low": 1, "high": 10},
        ],
    }

    def edit(cfg):
        cfg.search_space = space
        cfg.sweep.enqueue = [INVALID]
        cfg.sweep.enqueue_defaults = False  # trial 0 is the invalid one (top_k 30 is outside this space anyway)

    result = sweep(
        tmp,
        f"dataset.path={two_conversation_fixture(tmp)}",
        "sweep.n_trials=3",
        "sweep.tune_conversations=[fixture-1]",
        "sweep.holdout_conversations=[fixture-2]",
        "tracking=mlflow",
        f"tracking.tracking_uri=sqlite:///{tmp / 'mlflow.db'}",
        f"tracking.artifact_location={tmp / 'artifacts'}",
        "sweep.heldout.baselines=[{name:defaults,overrides:[]}]",
        edit=edit,
    )
    return tmp, result


def test_tiny_sweep_completes_and_writes_outputs(tiny):
    tmp, result = tiny
    run = tmp / "run"
    trials = pl.read_parquet(run / "trials.parquet")
    assert trials.filter(pl.col("state") == "COMPLETE").height == 3 == result["finished"]
    assert result["stopped"] == "complete"
    for col in ("value.evidence_recall", "value.context_tokens", "param.policy.retriever.top_k", "overrides"):
        assert col in trials.columns
    done = trials.filter(pl.col("state") == "COMPLETE")["number"].to_list()
    for n in done:
        assert (run / "trials" / f"{n:04d}" / "questions.parquet").exists()
        assert json.loads((run / "trials" / f"{n:04d}" / "summary.json").read_text())["dataset"]["conversations"] == [
            "fixture-1"
        ]
    heldout = json.loads((run / "heldout.json").read_text())
    assert heldout["tune_conversations"] == ["fixture-1"] and heldout["holdout_conversations"] == ["fixture-2"]
    assert heldout["selected"] and all(r["heldout"] is not None for r in heldout["selected"])
    assert "never tuned on" in heldout["note"]
    assert [b["name"] for b in heldout["baselines"]] == ["defaults"]
    held = json.loads((run / "heldout" / "defaults" / "summary.json").read_text())
    assert held["dataset"]["conversations"] == ["fixture-2"]  # held-out scores come from the held-out conversation
    assert pl.read_parquet(run / "pareto.parquet").height == len(heldout["selected"])


def test_invalid_trial_is_failed_with_its_error_and_the_sweep_goes_on(tiny):
    tmp, _ = tiny
    trials = pl.read_parquet(tmp / "run" / "trials.parquet").sort("number")
    first = trials.row(0, named=True)
    assert first["state"] == "FAIL" and "update_threshold" in first["error"] and "ValueError" in first["error"]
    assert trials.filter(pl.col("state") == "COMPLETE").height == 3


def test_mlflow_parent_run_with_nested_trial_runs(tiny):
    import mlflow

    tmp, _ = tiny
    client = mlflow.MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    exp = client.get_experiment_by_name("memtune-sweep")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("memtune.role") == "study"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED" and "space.policy.retriever.top_k" in parent.data.params
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 4  # 1 failed + 3 complete
    assert sorted(r.info.status for r in children) == ["FAILED", "FINISHED", "FINISHED", "FINISHED"]
    failed = next(r for r in children if r.info.status == "FAILED")
    assert "update_threshold" in failed.data.tags["memtune.error"]
    for r in children:
        if r.info.status != "FINISHED":
            continue
        p, m = r.data.params, r.data.metrics
        assert "policy.retriever.top_k" in p and "policy.decider._target_" in p and "overrides" in p
        for name in (
            "overall.evidence_recall",
            "overall.f1",
            "1_multi-hop.f1",
            "cost.memories_stored",
            "cost.context_tokens",
            "ingest.cache_hit_rate",
            "objective.evidence_recall",
        ):
            assert name in m, name
        assert not any(" " in k for k in m)
        assert {a.path for a in client.list_artifacts(r.info.run_id)} >= {"policy.json", "questions.parquet"}
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {
        "trials.parquet",
        "heldout.json",
        "pareto.parquet",
    }
    # the study-level held-out numbers are parent-run metrics
    assert any(k.startswith("heldout.defaults.") for k in parent.data.metrics)


def test_resume_counts_finished_trials_only(tmp_path):
    first = sweep(tmp_path, "sweep.n_trials=2", "sweep.study_name=resume")
    assert first["finished"] == 2
    second = sweep(tmp_path, "sweep.n_trials=4", "sweep.study_name=resume")
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    trials = optuna.load_study(study_name="resume", storage=storage).trials
    assert second["finished"] == 4 and len(trials) == 4  # not 6
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    params = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(params)) == 4  # the resumed worker does not replay the first one's proposals
    third = sweep(tmp_path, "sweep.n_trials=4", "sweep.study_name=resume")  # already done: no new trial
    assert third["finished"] == 4 and len(optuna.load_study(study_name="resume", storage=storage).trials) == 4


def test_trial_of_a_dead_worker_is_failed_and_rerun_with_the_same_knobs(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    sweep(tmp_path, "sweep.n_trials=1", "sweep.study_name=dead")
    study = optuna.load_study(study_name="dead", storage=storage)
    orphan = study.ask()  # a trial some worker started (from the study's space: answerer knobs are not sampled) ...
    offline = SearchSpace.from_config(OmegaConf.load(CONF_DIR / "search_space" / "offline.yaml"))
    default = objectives_from(OmegaConf.create({"sweep": OmegaConf.load(CONF_DIR / "sweep" / "default.yaml")}))
    restrict(offline, default)[0].suggest(orphan)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    orphan.set_user_attr("worker", f"{socket.gethostname()}:{proc.pid}:1")  # ... and then died
    result = sweep(tmp_path, "sweep.n_trials=2", "sweep.study_name=dead")
    trials = optuna.load_study(study_name="dead", storage=storage).trials
    states = {t.number: t.state.name for t in trials}
    assert states[orphan.number] == "FAIL" and "died" in trials[orphan.number].user_attrs["error"]
    retry = [t for t in trials if t.user_attrs.get("retry_of") == orphan.number]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE" and retry[0].params == trials[orphan.number].params
    assert result["finished"] == 2


@pytest.mark.slow
def test_cli_runs_as_a_hydra_app(tmp_path):
    env = {**os.environ, "MEMTUNE_CACHE_DIR": str(tmp_path / "cache"), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "memtune.optimize.sweep.app",
            "dataset=fixture",
            "sweep.n_trials=2",
            "sweep.tune_conversations=null",
            "sweep.holdout_conversations=null",
            "tracking=none",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2/2 finished" in proc.stdout and (tmp_path / "run" / "trials.parquet").exists()


def test_a_trial_past_the_cap_is_failed_as_surplus_before_it_runs(tmp_path):
    """Two workers racing for the last slot: the trial with the higher number gives way."""
    from hydra import compose, initialize_config_dir

    from memtune.optimize.sweep.study import Sweep
    from memtune.optimize.sweep.trial import Surplus

    base = [
        f"cache_dir={tmp_path / 'cache'}",
        "dataset=fixture",
        f"sweep.storage=sqlite:///{tmp_path / 'optuna.db'}",
        "sweep.tune_conversations=null",
        "sweep.holdout_conversations=null",
        "tracking=none",
        "sweep.n_trials=1",
        "sweep.enqueue=[]",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        sweep_ = Sweep(compose(config_name="sweep", overrides=base), tmp_path / "run", base)
        first = sweep_.study.ask()  # another (live) worker holds the only slot ...
        first.set_user_attr("worker", worker_id())
        second = sweep_.study.ask()  # ... when this one starts
        with pytest.raises(Surplus):
            sweep_.objective(second)
        assert second.user_attrs["surplus"] is True and "overrides" not in second.user_attrs  # nothing ran


def test_merged_ingestion_keeps_graph_counts():
    from memtune.optimize.sweep.scoring import merge_ingest

    def facts(nodes, edges):
        return {
            "message_pairs": 2,
            "seconds": 1.0,
            "turns": 4,
            "memories_stored": 3,
            "ops": {"ADD": 3},
            "cost": {"phases": {}},
            "graph": {"mode": "on", "nodes": nodes, "valid_edges": edges},
            "graph_growth": [{"session": 1, "nodes": nodes}],
        }

    merged = merge_ingest([facts(5, 2), facts(7, 1)], ["a", "b"])
    assert merged["graph"] == {"mode": "on", "nodes": 12, "valid_edges": 3}
    assert [r["conversation"] for r in merged["graph_growth"]] == [0, 1]
    assert "graph" not in merge_ingest([facts(1, 1) | {"graph": None}], ["a"])
