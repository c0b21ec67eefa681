"""The prompt library (policies/stages/prompts/): every variant is a file selectable by name, the default variants are
the signatures' own instructions byte for byte, and the decider's allowed operations are in its prompt and enforced
(an operation it may not apply is rejected, counted, never written)."""

from __future__ import annotations

import json

import dspy
import pytest
from compile_support import answer
from dspy.utils.dummies import DummyLM

from memtune.policies.policy import MemoryPolicy
from memtune.policies.stages.answer import LLMAnswerer
from memtune.policies.stages.decide import LLMDecider, ThresholdDecider
from memtune.policies.stages.extract import HeuristicExtractor, LLMExtractor
from memtune.policies.stages.instructions import available, load_instruction
from memtune.policies.stages.retrieve import CosineRetriever
from memtune.policies.stages.signatures import AnswerQuestion, DecideMemoryOperations, ExtractFacts
from memtune.policies.stages.summarize import NoSummarizer
from memtune.policies.types import Fact, Message, Scope


def words(text: str) -> str:
    """DSPy indents the instruction lines in the system prompt: compare the words."""
    return " ".join(text.split())


def test_the_library_has_the_variants_and_the_defaults_are_the_signatures_own():
    assert available("extract") == ["atomic", "mem0", "terse", "time_anchored", "user_facts"]
    assert available("answer") == ["cautious", "mem0", "terse", "time_anchored"]
    assert available("decide") == ["add_only", "add_update", "all"]
    assert load_instruction("extract", "mem0") == ExtractFacts.instructions
    assert load_instruction("answer", "mem0") == AnswerQuestion.instructions
    assert load_instruction("decide", "all") == DecideMemoryOperations.instructions
    texts = [load_instruction(kind, name) for kind in ("extract", "answer", "decide") for name in available(kind)]
    assert len(set(texts)) == len(texts) and all(len(t) > 80 for t in texts)  # distinct, written out
    assert LLMExtractor().dump_state() == LLMExtractor(instruction="mem0").dump_state()


def test_an_unknown_variant_fails_listing_the_available_ones():
    with pytest.raises(ValueError, match=r"unknown extract instruction 'chatty'.*\['atomic', 'mem0', 'terse'"):
        LLMExtractor(instruction="chatty")
    with pytest.raises(ValueError, match=r"unknown answer instruction 'x'.*'cautious'"):
        LLMAnswerer(instruction="x")
    with pytest.raises(ValueError, match=r"allowed_ops='some'.*\['add_only', 'add_update', 'all'\]"):
        LLMDecider(allowed_ops="some")


@pytest.mark.parametrize("name", available("extract"))
def test_each_extraction_variant_is_what_the_lm_reads(name):
    lm = DummyLM([answer(facts=[{"fact": "Ann moved to Oslo", "sources": [1]}])])
    stage = LLMExtractor(instruction=name)
    assert list(stage.predict.signature.fields) == list(ExtractFacts.fields)  # same inputs and outputs
    with dspy.context(lm=lm):
        out = stage(new_messages=["[1 May 2023] Ann: I moved to Oslo."])
    assert out.facts == [{"text": "Ann moved to Oslo", "sources": [1]}]
    assert words(load_instruction("extract", name)) in words(lm.history[0]["messages"][0]["content"])


@pytest.mark.parametrize("name", available("answer"))
def test_each_answer_variant_is_what_the_lm_reads(name):
    lm = DummyLM([answer(answer="Oslo")])
    with dspy.context(lm=lm):
        out = LLMAnswerer(instruction=name)(question="Where?", memories=[{"said_at": "1 May 2023", "memory": "Oslo"}])
    assert out.answer == "Oslo"
    assert words(load_instruction("answer", name)) in words(lm.history[0]["messages"][0]["content"])


OPS = [
    {"event": "ADD", "text": "Caroline moved to Denver"},
    {"event": "UPDATE", "id": 0, "text": "Caroline lives in Denver"},
    {"event": "DELETE", "id": 0},
    {"event": "NOOP", "id": 0},
]


@pytest.mark.parametrize(
    "mode, applied",
    [
        ("all", ["ADD", "UPDATE", "DELETE", "NOOP"]),
        ("add_update", ["ADD", "UPDATE", "NOOP"]),
        ("add_only", ["ADD", "NOOP"]),
    ],
)
def test_allowed_ops_are_in_the_prompt_and_other_operations_are_rejected_and_counted(mode, applied):
    lm = DummyLM([answer(operations=OPS)])
    decider = LLMDecider(allowed_ops=mode)
    with dspy.context(lm=lm):
        out = decider(existing_memories=[{"id": 0, "text": "Caroline lives in Boston"}], new_facts=["Caroline moved"])
    assert [op["event"] for op in out.operations] == applied
    refused = [r for r in out.rejected if r.get("reason") == "not allowed"]
    assert [r["event"] for r in refused] == [e for e in ("ADD", "UPDATE", "DELETE", "NOOP") if e not in applied]
    system = lm.history[0]["messages"][0]["content"]
    assert words(load_instruction("decide", mode)) in words(system)
    assert ("DELETE an existing memory" in words(system)) == (mode == "all")


def test_a_disallowed_operation_is_never_written_and_counts_in_rejected_ops(store, embedder):
    scope = Scope(user_id="c")
    lm = DummyLM(
        [
            answer(facts=[{"fact": "Caroline lives in Boston", "sources": [1]}]),
            answer(operations=[{"event": "ADD", "text": "Caroline lives in Boston"}]),
            answer(facts=[{"fact": "Caroline moved to Denver", "sources": [1]}]),
            answer(operations=[{"event": "UPDATE", "id": 0, "text": "Caroline lives in Denver"}]),
        ]
    )
    policy = MemoryPolicy(
        extractor=LLMExtractor(),
        summarizer=NoSummarizer(),
        decider=LLMDecider(allowed_ops="add_only"),
        retriever=CosineRetriever(),
        answerer=LLMAnswerer(),
        embedder=embedder,
        store=store,
        lm=lm,
    )
    policy.add([Message("Caroline", "I live in Boston.", "D1:1", "1 May")], scope)
    events = policy.add([Message("Caroline", "I moved to Denver.", "D2:1", "2 June")], scope)
    assert events == [] and policy.op_counts == {"ADD": 1, "UPDATE": 0, "DELETE": 0, "NOOP": 0}
    assert [m.text for m in store.get_all(scope)] == ["Caroline lives in Boston"]
    assert policy.decider.rejected == [
        {"event": "UPDATE", "id": 0, "text": "Caroline lives in Denver", "reason": "not allowed"}
    ]  # summary.json cost.rejected_ops counts these


def test_threshold_decider_honours_add_only():
    near = [[type("M", (), {"id": "m1", "score": 0.9})()]]  # between update (0.85) and noop (0.95): an UPDATE
    fact = [Fact("Ann lives in Oslo now", ("D1:1",), "1 May")]
    assert [d.op for d in ThresholdDecider().decide(fact, near)] == ["UPDATE"]
    assert [d.op for d in ThresholdDecider(allowed_ops="add_only").decide(fact, near)] == ["ADD"]
    assert HeuristicExtractor(instruction="mem0").knobs.instruction == "mem0"  # the knob is harmless elsewhere
    assert json.dumps(ThresholdDecider(allowed_ops="add_update").knobs.allowed) == '["ADD", "UPDATE", "NOOP"]'
