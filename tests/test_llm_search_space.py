"""conf/search_space/llm.yaml and conf/sweep/llm.yaml: every LLM knob is reachable from `memtune-sweep
search_space=llm` (each knob's override composes and builds a policy that ingests and answers with a DummyLM), the
knobs map to their stages, and the objectives are J-or-F1 against tokens and dollars."""

from __future__ import annotations

import json
import re

import pytest
from compile_support import CONF_DIR, ScriptedLM, answer, pipeline_make_lm, system
from hydra import compose, initialize_config_dir

from memtune.optimize.resolvers import quality_metric
from memtune.optimize.sweep.knob_deps import knob_stage, not_sampled
from memtune.optimize.sweep.scoring import objectives_from
from memtune.optimize.sweep.search_space import SearchSpace, format_value
from memtune.policies.build import build_policy
from memtune.policies.stages.answer import LLMAnswerer
from memtune.policies.stages.decide import LLMDecider
from memtune.policies.stages.extract import LLMExtractor
from memtune.policies.stages.programs import save_program
from memtune.policies.types import Message, Scope

BASE = ["policy=mem0_llm", "lm=openai", "search_space=llm", "sweep=llm"]
STAGE_OF = {
    "policy.extractor.program": "ingest",
    "policy.extractor.instruction": "ingest",
    "policy.extractor.recent_messages": "ingest",
    "policy/summarizer": "ingest",
    "policy.summarizer.window": "ingest",
    "policy.decider.program": "ingest",
    "policy.decider.allowed_ops": "ingest",
    "policy.decider.similar_k": "ingest",
    "policy.decider.per_fact": "ingest",
    "policy.answerer.program": "answer",
    "policy.answerer.instruction": "answer",
    "policy.retriever.top_k": "retrieve",
}


def sweep_cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("sweep", overrides=[*BASE, *overrides])


def pipeline_lm() -> ScriptedLM:
    """Answers whichever LLM stage asks, by the first output field its system prompt names."""

    def reply(messages):
        first = re.search(r"Your output fields are:\s*1\. `(\w+)`", system(messages)).group(1)
        return {
            "facts": answer(facts=[{"fact": "Ann moved to Oslo", "sources": [1]}]),
            "summary": answer(summary="Ann moved."),
            "operations": answer(operations=[{"event": "ADD", "text": "Ann moved to Oslo"}]),
            "answer": answer(answer="Oslo"),
        }[first]

    return ScriptedLM(reply)


def knob_values(space: SearchSpace):
    for knob in space.knobs:
        values = knob.choices if knob.type == "categorical" else (knob.low, knob.high)
        for value in values:
            yield knob, value


def test_the_llm_space_has_every_knob_the_issue_names():
    space = SearchSpace.from_config(sweep_cfg().search_space)
    assert {k.target: k.describe().split(": ", 1)[1] for k in space.knobs} == {
        "policy.extractor.program": "categorical {None}",
        "policy.extractor.instruction": "categorical {mem0, terse, time_anchored, user_facts, atomic} "
        "when policy.extractor.program in [None]",
        "policy.extractor.recent_messages": "int [0, 20]",
        "policy/summarizer": "categorical {llm, none}",
        "policy.summarizer.window": "int [4, 64] log when policy/summarizer in ['llm']",
        "policy.decider.program": "categorical {None}",
        "policy.decider.allowed_ops": "categorical {all, add_update, add_only} when policy.decider.program in [None]",
        "policy.decider.similar_k": "int [1, 20]",
        "policy.decider.per_fact": "categorical {False, True}",
        "policy.answerer.program": "categorical {None}",
        "policy.answerer.instruction": "categorical {mem0, terse, time_anchored, cautious} "
        "when policy.answerer.program in [None]",
        "policy.retriever.top_k": "int [1, 50] log",
    }
    assert {k.target: knob_stage(k.target) for k in space.knobs} == STAGE_OF


def test_every_llm_knob_composes_and_builds_a_policy_that_runs(tmp_path, embedder, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-used")
    programs = tmp_path / "programs"
    for stage, cls, knob in (
        ("extractor", LLMExtractor, "instruction"),
        ("decider", LLMDecider, "allowed_ops"),
        ("answerer", LLMAnswerer, "instruction"),
    ):
        built = cls()
        save_program(built, programs, stage, "tuned", {"prompt_knobs": {knob: getattr(built.knobs, knob)}})
    extra = [f"search_space.programs.{s}=[null,tuned]" for s in ("extractor", "decider", "answerer")]
    extra += [f"policy.{s}.programs_dir={programs}" for s in ("extractor", "decider", "answerer")]
    space = SearchSpace.from_config(sweep_cfg(*extra).search_space)
    tried = 0
    for knob, value in knob_values(space):
        override = f"{knob.target}={format_value(value)}"
        cfg = sweep_cfg(*extra, override)
        policy = build_policy(cfg, tmp_path / f"store-{tried}", embedder=embedder)
        policy.lm = pipeline_lm()
        scope = Scope(user_id="ann")
        policy.add([Message("Ann", "I moved to Oslo.", "D1:1", "1 May 2023")], scope)
        prediction, _ = policy.answer("Where does Ann live?", scope)
        assert prediction == "Oslo", override
        if "/" in knob.target:  # a group option: the stage class changed
            stage = policy.stages()[knob.target.split("/")[1]]
            assert type(stage).__name__ == {"llm": "LLMSummarizer", "none": "NoSummarizer"}[value], override
        else:
            _, stage_name, name = knob.target.split(".")
            assert getattr(policy.stages()[stage_name].knobs, name) == value, override
        tried += 1
    assert tried == 2 + 5 + 2 + 2 + 2 + 2 + 3 + 2 + 2 + 2 + 4 + 2


def test_objectives_are_j_with_a_judge_else_f1_against_tokens_and_dollars():
    names = lambda cfg: [(o.name, o.metric, o.direction) for o in objectives_from(cfg)]  # noqa: E731
    assert names(sweep_cfg()) == [
        ("quality", "scores.overall.f1", "maximize"),
        ("tokens", "cost.tokens.total", "minimize"),
        ("usd", "cost.usd.total", "minimize"),
    ]
    assert names(sweep_cfg("judge=openai"))[0] == ("quality", "scores.overall.judge", "maximize")
    assert quality_metric(None) == "scores.overall.f1" and quality_metric({"lm": {}}) == "scores.overall.judge"
    # every knob of the space moves one of these objectives: none is dropped
    cfg = sweep_cfg()
    assert not_sampled(SearchSpace.from_config(cfg.search_space), objectives_from(cfg)) == {}


def test_dollars_and_tokens_objectives_read_the_summary_and_a_missing_one_fails_loudly():
    stub = {"scores": {"overall": {"f1": 0.4}}, "cost": {"tokens": {"total": 1200}, "usd": {"total": 0.0123}}}
    objectives = objectives_from(sweep_cfg())
    assert [o.value(stub) for o in objectives] == [0.4, 1200.0, 0.0123]
    with pytest.raises(KeyError, match="no 'usd' under cost"):
        objectives[2].value({"cost": {"tokens": {"total": 5}}})
    with pytest.raises(ValueError, match="reports on the judges"):
        objectives_from(
            sweep_cfg("sweep.objectives=[{name: s, metric: judge_checks.judges.strict.J, direction: maximize}]")
        )


def test_memtune_sweep_runs_the_llm_space_end_to_end(tmp_path, monkeypatch):
    """Two trials of `memtune-sweep search_space=llm sweep=llm` on the fixture (trial 0: the paper's knobs, the defaults trial;
    trial 1: sampled), every LM a scripted DummyLM. The sweep's cost objectives (cost.tokens.total, cost.usd.total)
    come with the cost-control work (i13-parallel): context tokens stand in for them here."""
    monkeypatch.setattr("memtune.policies.lm.make_lm", pipeline_make_lm)
    from memtune.optimize.sweep.app import sweep_from_overrides

    out = sweep_from_overrides(
        [
            *BASE,
            "dataset=fixture",
            "sweep.tune_conversations=null",
            "sweep.holdout_conversations=null",
            "sweep.heldout.enabled=false",
            "tracking=none",
            "sweep.n_trials=2",
            f"cache_dir={tmp_path / 'cache'}",
            "sweep.objectives=[{name: quality, metric: scores.overall.f1, direction: maximize},"
            "{name: tokens, metric: scores.overall.context_tokens, direction: minimize}]",
        ],
        tmp_path / "out",
    )
    assert out["states"] == {"COMPLETE": 2}
    selected = {s["trial"]: s["overrides"] for s in out["heldout"]["selected"] if s.get("trial") is not None}
    assert "policy.extractor.instruction=mem0" in selected.get(0, ["policy.extractor.instruction=mem0"])
    summary = json.loads((tmp_path / "out" / "trials" / "0001" / "summary.json").read_text())
    assert summary["config"]["policy"]["decider"]["allowed_ops"] in ("all", "add_update", "add_only")
    assert (
        summary["cost"]["ingest"]["phases"]["extract"]["calls"] > 0 and summary["scores"]["overall"]["f1"] is not None
    )
