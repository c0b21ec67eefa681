"""memtune-compile: each optimiser path (BootstrapFewShot, MIPROv2, GEPA; tiny budgets) on its stage and stage metric
with scripted DummyLMs, the saved program + metadata, the metric before/after on held-out examples, MLflow logging,
and the refusals. The compiled program as a knob value and in a bundle: tests/test_programs.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from compile_support import CONF_DIR, ScriptedLM, answer, last, proposer, system, two_conversation_fixture
from hydra import compose, initialize_config_dir

from memtune.optimize.compile.app import build_sets, run
from memtune.optimize.data.load import load_from_config
from memtune.policies.stages.programs import read_metadata


def compose_compile(tmp_path: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(
            "compile",
            overrides=[
                "tracking=none",
                f"cache_dir={tmp_path / 'cache'}",
                "name=test-program",
                *overrides,
            ],
        )


def fixture_overrides(tmp_path: Path, stage: str) -> list[str]:
    return [
        f"stage={stage}",
        f"dataset.path={two_conversation_fixture(tmp_path)}",
        "tune_conversations=[fixture-1]",
        "holdout_conversations=[fixture-2]",
        f"policy.{stage}.programs_dir={tmp_path / 'programs'}",
    ]


def test_bootstrap_compiles_the_extractor_with_demos_that_pass_the_metric(tmp_path):
    cfg = compose_compile(
        tmp_path, *fixture_overrides(tmp_path, "extractor"), "optimizer=bootstrap", "train_size=6", "report_size=5"
    )
    train, _, report_set, _ = build_sets(cfg, load_from_config(cfg.dataset))
    # keyed by the last new message as the prompt numbers it (the recent messages are shown unnumbered)
    silver = {f"{len(ex.new_messages)}. {ex.new_messages[-1]}": ex.silver for ex in train + report_set}

    def reply(messages):  # an LM that writes the silver facts of the pair it is shown
        text = last(messages)
        facts = next((facts for key, facts in silver.items() if key in text), [])
        return answer(facts=[{"fact": f, "sources": [1]} for f in facts])

    report = run(cfg, tmp_path / "run", lm=ScriptedLM(reply))
    state = json.loads(Path(report["program"]).read_text())
    demos = state["predict"]["demos"]
    assert 1 <= len(demos) <= 4 and all("facts" in d for d in demos)  # bootstrapped: runs the metric passed
    meta = read_metadata(tmp_path / "programs", "extractor", "test-program")
    assert meta["optimizer"]["name"] == "bootstrap" and meta["metric"]["name"] == "f"
    assert meta["trainset"]["tune"] == ["fixture-1"] and meta["trainset"]["holdout"] == ["fixture-2"]
    assert meta["before"]["f"] == meta["after"]["f"] == 1.0  # the LM writes the silver facts either way
    assert meta["after"]["tokens_per_example"] > meta["before"]["tokens_per_example"]  # demos cost prompt tokens
    assert meta["prompt_knobs"] == {"instruction": "mem0"} and meta["lm"] == "dummy"
    assert (tmp_path / "run" / "report.json").is_file()


def decision_lm(examples):
    """Right under an instruction that says MAGIC (looked up from the labelled examples), else always ADD."""

    def reply(messages):
        text = last(messages)
        shown = len(re.findall(r'"id":', text))
        matches = [
            ex
            for ex in examples
            if ex.new_facts[0] in text
            and len(ex.existing_memories) == shown
            and all(m["text"] in text for m in ex.existing_memories)
        ]
        if not matches or "MAGIC" not in system(messages):
            return answer(operations=[{"event": "ADD", "text": "something"}])
        ex, fact = matches[0], matches[0].new_facts[0]
        op = {"event": ex.expected_op, "id": ex.expected_target, "text": fact if ex.expected_op != "NOOP" else ""}
        return answer(operations=[op])

    return reply


def test_mipro_compiles_the_decider_on_labelled_operations_and_beats_it_held_out(tmp_path):
    cfg = compose_compile(
        tmp_path,
        "stage=decider",
        "dataset=updates",
        "optimizer=mipro",
        "optimizer.auto=null",
        "optimizer.num_candidates=2",
        "optimizer.num_trials=3",
        "optimizer.max_bootstrapped_demos=0",
        "train_size=6",
        "val_size=6",
        "report_size=12",
        f"policy.decider.programs_dir={tmp_path / 'programs'}",
    )
    train, val, report_set, about = build_sets(cfg, load_from_config(cfg.dataset))
    assert about["tune"][0] == "upd-01" and about["holdout"] == ["upd-08", "upd-09", "upd-10"]
    report = run(
        cfg,
        tmp_path / "run",
        lm=ScriptedLM(decision_lm(train + val + report_set)),
        proposer_lm=proposer("Decide well in MAGIC mode."),
    )
    before, after = report["before"], report["after"]
    assert before["accuracy"] < after["accuracy"] == 1.0
    assert after["macro_f1"] == 1.0 and set(after["per_op"]) >= {"ADD"}
    state = json.loads(Path(report["program"]).read_text())
    assert "MAGIC" in state["predict"]["signature"]["instructions"]
    assert report["prompt_knobs"] == {"allowed_ops": "all"}


def test_gepa_compiles_the_answerer_with_feedback_and_beats_it_held_out(tmp_path):
    cfg = compose_compile(
        tmp_path,
        *fixture_overrides(tmp_path, "answerer"),
        "optimizer=gepa",
        "optimizer.auto=null",
        "optimizer.max_metric_calls=40",
        "optimizer.use_merge=false",
        "train_size=4",
        "val_size=4",
        "report_size=6",
    )
    dataset = load_from_config(cfg.dataset)
    gold = {q.question: q.answer for c in dataset.conversations for q in c.questions}

    def reply(messages):
        if "gold words" not in system(messages):
            return answer(answer="Not mentioned")
        return answer(answer=next((a for q, a in gold.items() if q in last(messages)), "Not mentioned"))

    report = run(cfg, tmp_path / "run", lm=ScriptedLM(reply), proposer_lm=proposer("Answer with the gold words."))
    assert report["before"]["f1"] < 0.1 and report["after"]["f1"] == 1.0  # "Not mentioned" shares a token or two
    state = json.loads(Path(report["program"]).read_text())
    assert state["predict"]["signature"]["instructions"] == "Answer with the gold words."
    assert report["optimizer"]["max_metric_calls"] == 40 and report["proposer_lm"] == "dummy"


def test_gepa_needs_exactly_one_budget(tmp_path):
    cfg = compose_compile(
        tmp_path, *fixture_overrides(tmp_path, "answerer"), "optimizer=gepa", "optimizer.max_metric_calls=5"
    )
    with pytest.raises(ValueError, match="exactly one budget"):
        run(cfg, tmp_path / "run", lm=ScriptedLM(lambda m: answer(answer="x")), proposer_lm=proposer("x"))


def test_compile_refuses_a_stage_without_an_lm_program_and_labels_of_another_dataset(tmp_path):
    lm = ScriptedLM(lambda m: answer(answer="x"))
    cfg = compose_compile(tmp_path, *fixture_overrides(tmp_path, "answerer")[:-1], "policy=mem0_offline")
    with pytest.raises(ValueError, match="not an LLM stage"):
        run(cfg, tmp_path / "run", lm=lm)
    cfg = compose_compile(tmp_path, "stage=decider")  # LOCOMO dev: the update labels belong to dataset=updates
    with pytest.raises(ValueError, match="run with dataset=updates"):
        run(cfg, tmp_path / "run", lm=lm)
    cfg = compose_compile(tmp_path, "stage=summarizer")
    with pytest.raises(ValueError, match="compiles one of"):
        run(cfg, tmp_path / "run", lm=lm)


def test_compile_run_is_logged_to_mlflow(tmp_path):
    cfg = compose_compile(
        tmp_path,
        *fixture_overrides(tmp_path, "answerer"),
        "tracking=mlflow",
        "optimizer=bootstrap",
        "train_size=2",
        "report_size=3",
    )
    report = run(cfg, tmp_path / "run", lm=ScriptedLM(lambda m: answer(answer="Lisbon and Berlin")))
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'cache' / 'mlflow.db'}")
    logged = client.get_run(report["mlflow_run_id"])
    assert logged.data.tags["memtune.role"] == "compile" and logged.data.params["optimizer.name"] == "bootstrap"
    assert logged.data.metrics["before.f1"] == pytest.approx(report["before"]["f1"])
    assert logged.data.metrics["after.f1"] == pytest.approx(report["after"]["f1"])
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {"test-program.json", "test-program.meta.json", "report.json"} <= artifacts
