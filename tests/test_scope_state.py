"""Each scope's rolling context lives in the store (policies/runtime/scope_state.py, store/scope_table.py): a
restarted Memory builds byte-identical prompts, what is kept is bounded by the knobs, and it goes with the scope
(delete_all), with reset, and when the process holds too many scopes (reloaded from the store)."""

from __future__ import annotations

import json

from dspy.utils.dummies import DummyLM
from serve_support import make_memory

from memtune.policies.policy import MemoryPolicy
from memtune.policies.runtime.memory import Memory
from memtune.policies.runtime.scope_state import recent_kept
from memtune.policies.stages.answer import ExtractiveAnswerer
from memtune.policies.stages.decide import ThresholdDecider
from memtune.policies.stages.extract import ChunkExtractor, HeuristicExtractor, LLMExtractor
from memtune.policies.stages.retrieve import CosineRetriever
from memtune.policies.stages.summarize import LLMSummarizer, NoSummarizer
from memtune.policies.store.store import MemoryStore
from memtune.policies.types import Scope

M, WINDOW = 3, 4  # the extractor reads the last 3 messages; the summary is refreshed every 4
ALICE = Scope("alice")


def pairs(n: int) -> list[list[dict]]:
    return [
        [
            {
                "role": "Alice",
                "content": f"On day {i} I walked the dog along river number {i}.",
                "dia_id": f"D1:{2 * i}",
            },
            {"role": "Bob", "content": f"River {i} must have been lovely on day {i}.", "dia_id": f"D1:{2 * i + 1}"},
        ]
        for i in range(1, n + 1)
    ]


def script(first: int, last: int) -> list[dict]:
    """The LM answers of adds first..last (1-based): an extraction each, a summary after every WINDOW messages."""
    answers = []
    for i in range(first, last + 1):
        answers.append({"facts": json.dumps([{"fact": f"Alice walked the dog by river {i}", "sources": [1]}])})
        if (2 * i) % WINDOW == 0:
            answers.append({"summary": f"Summary after {2 * i} messages: Alice walks her dog by rivers."})
    return answers


def llm_memory(uri, embedder, answers, summarizer=True) -> tuple[Memory, DummyLM]:
    lm = DummyLM(answers)
    policy = MemoryPolicy(
        extractor=LLMExtractor(recent_messages=M),
        summarizer=LLMSummarizer(window=WINDOW) if summarizer else NoSummarizer(),
        decider=ThresholdDecider(),
        retriever=CosineRetriever(top_k=5),
        answerer=ExtractiveAnswerer(),
        embedder=embedder,
        store=MemoryStore(uri, dim=embedder.dim, embedder_id=embedder.id),
        lm=lm,
    )
    return Memory(policy), lm


def prompts(lm: DummyLM) -> list[str]:
    return [json.dumps(h["messages"]) for h in lm.history]


def test_a_restarted_memory_builds_byte_identical_prompts(tmp_path, embedder):
    talk = pairs(6)
    # without a restart: one process sees all six adds
    twin, twin_lm = llm_memory(tmp_path / "twin", embedder, script(1, 6))
    for p in talk:
        twin.add(p, user_id="alice")
    twin.close()
    # with a restart after five adds
    first, _ = llm_memory(tmp_path / "store", embedder, script(1, 5))
    for p in talk[:5]:
        first.add(p, user_id="alice")
    first.close()
    again, again_lm = llm_memory(tmp_path / "store", embedder, script(6, 6))
    again.add(talk[5], user_id="alice")
    # the sixth add's extraction and summary prompts are the same bytes
    assert len(again_lm.history) == 2 and prompts(again_lm) == prompts(twin_lm)[-2:]
    extraction = prompts(again_lm)[0]
    # and they carry the stored context: the summary of messages 1-8, the last M messages (pair 5 and the 2nd of 4)
    assert "Summary after 8 messages" in extraction and "river number 5" in extraction and "River 4 must" in extraction
    assert "river number 4" not in extraction  # older than the last M: the extractor never reads it
    summary = prompts(again_lm)[1]
    assert "river number 5" in summary and "river number 6" in summary and "Summary after 8 messages" in summary
    # what is stored is bounded by the knobs: M recent messages, fewer than WINDOW pending
    recent, pending, text = again._states.table.get(ALICE)
    assert [m.dia_id for m in recent] == ["D1:11", "D1:12", "D1:13"] and pending == []
    assert text == "Summary after 12 messages: Alice walks her dog by rivers."
    assert again.policy.scope_state(ALICE).recent == recent  # the process holds no more than the store
    again.close()


def test_kept_context_is_bounded_by_the_knobs(tmp_path, embedder):
    memory, _ = llm_memory(tmp_path / "s", embedder, script(1, 3), summarizer=True)
    memory.add(pairs(1)[0], user_id="alice")
    recent, pending, summary = memory._states.table.get(ALICE)
    assert len(recent) == 2 and len(pending) == 2 and summary == ""  # half a window pending
    memory.close()
    nosum, _ = llm_memory(tmp_path / "n", embedder, script(1, 3), summarizer=False)
    for p in pairs(3):
        nosum.add(p, user_id="alice")
    recent, pending, summary = nosum._states.table.get(ALICE)
    assert len(recent) == M and pending == [] and summary == ""  # nothing reads pending without a summarizer
    assert nosum.policy.scope_state(ALICE).pending == []  # and the process does not pile them up either
    nosum.close()
    assert recent_kept(LLMExtractor(recent_messages=10)) == 10 and recent_kept(LLMExtractor(recent_messages=0)) == 0
    assert recent_kept(ChunkExtractor(chunk_turns=4)) == 3  # a chunk ends at the newest message
    assert recent_kept(ChunkExtractor(chunk_turns=1)) == 0 and recent_kept(HeuristicExtractor()) == 0


def test_an_extractor_that_reads_no_context_costs_no_write(tmp_path, embedder):
    memory = make_memory(tmp_path / "store", embedder)  # mem0_offline: heuristic extractor, no summarizer
    for p in pairs(3):
        memory.add(p, user_id="u1")
    assert memory._states.table.count() == 0 and memory.policy.scope_state(Scope("u1")).recent == []
    memory.close()


def test_context_goes_with_the_scope_and_with_reset(tmp_path, embedder):
    memory = make_memory(
        tmp_path / "store", embedder, "test-v1", "policy/extractor=chunks", "policy.extractor.chunk_turns=4"
    )
    for scope in ({"user_id": "u1"}, {"user_id": "u1", "agent_id": "planner"}, {"user_id": "u2"}):
        memory.add(pairs(1)[0], **scope)
    table = memory._states.table
    assert table.count() == 3
    memory.delete_all(user_id="u1")  # u1's own context and its planner's
    assert table.get(Scope("u1")) is None and table.get(Scope("u1", "planner")) is None
    assert table.get(Scope("u2")) is not None and table.count() == 1
    assert memory.policy.summary(Scope("u1")) == "" and Scope("u1") not in memory.policy._state
    memory.close()
    reopened = make_memory(
        tmp_path / "store", embedder, "test-v1", "policy/extractor=chunks", "policy.extractor.chunk_turns=4"
    )
    assert reopened._states.table.get(Scope("u1")) is None and reopened._states.table.get(Scope("u2")) is not None
    reopened.reset()
    assert reopened._states.table.count() == 0
    reopened.add(pairs(1)[0], user_id="u3")  # and the store keeps working after the reset
    assert reopened._states.table.count() == 1
    reopened.close()


def test_a_process_holds_a_bounded_number_of_scopes(tmp_path, embedder):
    memory, lm = llm_memory(tmp_path / "s", embedder, script(1, 1) * 4, summarizer=False)
    memory._states.max_scopes = 2
    users = ["u1", "u2", "u3"]
    for user, p in zip(users, pairs(3)):
        memory.add(p, user_id=user)
    assert memory._states.held() == 2 and Scope("u1") not in memory.policy._state  # u1 went first (least recent)
    memory.add(pairs(4)[3], user_id="u1")  # reloaded from the store: the extractor still sees u1's first pair
    assert "river number 1" in prompts(lm)[-1]
    memory.close()


def test_a_failed_add_leaves_the_last_saved_context(tmp_path, embedder):
    memory, lm = llm_memory(tmp_path / "s", embedder, script(1, 1), summarizer=False)
    memory.add(pairs(1)[0], user_id="alice")
    saved = memory._states.table.get(ALICE)

    def broken(*args, **kwargs):
        raise RuntimeError("store write failed")

    memory.policy.store.apply = broken  # type: ignore[method-assign]
    lm.answers = iter(script(2, 2))
    try:
        memory.add(pairs(2)[1], user_id="alice")
    except RuntimeError:
        pass
    assert memory._states.table.get(ALICE) == saved and ALICE not in memory.policy._state
    memory.close()
