"""The retrieval levers' arithmetic, hand-computed: RRF and weighted fusion, min-max, MMR, near-duplicate collapse
(stages/fusion.py), and the time levers (stages/timefocus.py): recency, the time a question names, whether a memory
falls in it."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from memtune.policies.stages import fusion, timefocus
from memtune.policies.stages.timefocus import Window
from memtune.policies.types import MemoryRecord, Scope

DENSE = [("a", 0.9), ("b", 0.5), ("c", 0.1)]
KEYWORD = [("c", 4.0), ("d", 2.0)]


def test_rrf_by_hand():
    fused = dict(fusion.rrf([DENSE, KEYWORD], [1.0, 1.0], k=60))
    assert fused["a"] == pytest.approx(1 / 61)
    assert fused["b"] == pytest.approx(1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)  # 0.032266: in both lists
    assert fused["d"] == pytest.approx(1 / 62)
    # b and d tie at 1/62: the first to appear (the dense list comes first) wins
    assert [i for i, _ in fusion.rrf([DENSE, KEYWORD], [1.0, 1.0])] == ["c", "a", "b", "d"]
    # weights scale each list's contribution: keyword weight 0 is the dense order (d last, still a candidate)
    assert [i for i, _ in fusion.rrf([DENSE, KEYWORD], [1.0, 0.0])] == ["a", "b", "c", "d"]


def test_weighted_fusion_by_hand():
    # dense min-max: a 1, b 0.5, c 0; keyword min-max: c 1, d 0; weights 1 and 2
    fused = dict(fusion.weighted([DENSE, KEYWORD], [1.0, 2.0]))
    assert fused == pytest.approx({"a": 1.0, "b": 0.5, "c": 2.0, "d": 0.0})
    assert [i for i, _ in fusion.weighted([DENSE, KEYWORD], [1.0, 2.0])] == ["c", "a", "b", "d"]
    with pytest.raises(ValueError, match="2 sources but 1 weights"):
        fusion.weighted([DENSE, KEYWORD], [1.0])


def test_minmax():
    assert fusion.minmax([2.0, 4.0, 3.0]) == [0.0, 1.0, 0.5]
    assert fusion.minmax([0.3, 0.3]) == [1.0, 1.0] and fusion.minmax([]) == []


def test_mmr_by_hand():
    v = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # 0 and 1 are the same fact; 2 is another
    # relevance [1, 0.9, 0.5] -> min-max [1, 0.8, 0]. lambda 0.5: pick 0 (0.5 > 0.4 > 0); then
    # 1: 0.5*0.8 - 0.5*1 = -0.1, 2: 0.5*0 - 0.5*0 = 0 -> pick 2; then 1.
    assert fusion.mmr([1.0, 0.9, 0.5], v, 0.5, 3) == [0, 2, 1]
    assert fusion.mmr([1.0, 0.9, 0.5], v, 1.0, 3) == [0, 1, 2]  # lambda 1: relevance order
    assert fusion.mmr([1.0, 0.9, 0.5], v, 0.5, 2) == [0, 2]
    with pytest.raises(ValueError, match="lambda"):
        fusion.mmr([1.0], v[:1], 1.5, 1)


def test_collapse_drops_near_duplicates_of_better_candidates():
    v = np.array([[1.0, 0.0], [0.99, 0.141], [0.0, 1.0], [0.6, 0.8]])  # cos(0,1)=0.99, cos(2,3)=0.8, cos(0,3)=0.6
    assert fusion.collapse(v, 0.95) == [0, 2, 3]
    assert fusion.collapse(v, 0.8) == [0, 2]  # 3 is 0.8-similar to kept 2
    assert fusion.collapse(v, 1.01) == [0, 1, 2, 3]


def mem(text="", timestamp="", created_at="") -> MemoryRecord:
    return MemoryRecord("m", text, Scope("u"), timestamp=timestamp, created_at=created_at)


def test_recency_by_hand():
    ref = date(2023, 5, 31)
    assert timefocus.recency(date(2023, 5, 1), ref, 30.0) == pytest.approx(0.5)  # 30 days: one half-life
    assert timefocus.recency(date(2023, 4, 1), ref, 30.0) == pytest.approx(0.25)  # 60 days
    assert timefocus.recency(ref, ref, 30.0) == 1.0 and timefocus.recency(date(2023, 6, 9), ref, 30.0) == 1.0
    assert timefocus.recency(None, ref, 30.0) == 0.0 and timefocus.recency(ref, None, 30.0) == 0.0


def test_said_on_and_reference_day():
    assert timefocus.said_on(mem(timestamp="1:56 pm on 8 May, 2023")) == date(2023, 5, 8)
    assert timefocus.said_on(mem(created_at="2026-01-02T03:04:05+00:00")) == date(2026, 1, 2)  # no timestamp
    assert timefocus.said_on(mem()) is None
    times = [("1:56 pm on 8 May, 2023", "2026-01-01T00:00:00"), ("7:00 pm on 20 October, 2023", ""), ("", "")]
    assert timefocus.reference_day(times) == date(2023, 10, 20)
    assert timefocus.reference_day([]) is None


REF = date(2023, 10, 20)  # a Friday: the conversation's last session date


@pytest.mark.parametrize(
    "question, window",
    [
        ("What did Melanie do on 8 May, 2023?", Window(date(2023, 5, 8), date(2023, 5, 9))),
        ("What did Audrey eat for dinner on October 24, 2023?", Window(date(2023, 10, 24), date(2023, 10, 25))),
        ("Where did Joanna travel to in July 2022?", Window(date(2022, 7, 1), date(2022, 8, 1))),
        ("What did they do in December, 2022?", Window(date(2022, 12, 1), date(2023, 1, 1))),
        ("When did Melanie go camping in June?", Window(month=6)),
        ("When did James visit Italy in 2021?", Window(date(2021, 1, 1), date(2022, 1, 1))),
        ("What did Caroline do last year?", Window(date(2022, 1, 1), date(2023, 1, 1))),
        ("What did Caroline do last month?", Window(date(2023, 9, 1), date(2023, 10, 1))),
        ("What happened last week?", Window(date(2023, 10, 9), date(2023, 10, 16))),  # Mon-Sun before REF's week
        ("What did she do yesterday?", Window(date(2023, 10, 19), date(2023, 10, 20))),
        ("What may Caroline do next?", None),  # "may" is not a month
        ("How many children does Melanie have?", None),
    ],
)
def test_question_window(question, window):
    assert timefocus.question_window(question, REF) == window


def test_relative_question_times_need_a_reference_day():
    assert timefocus.question_window("What did Caroline do last year?", None) is None


def test_in_window_said_or_named():
    may = Window(date(2023, 5, 1), date(2023, 6, 1))
    assert timefocus.in_window(mem("I ran", "1:56 pm on 8 May, 2023"), may)  # said in May 2023
    assert not timefocus.in_window(mem("I ran", "1:56 pm on 8 June, 2023"), may)
    # said in June, but names a day in May (the date-resolving extractor writes these)
    assert timefocus.in_window(mem("I ran yesterday (31 May 2023)", "1:56 pm on 1 June, 2023"), may)
    assert timefocus.in_window(mem("back in May 2023 I ran"), may)
    assert not timefocus.in_window(mem("in 2022 I ran"), may)
    assert timefocus.in_window(mem("in 2023 I ran"), may)  # a year overlaps the month
    assert timefocus.in_window(mem("I ran", "8 June 2021"), Window(month=6))
    assert not timefocus.in_window(mem("no date here"), may)


def test_mentioned_reads_days_months_and_years_once():
    found = timefocus.mentioned("on 7 May 2023, in June 2022 and back in 2019")
    assert found == (
        Window(date(2023, 5, 7), date(2023, 5, 8)),
        Window(date(2022, 6, 1), date(2022, 7, 1)),
        Window(date(2019, 1, 1), date(2020, 1, 1)),
    )
