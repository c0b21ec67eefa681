"""The answer stage's `render` knob (stages/render.py): one rendering function for the LLM answerer's prompt, the
eval's context_tokens and the budget walk. Every style keeps each memory's whole text and its time; the LLM answerer
is given exactly the rendered text whose tokens the eval counts. DummyLM only."""

from __future__ import annotations

import json
from dataclasses import replace

import dspy
import pytest
from conftest import HashEmbedder
from dspy.utils.dummies import DummyLM

from memtune.optimize.data.locomo import load_locomo, resolve_path
from memtune.optimize.evaluation.evaluate import BUDGETS, answer_questions, conversation_scope, ingest
from memtune.optimize.evaluation.metrics import context_budget_walk, count_tokens
from memtune.optimize.sweep.knob_deps import knob_stage, moved_by
from memtune.policies.policy import MemoryPolicy
from memtune.policies.stages.answer import ExtractiveAnswerer, LLMAnswerer, QuestionAwareAnswerer
from memtune.policies.stages.decide import ThresholdDecider
from memtune.policies.stages.extract import HeuristicExtractor
from memtune.policies.stages.render import RENDER_STYLES, context_renderer, render_context
from memtune.policies.stages.retrieve import CosineRetriever
from memtune.policies.stages.summarize import NoSummarizer
from memtune.policies.store.store import MemoryStore
from memtune.policies.types import MemoryRecord, Scope

SCOPE = Scope(user_id="u")
MEMORIES = [
    MemoryRecord("a", "Caroline: I went to a support group yesterday.", SCOPE, timestamp="1:56 pm on 8 May, 2023"),
    MemoryRecord("b", 'Melanie: I painted a "sunrise" last year.', SCOPE, timestamp="10:37 am on 27 June, 2023"),
    MemoryRecord("c", "Jon: no date here", SCOPE, timestamp="sometime"),
]
GRAPH = MemoryRecord(
    "g",
    "Ann lives in Oslo",
    SCOPE,
    timestamp="1:00 pm on 1 January, 2023",
    metadata={
        "kind": "graph",
        "source": "ann",
        "relation": "lives_in",
        "destination": "oslo",
        "valid_from": "1:00 pm on 1 January, 2023",
        "invalidated_at": "2:00 pm on 3 March, 2023",
    },
)


def test_json_is_mem0s_list_of_said_at_and_memory():
    assert render_context(MEMORIES) == json.dumps(
        [{"said_at": m.timestamp, "memory": m.text} for m in MEMORIES], ensure_ascii=False
    )
    assert render_context(MEMORIES, "json") == render_context(MEMORIES)


def test_lines_keep_each_memory_whole_with_its_time():
    assert render_context(MEMORIES, "lines").split("\n") == [
        "[1:56 pm on 8 May, 2023] Caroline: I went to a support group yesterday.",
        '[10:37 am on 27 June, 2023] Melanie: I painted a "sunrise" last year.',
        "[sometime] Jon: no date here",
    ]
    # lines_date: the day only (the time of day is dropped); a timestamp with no readable date is kept whole
    assert render_context(MEMORIES, "lines_date").split("\n") == [
        "[8 May 2023] Caroline: I went to a support group yesterday.",
        '[27 June 2023] Melanie: I painted a "sunrise" last year.',
        "[sometime] Jon: no date here",
    ]


def test_graph_triplets_say_when_they_held_in_every_style():
    assert json.loads(render_context([GRAPH]))[0]["invalid_since"] == "2:00 pm on 3 March, 2023"
    assert render_context([GRAPH], "lines_date") == (
        "[1 January 2023] ann -- lives_in -- oslo (valid from 1 January 2023; invalid since 3 March 2023)"
    )


@pytest.mark.parametrize("style", RENDER_STYLES)
def test_every_style_holds_every_memory_text_and_costs_at_most_json(style):
    text = render_context(MEMORIES, style)
    held = "\n".join(item["memory"] for item in json.loads(text)) if style == "json" else text  # JSON escapes quotes
    assert all(m.text in held for m in MEMORIES)
    assert count_tokens(text) <= count_tokens(render_context(MEMORIES, "json"))
    assert render_context([], style) in ("[]", "")


def test_an_unknown_style_is_refused_naming_the_knob():
    for make in (ExtractiveAnswerer, QuestionAwareAnswerer, LLMAnswerer):
        with pytest.raises(ValueError, match=r"answerer\.render must be one of"):
            make(render="yaml")
    with pytest.raises(ValueError, match=r"answerer\.render"):
        render_context(MEMORIES, "compact")


def test_the_renderer_follows_the_answerers_knob():
    assert context_renderer(ExtractiveAnswerer(render="lines_date"))(MEMORIES) == render_context(MEMORIES, "lines_date")
    assert context_renderer(object())(MEMORIES) == render_context(MEMORIES)  # no knob: json


def test_render_is_a_retrieval_knob_for_the_sweep():
    """It changes what context_tokens and recall_ctx_<B> count, so a recall-vs-tokens study must sample it."""
    assert knob_stage("policy.answerer.render") == "retrieve"
    assert knob_stage("policy.answerer.max_words") == "answer"
    assert "retrieve" in moved_by("scores.overall.context_tokens")


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    conversation = load_locomo(resolve_path("data/fixture/fixture.json")).conversations[0]
    conversation = replace(conversation, questions=conversation.questions[:3])
    embedder = HashEmbedder()
    policy = MemoryPolicy(
        HeuristicExtractor(),
        NoSummarizer(),
        ThresholdDecider(),
        CosineRetriever(top_k=8),
        ExtractiveAnswerer(),
        embedder,
        MemoryStore(tmp_path_factory.mktemp("store"), embedder.dim, embedder.id),
    )
    ingest(policy, conversation, progress=False)
    return policy, conversation


@pytest.mark.parametrize("style", RENDER_STYLES)
def test_context_tokens_count_exactly_what_the_llm_answerer_is_given(ingested, style):
    """The LLM answerer's prompt holds render_context(memories, style) as its memories field, and the eval's
    context_tokens is the token count of that very text (so a compact style saves only what the LM is not shown)."""
    policy, conversation = ingested
    policy.answerer, policy.lm = LLMAnswerer(render=style), DummyLM([{"answer": "x"}] * 10)
    given: list[str] = []
    forward = dspy.Predict.__call__

    def spy(self, **kwargs):
        given.append(kwargs["memories"])
        return forward(self, **kwargs)

    try:
        dspy.Predict.__call__ = spy  # type: ignore[method-assign]
        rows = answer_questions(policy, conversation, progress=False)
    finally:
        dspy.Predict.__call__ = forward  # type: ignore[method-assign]
    assert len(given) == len(rows) == len(conversation.questions)
    for i, (row, shown) in enumerate(zip(rows, given)):
        _, memories = policy.answer(row["question"], conversation_scope(conversation))
        assert shown == render_context(memories, style) and row["context_tokens"] == count_tokens(shown)
        assert f"\n{shown}\n" in policy.lm.history[i]["messages"][-1]["content"]  # the prompt holds it as it is
        for b in BUDGETS:
            if row["context_tokens"] <= b:
                assert row[f"recall_ctx_{b}"] == row["evidence_recall"]
    policy.answerer, policy.lm = ExtractiveAnswerer(), None


# ---- how a sweep could game recall within a token budget with the render knob, and why it cannot


def _turn_memories() -> list[MemoryRecord]:
    """Every turn of the fixture conversation as a memory (its own turn as provenance), in conversation order."""
    conversation = load_locomo(resolve_path("data/fixture/fixture.json")).conversations[0]
    return [
        MemoryRecord(t.dia_id, f"{t.speaker}: {t.text}", SCOPE, timestamp=t.timestamp, provenance=(t.dia_id,))
        for s in conversation.sessions
        for t in s.turns
    ]


def budget_violations(render, memories: list[MemoryRecord], budgets=(25, 50, 100, 250, 500)) -> list[str]:
    """What would let a rendering buy budget recall it did not earn: for each budget B, the prefix the budget walk
    keeps (the one recall_ctx_<B> credits) must (1) show every kept memory's whole text, in rank order, and
    (2) cost at least what those texts cost on their own (one a line), so that a budget never holds more memories
    than their bare texts would fit, whatever a style leaves out or re-encodes (ids, times, quoting)."""
    problems = []
    _, kept = context_budget_walk(memories, render, budgets)
    _, kept_text = context_budget_walk(memories, lambda ms: "\n".join(m.text for m in ms), budgets)
    for b in budgets:
        prefix = memories[: kept[b]]
        shown = render(prefix)
        # one shown entry per memory: the decoded JSON items' texts, or one line each
        entries = (
            [i["memory"] for i in json.loads(shown)] if shown.startswith("[{") or shown == "[]" else shown.split("\n")
        )
        whole = len(entries) >= len(prefix) and all(m.text in e for m, e in zip(prefix, entries))
        if prefix and not whole:
            problems.append(f"budget {b}: {kept[b]} memories are credited but not every text is shown whole")
        if kept[b] > kept_text[b]:
            problems.append(f"budget {b}: {kept[b]} memories kept, their bare texts fit only {kept_text[b]}")
    return problems


@pytest.mark.parametrize("style", RENDER_STYLES)
def test_no_render_style_fits_more_memories_than_their_texts(style):
    """The render knob can only save the wrapping (JSON keys, quoting, the time of day): each style shows every
    credited memory whole, and no budget holds more memories than their texts alone would fit."""
    memories = _turn_memories()
    assert len(memories) > 20
    assert budget_violations(lambda ms: render_context(ms, style), memories) == []


def test_the_check_catches_a_rendering_that_drops_text_but_keeps_ids():
    """The loophole the check exists for: a 'compact' rendering that shows ids (or a truncated text) instead of each
    memory's text would fit far more memories, so more credited provenance, into a budget. The same check
    refuses it, and the eval cannot be handed one: the renderer comes only from the answerer's `render` knob, whose
    values are the RENDER_STYLES checked above."""
    memories = _turn_memories()
    ids_only = budget_violations(lambda ms: "\n".join(m.id for m in ms), memories)
    truncated = budget_violations(lambda ms: "\n".join(m.text[:12] for m in ms), memories)
    assert any("is shown whole" in p for p in ids_only) and any("bare texts fit only" in p for p in ids_only)
    assert any("is shown whole" in p for p in truncated)
    # and what the knob accepts is exactly the checked styles
    for make in (ExtractiveAnswerer, QuestionAwareAnswerer):
        with pytest.raises(ValueError, match=r"answerer\.render"):
            make(render="ids")
    assert set(RENDER_STYLES) == {"json", "lines", "lines_date"}


def test_a_compact_style_earns_its_budget_recall_on_the_same_memories():
    """lines_date keeps at least as many memories as json in every budget (it drops wrapping, not text), and the
    recall it is credited is recall of memories it shows: on the same ranking, recall_ctx_<B> can rise only because
    more whole memories fit."""
    memories = _turn_memories()
    budgets = (50, 100, 250, 500)
    _, kept_json = context_budget_walk(memories, render_context, budgets)
    _, kept_lines = context_budget_walk(memories, lambda ms: render_context(ms, "lines_date"), budgets)
    assert all(kept_lines[b] >= kept_json[b] for b in budgets)
    assert any(kept_lines[b] > kept_json[b] for b in budgets)  # the knob does something
    for b in budgets:
        shown = render_context(memories[: kept_lines[b]], "lines_date")
        assert count_tokens(shown) <= b
        assert shown.count("\n") + 1 == kept_lines[b] if kept_lines[b] else shown == ""
