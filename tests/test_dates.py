"""stages/dates.py: timestamps read as dates, relative dates resolved from the day they were said (hand-computed:
8 May 2023 is a Monday), and the extractor knob that writes them into memories."""

from __future__ import annotations

from datetime import date

import pytest

from memtune.policies.stages.dates import parse_when, resolve_relative
from memtune.policies.stages.extract import ChunkExtractor, HeuristicExtractor
from memtune.policies.types import Message

MON = date(2023, 5, 8)  # Monday


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1:56 pm on 8 May, 2023", date(2023, 5, 8)),  # LOCOMO's session date
        ("10:37 am on 27 June, 2023", date(2023, 6, 27)),
        ("2023-05-08T13:56:00Z", date(2023, 5, 8)),
        ("2023-05-08T23:30:00+02:00", date(2023, 5, 8)),
        ("2023-05-08", date(2023, 5, 8)),
        ("May 8, 2023", date(2023, 5, 8)),
        ("8th May 2023", date(2023, 5, 8)),
        ("3 Sept 2022", date(2022, 9, 3)),
        ("31 February 2023", None),
        ("sometime last spring", None),
        ("", None),
    ],
)
def test_parse_when(text, expected):
    assert parse_when(text) == expected


@pytest.mark.parametrize(
    "said, expected",
    [
        ("I went yesterday.", "I went yesterday (7 May 2023)."),
        ("We met the day before yesterday", "We met the day before yesterday (6 May 2023)"),
        ("I ran two days ago", "I ran two days ago (6 May 2023)"),
        ("a couple of days ago", "a couple of days ago (6 May 2023)"),
        ("I leave tomorrow", "I leave tomorrow (9 May 2023)"),
        ("Tonight we cook", "Tonight (8 May 2023) we cook"),
        ("last Friday", "last Friday (5 May 2023)"),  # the latest Friday before Monday 8 May
        ("last Monday", "last Monday (1 May 2023)"),  # said on a Monday: the one a week before
        ("next Friday", "next Friday (12 May 2023)"),
        ("this Sunday", "this Sunday (14 May 2023)"),  # same Monday-to-Sunday week
        ("last week", "last week (the week before 8 May 2023)"),
        ("next week", "next week (the week after 8 May 2023)"),
        ("this weekend", "this weekend (the weekend of 8 May 2023)"),
        ("last weekend", "last weekend (the weekend before 8 May 2023)"),
        ("3 weeks ago", "3 weeks ago (the week of 17 April 2023)"),  # 8 May - 21 days
        ("in two weeks", "in two weeks (the week of 22 May 2023)"),
        ("last month", "last month (April 2023)"),
        ("next month", "next month (June 2023)"),
        ("5 months ago", "5 months ago (December 2022)"),
        ("last year", "last year (2022)"),
        ("ten years ago", "ten years ago (2013)"),
        ("a few days ago", "a few days ago (a few days before 8 May 2023)"),
        ("recently, the other day", "recently, the other day"),  # vague: left alone
        ("today's plan", "today's plan"),
        ("last night and yesterday", "last night (7 May 2023) and yesterday (7 May 2023)"),
    ],
)
def test_resolve_relative_from_monday_8_may_2023(said, expected):
    assert resolve_relative(said, MON) == expected


def test_resolution_across_year_ends_is_idempotent_and_needs_a_date():
    new_year = date(2023, 1, 1)  # a Sunday
    assert (
        resolve_relative("yesterday, last month", new_year)
        == "yesterday (31 December 2022), last month (December 2022)"
    )
    assert resolve_relative("last Friday", new_year) == "last Friday (30 December 2022)"
    once = resolve_relative("I went yesterday", MON)
    assert resolve_relative(once, MON) == once  # an annotated expression is not annotated again
    assert resolve_relative("I went yesterday", None) == "I went yesterday"


def test_extractors_resolve_dates_only_when_asked():
    msg = Message("Caroline", "I went to the LGBTQ support group yesterday.", "D1:3", "1:56 pm on 8 May, 2023")
    plain = HeuristicExtractor().extract([msg], [], "")
    dated = HeuristicExtractor(resolve_dates=True).extract([msg], [], "")
    assert plain[0].text == "Caroline: I went to the LGBTQ support group yesterday."
    assert dated[0].text == "Caroline: I went to the LGBTQ support group yesterday (7 May 2023)."
    assert dated[0].timestamp == "1:56 pm on 8 May, 2023" and dated[0].provenance == ("D1:3",)  # when it was said
    chunk = ChunkExtractor(resolve_dates=True).extract([msg], [], "")
    assert chunk[0].text == "Caroline: I went to the LGBTQ support group yesterday (7 May 2023)."
    undated = Message("Caroline", "I went yesterday to the group.", "D1:4", "")
    assert HeuristicExtractor(resolve_dates=True).extract([undated], [], "")[0].text.endswith("yesterday to the group.")


def test_ingested_memories_keep_their_session_date_parseably(tmp_path, embedder):
    """memtune-eval's ingestion stores each memory's LOCOMO session date as `timestamp`, and it parses."""
    from memtune.optimize.data.locomo import fixture_path, load_locomo
    from memtune.optimize.evaluation.evaluate import conversation_scope, ingest
    from memtune.policies.policy import MemoryPolicy
    from memtune.policies.stages.answer import ExtractiveAnswerer
    from memtune.policies.stages.decide import ThresholdDecider
    from memtune.policies.stages.retrieve import CosineRetriever
    from memtune.policies.stages.summarize import NoSummarizer
    from memtune.policies.store.store import MemoryStore

    conversation = load_locomo(fixture_path()).conversations[0]
    store = MemoryStore(tmp_path / "s", embedder.dim, embedder.id)
    policy = MemoryPolicy(
        HeuristicExtractor(resolve_dates=True),
        NoSummarizer(),
        ThresholdDecider(),
        CosineRetriever(),
        ExtractiveAnswerer(),
        embedder,
        store,
    )
    ingest(policy, conversation, progress=False)
    session_of = {t.dia_id: s.timestamp for s in conversation.sessions for t in s.turns}
    memories = store.get_all(conversation_scope(conversation))
    assert memories
    for m in memories:
        assert m.timestamp == session_of[m.provenance[0]] and parse_when(m.timestamp) is not None
