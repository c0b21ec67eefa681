"""The issue-14 quality fixes of the question-aware answerer and the lexical reranker, with hand-computed numbers:
resolved dates and time expressions kept out of non-"when" spans, question-word coverage (idf over the texts scored
together), novelty, the fresh_weight re-ranking, and the LexicalScorer's coverage + position prior. Hand-built
memories only; every answer is a span of a memory it was given."""

from __future__ import annotations

import math

import pytest

from memtune.optimize.evaluation.metrics import normalize_tokens
from memtune.policies.stages import levers
from memtune.policies.stages.answer import QuestionAwareAnswerer
from memtune.policies.stages.answer_dates import without_times
from memtune.policies.stages.answer_spans import content_stems, plain
from memtune.policies.stages.lexical import coverage, novelty
from memtune.policies.stages.rerank import RerankStats
from memtune.policies.stages.rerank_lexical import LexicalScorer
from memtune.policies.stages.retrieve import RetrievalKnobs
from memtune.policies.types import MemoryRecord, Scope

SAID = "1:56 pm on 8 May, 2023"
SCOPE = Scope(user_id="u")


def memory(text: str, i: int = 0) -> MemoryRecord:
    return MemoryRecord(id=f"m{i}", text=text, scope=SCOPE, timestamp=SAID)


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "Gina: Got it a few years ago (a few years before 8 February 2023), it means freedom.",
            "Got it a few years ago, it means freedom.",
        ),
        ("J: Last week (the week before 7 April 2023) I went.", "Last week I went."),
        (
            "M: last month (April 2023), last year (2022), in 3 weeks (the week of 24 April 2023).",
            "last month, last year, in 3 weeks.",
        ),
        ("M: yesterday (7 May 2023) and 2 years ago (2021).", "yesterday and 2 years ago."),
        ("M: the movie (2019) was great.", "the movie (2019) was great."),  # a year the speaker wrote stays
    ],
)
def test_plain_drops_the_dates_resolve_dates_wrote_and_nothing_else(text, expected):
    assert plain(text) == expected


def test_plain_drop_times_removes_the_time_expressions_too():
    text = "John: Last week (the week before 27 June 2023), we had a blast at a live music event last Fri."
    assert plain(text, drop_times=True) == "we had a blast at a live music event."
    assert without_times("I went yesterday with Ann") == "I went  with Ann"


def test_a_what_answer_is_never_a_date_the_extractor_resolved():
    a = QuestionAwareAnswerer()
    event = memory("John: Last week (the week before 8 May 2023), we had a blast at a live music event.")
    answer = a.answer("What kind of event did John attend?", [event])
    assert "live music" in answer
    assert not {"week", "may", "2023", "last", "8"} & set(normalize_tokens(answer))
    line = memory("Gina: I made a limited edition line of hoodies last week (the week before 21 June 2023).")
    assert a.answer("What did Gina make a limited edition line of?", [line]) == "hoodies"
    # "when" questions still read the resolved date, and quantity questions keep their time words
    assert a.answer("When did John go to a music event?", [event]) == "the week before 8 May 2023"
    assert "years" in a.answer("How long ago did Gina get it?", [memory("Gina: I got it three years ago.")])


def test_coverage_weighs_question_words_by_their_rarity_among_the_texts():
    asked = content_stems("paint sunset")  # {"paint", "sunset"}
    texts = ["I paint a sunset", "I paint", "nothing here"]
    # n = 3; df(paint) = 2 -> log(1 + 3/2) = 0.9163; df(sunset) = 1 -> log(4) = 1.3863; total 2.3026
    got = coverage(asked, texts)
    assert got[0] == pytest.approx(1.0)
    assert got[1] == pytest.approx(math.log(2.5) / (math.log(2.5) + math.log(4)))  # 0.3979
    assert got[2] == 0.0
    assert coverage(asked, texts, idf=False) == [1.0, 0.5, 0.0]
    assert coverage(set(), texts) == [0.0, 0.0, 0.0]


def test_novelty_is_the_share_of_the_text_the_question_lacks():
    asked = content_stems("paint")
    assert novelty(asked, "I paint a sunset") == 0.5  # {paint, sunset}: sunset is new
    assert novelty(asked, "I paint") == 0.0
    assert novelty(asked, "") == 0.0


def test_fresh_weight_prefers_the_memory_that_adds_to_the_question():
    asked = content_stems("love turtle")  # {lov, turtl}
    repeats, adds = memory("I love my turtle", 0), memory("my turtle makes me calm", 1)
    # rank_weight 0, no idf: coverage 1.0 and 0.5; novelty 0 and 2/3 ({turtl, mak, calm} - asked)
    plain_rank = QuestionAwareAnswerer(rank_weight=0.0, idf=False).rank(asked, [repeats, adds])
    assert [m.id for _, m in plain_rank] == ["m0", "m1"]
    assert [s for s, _ in plain_rank] == pytest.approx([1.0, 0.5])
    fresh = QuestionAwareAnswerer(rank_weight=0.0, idf=False, fresh_weight=1.0).rank(asked, [repeats, adds])
    assert [m.id for _, m in fresh] == ["m1", "m0"]
    assert [s for s, _ in fresh] == pytest.approx([0.5 + 2 / 3, 1.0])
    with pytest.raises(ValueError, match="fresh_weight"):
        QuestionAwareAnswerer(fresh_weight=-0.1)


def test_lexical_scorer_is_coverage_plus_a_position_prior():
    texts = ["I paint", "I paint a sunset"]
    # n = 2: weight(paint) = log(2) = 0.6931, weight(sunset) = log(3) = 1.0986; coverage 0.3869 and 1.0
    low = math.log(2) / (math.log(2) + math.log(3))
    assert LexicalScorer(prior=1.0).score("paint sunset?", texts) == pytest.approx([low + 1.0, 1.0 + 0.5])
    assert LexicalScorer(prior=2.0).score("paint sunset?", texts) == pytest.approx([low + 2.0, 1.0 + 1.0])
    assert LexicalScorer(prior=0.0, idf=False).score("paint sunset?", texts) == [0.5, 1.0]
    with pytest.raises(ValueError, match="prior"):
        LexicalScorer(prior=-1.0)


def test_the_rerank_stage_with_the_lexical_scorer_reorders_only_what_the_prior_allows():
    memories = [memory("I paint", 0), memory("I paint a sunset", 1), memory("sunset again", 2)]
    knobs = RetrievalKnobs(top_k=3, rerank=True, rerank_depth=3)
    # coverage (n = 3; df(paint) = 2, df(sunset) = 2: equal weights): 0.5, 1.0, 0.5
    moved, scores = levers.rerank_levers(
        knobs, "paint sunset", memories, [3.0, 2.0, 1.0], LexicalScorer(1.0), RerankStats()
    )
    assert [m.id for m in moved] == ["m0", "m1", "m2"]  # 1.5, 1.5 (tie keeps the fused order), 0.8333
    assert scores == pytest.approx([1.5, 1.5, 0.5 + 1 / 3])
    moved, _ = levers.rerank_levers(knobs, "paint sunset", memories, [3.0, 2.0, 1.0], LexicalScorer(0.5), RerankStats())
    assert [m.id for m in moved] == ["m1", "m0", "m2"]  # 1.25 > 1.0 > 0.6667


def test_the_tuned_knobs_still_answer_with_words_of_the_memories_only():
    a = QuestionAwareAnswerer(
        rank_weight=1.0, fresh_weight=0.4, candidates=8, pool=32, join=3, join_margin=0.6, span_weight=1.75
    )
    memories = [
        memory("Nate: I really love having my turtles around.", 0),
        memory(
            "Nate: Turtles make me feel calm and they don't need much looking after (the week before 8 May 2023).", 1
        ),
        memory("Joanna: Last week (the week before 8 May 2023) I finished my first screenplay.", 2),
    ]
    said = set(normalize_tokens(" ".join(m.text for m in memories)))
    for question in ("What does Nate love about having turtles?", "What did Joanna finish last week?"):
        answer = a.answer(question, memories)
        assert set(normalize_tokens(answer)) <= said, answer  # no word the memories did not say
        assert len(answer.split()) <= 6  # max_words: no long multi-span strings
        assert not {"2023", "may", "week"} & set(normalize_tokens(answer)), answer
