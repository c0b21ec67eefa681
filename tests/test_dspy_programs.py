"""LLM stages as DSPy programs: forward() takes and returns plain data, dspy.Evaluate and BootstrapFewShot run on a
stage as it is, a compiled stage round-trips through a policy bundle with the very same prompts, and malformed
output raises LMStageError after the retries (the policy-facing method records it and skips). DummyLM only."""

from __future__ import annotations

import json
from pathlib import Path

import dspy
import pytest
from dspy.utils.dummies import DummyLM
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from memtune.optimize.evaluation.judge import Judge
from memtune.policies.build import STAGES
from memtune.policies.graph.extract import LLMEntityExtractor, LLMRelationGenerator
from memtune.policies.graph.update import LLMConflictResolver
from memtune.policies.lm import CostMeter, LMStageError
from memtune.policies.metering import metering, run_stage
from memtune.policies.policy import MemoryPolicy
from memtune.policies.runtime.bundle import load_policy
from memtune.policies.runtime.bundle_config import bundle_config
from memtune.policies.runtime.bundle_save import save_bundle
from memtune.policies.stages.answer import LLMAnswerer, render_context
from memtune.policies.stages.decide import LLMDecider
from memtune.policies.stages.extract import LLMExtractor
from memtune.policies.stages.protocols import LLMStage
from memtune.policies.stages.summarize import LLMSummarizer
from memtune.policies.store.store import MemoryStore
from memtune.policies.types import MemoryRecord, Message, Scope

CONF_DIR = Path(__file__).resolve().parents[1] / "memtune" / "conf"
EXTRACT_INPUTS = ("new_messages", "recent_messages", "summary")


def answer(**fields) -> dict:
    """One scripted LM answer: every value JSON-encoded as DummyLM writes it into the reply."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}


# stage, its plain inputs, the LM's answer, the plain prediction forward() returns (validated as the policy uses it)
CASES = {
    "extractor": (
        LLMExtractor,
        {"new_messages": ["[20 May 2023] Melanie: I ran a race."], "recent_messages": [], "summary": ""},
        answer(facts=[{"fact": " Melanie ran a race ", "sources": [1]}, {"fact": "  "}, "Melanie runs"]),
        {"facts": [{"text": "Melanie ran a race", "sources": [1]}, {"text": "Melanie runs", "sources": []}]},
    ),
    "summarizer": (
        LLMSummarizer,
        {"previous_summary": "", "new_messages": ["[20 May 2023] Melanie: I ran a race."]},
        answer(summary=" Melanie ran a race. "),
        {"summary": "Melanie ran a race."},
    ),
    "decider": (
        LLMDecider,
        {"existing_memories": [{"id": 0, "text": "Caroline lives in Boston"}], "new_facts": ["Caroline moved"]},
        answer(
            operations=[
                {"event": "UPDATE", "id": 0, "text": "Caroline lives in Denver"},
                {"event": "DELETE", "id": 5},  # never shown: rejected, never applied
                {"event": "ADD", "text": ""},  # nothing to add: dropped
                {"event": "ADD", "text": "Caroline moved"},
                {"event": "UPDATE", "id": 0, "text": " Caroline lives in Boston "},  # the same text: a NOOP
            ]
        ),
        {
            "operations": [
                {"event": "UPDATE", "id": 0, "text": "Caroline lives in Denver"},
                {"event": "ADD", "id": None, "text": "Caroline moved"},
                {"event": "NOOP", "id": 0, "text": "Caroline lives in Boston"},
            ],
            "rejected": [{"event": "DELETE", "id": 5, "text": "", "shown": 1}],
        },
    ),
    "answerer": (
        LLMAnswerer,
        {"question": "Where does Ann live?", "memories": [{"said_at": "1 May 2023", "memory": "Ann lives in Oslo"}]},
        answer(answer=" Oslo "),
        {"answer": "Oslo"},
    ),
    "judge": (
        lambda: Judge(lm=None),
        {"question": "Where does Ann live?", "gold_answer": "Oslo", "generated_answer": "in Oslo"},
        answer(reasoning="same city", label="CORRECT"),
        {"label": "CORRECT", "reasoning": "same city"},
    ),
    "graph.entities": (
        LLMEntityExtractor,
        {"new_messages": ["[1 Jan 2023] Caroline: I live in Boston."]},
        answer(entities=[{"name": "Caroline", "type": "person"}, {"name": "caroline"}, {"name": "the Boston"}]),
        {"entities": [{"name": "Caroline", "type": "PERSON"}, {"name": "Boston", "type": "THING"}]},
    ),
    "graph.relations": (
        LLMRelationGenerator,
        {"new_messages": ["[1 Jan 2023] Caroline: I live in Boston."], "entities": ["Caroline", "Boston"]},
        answer(
            relations=[
                {"source": "Caroline", "relation": "Lives In", "destination": "Boston", "sources": [1]},
                {"source": "Caroline", "relation": "is", "destination": "caroline"},  # a self-loop: dropped
            ]
        ),
        {"relations": [{"source": "Caroline", "relation": "lives_in", "destination": "Boston", "sources": [1]}]},
    ),
    "graph.resolver": (
        LLMConflictResolver,
        {
            "existing_relations": [
                {"id": 0, "source": "Caroline", "relation": "lives_in", "destination": "Boston", "valid_from": "x"}
            ],
            "new_relations": ["Caroline -- lives_in -- Denver"],
        },
        answer(outdated_ids=[0, 7, 0]),
        {"outdated_ids": [0], "rejected": [7]},
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_llm_stage_is_a_program_on_plain_data(name):
    make, inputs, reply, expected = CASES[name]
    stage, lm = make(), DummyLM([reply])
    assert isinstance(stage, dspy.Module) and isinstance(stage, LLMStage)
    with dspy.context(lm=lm):
        prediction = stage(**inputs)
    assert json.loads(json.dumps(prediction.toDict())) == expected  # plain JSON data, nothing else
    assert len(lm.history) == 1


def test_numbering_and_context_are_forwards_job():
    """The prompt numbers the new messages (the sources refer to those numbers), shows the last m recent ones, and
    gives the answerer its memories exactly as `render_context` writes them."""
    lm = DummyLM([answer(facts=[]), answer(answer="Oslo")])
    recent = [f"[1 May 2023] Ann: message {i}" for i in range(12)]
    with dspy.context(lm=lm):
        LLMExtractor(recent_messages=2)(new_messages=["[2 May] Ann: a", "[2 May] Bob: b"], recent_messages=recent)
        memories = [MemoryRecord("m1", "Ann lives in Oslo", Scope(user_id="a"), timestamp="1 May 2023")]
        LLMAnswerer()(question="Where?", memories=[{"said_at": "1 May 2023", "memory": "Ann lives in Oslo"}])
    prompt = lm.history[0]["messages"][-1]["content"]
    assert '"1. [2 May] Ann: a", "2. [2 May] Bob: b"' in prompt
    assert "message 11" in prompt and "message 10" in prompt and "message 9" not in prompt
    assert render_context(memories) in lm.history[1]["messages"][-1]["content"]


def test_malformed_output_raises_after_the_retries_and_the_adapter_records_it():
    extractor = LLMExtractor(retries=1)
    lm = DummyLM([{"facts": "garbage"}] * 4)  # 2 attempts x (chat adapter + its JSON fallback)
    with dspy.context(lm=lm), pytest.raises(LMStageError, match="extract: no usable LM answer after 2 attempt"):
        extractor(new_messages=["[1 May] Ann: hi"])
    lm, meter = DummyLM([{"facts": "garbage"}] * 4), CostMeter()
    with dspy.context(lm=lm), metering(meter):
        assert extractor.extract([Message("Ann", "hi", "D1:1")], [], "") == []
        assert run_stage(extractor, "x", new_messages=["y"]) is None  # the LM has no answers left: it fails too
    assert [(f.phase, f.item, f.attempts) for f in meter.failures] == [("extract", "D1:1", 2), ("extract", "x", 2)]
    assert "AdapterParseError" in meter.failures[0].error
    # every LM call of every attempt is counted (4 per failed stage call here), one step per stage call
    assert (meter.phases["extract"].failures, meter.phases["extract"].calls, meter.phases["extract"].steps) == (2, 8, 2)


def extraction(text: str, fact: str) -> dspy.Example:
    return dspy.Example(
        new_messages=[text], recent_messages=[], summary="", facts=[{"text": fact, "sources": [1]}]
    ).with_inputs(*EXTRACT_INPUTS)


TRAIN = [
    extraction("[1 May 2023] Ann: I moved to Oslo.", "Ann moved to Oslo"),
    extraction("[2 May 2023] Bob: I adopted a cat named Pixel.", "Bob adopted a cat named Pixel"),
]
# DummyLM by content: the key is looked for in the last message of the prompt (the one with the new input)
LM_ANSWERS = {
    "I moved to Oslo": answer(facts=[{"fact": "Ann moved to Oslo", "sources": [1]}]),
    "a cat named Pixel": answer(facts=[{"fact": "Bob adopted a cat named Pixel", "sources": [1]}]),
    "I run every morning": answer(facts=[{"fact": "Carla runs every morning", "sources": [1]}]),
    "Carla runs every morning": answer(operations=[{"event": "ADD", "text": "Carla runs every morning"}]),
}


def same_facts(example: dspy.Example, prediction: dspy.Prediction, trace=None) -> bool:
    return [f["text"] for f in prediction.facts] == [f["text"] for f in example.facts]


def test_dspy_evaluate_runs_on_a_stage_with_plain_examples():
    broken = extraction("[3 May 2023] Dan: something the LM cannot parse.", "Dan said something")
    lm = DummyLM({**LM_ANSWERS, "cannot parse": {"facts": "garbage"}})
    with dspy.context(lm=lm):
        result = dspy.Evaluate(devset=[*TRAIN, broken], metric=same_facts, num_threads=1, max_errors=5)(LLMExtractor())
    assert result.score == pytest.approx(200 / 3, abs=0.01)  # the failed example scores 0 (Evaluate's failure)
    assert [score for *_, score in result.results] == [True, True, 0.0]


def test_bootstrap_compiled_extractor_round_trips_through_a_bundle(tmp_path, embedder):
    with dspy.context(lm=DummyLM(LM_ANSWERS)):
        compiled = dspy.BootstrapFewShot(metric=same_facts, max_bootstrapped_demos=2, max_labeled_demos=0).compile(
            LLMExtractor(), trainset=TRAIN
        )
    assert isinstance(compiled, LLMExtractor) and len(compiled.predict.demos) == 2
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="export", overrides=["policy=mem0_llm", "lm=openai"])
    stages = {name: instantiate(cfg.policy[name]) for name in STAGES} | {"extractor": compiled}
    info = save_bundle(
        tmp_path / "bundle", bundle_config(cfg), embedder_id=embedder.id, embedder_dim=embedder.dim, stages=stages
    )
    saved = json.loads((tmp_path / "bundle" / info.modules["extractor"]["path"]).read_text())
    assert [d["facts"] for d in saved["predict"]["demos"]] == [
        [{"fact": "Ann moved to Oslo", "sources": [1]}],
        [{"fact": "Bob adopted a cat named Pixel", "sources": [1]}],
    ]

    pair, scope = [Message("Carla", "I run every morning.", "D1:1", "4 May 2023")], Scope(user_id="carla")
    original = MemoryPolicy(
        **stages,
        embedder=embedder,
        store=MemoryStore(tmp_path / "a", dim=embedder.dim, embedder_id=embedder.id),
        lm=DummyLM(LM_ANSWERS),
    )
    loaded, _ = load_policy(info.path, tmp_path / "b", lm=DummyLM(LM_ANSWERS), embedder=embedder)
    assert (
        [e.text for e in original.add(pair, scope)]
        == [e.text for e in loaded.add(pair, scope)]
        == ["Carla runs every morning"]
    )
    prompts = [json.dumps(p.lm.history[0]["messages"]) for p in (original, loaded)]
    assert prompts[0] == prompts[1]  # byte for byte: instructions, demos, input
    assert "1. [1 May 2023] Ann: I moved to Oslo." in prompts[1] and "Bob adopted a cat named Pixel" in prompts[1]
    assert loaded.meter.phases["extract"].calls == 1 and loaded.meter.phases["decide"].calls == 1
