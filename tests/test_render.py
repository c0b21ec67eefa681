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
from memtune.optimize.evaluation.metrics import count_tokens
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
