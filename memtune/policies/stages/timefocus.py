"""The time levers of retrieval: how recent a memory is, and whether it falls in a time the question names.

Pure functions over dates (stages/dates.py reads the timestamps). Definitions, used by the retriever
(stages/levers.py):

* when a memory was said: its `timestamp` (parse_when), else the date of its `created_at` (the write), else unknown.
* the reference day: the latest day any memory of the scope was said. On LOCOMO the questions are asked after the
  conversation, so this is the conversation's last session date; for a live agent it is about today.
* recency(m) = 0.5 ** (age_days / half_life_days), age_days = reference day - the day m was said (>= 0); 0 when
  the day is unknown. The retriever adds recency_weight * recency(m) to the memory's relevance (in [0, 1]).
* question_window(question, reference day): the time a question names, as a window of days:
    "on 8 May 2023", "May 8, 2023", "October 24, 2023"  -> that day
    "in May 2023", "May 2023"                            -> that month
    "in June" (a capitalised month after in/during/since/by/of/early/late, no year) -> that month of any year
    "in 2022", "2022"                                    -> that year
    "yesterday", "last week|month|year", "this week|month|year" -> from the reference day
  the first one found wins; none: None (the levers do nothing for the question).
* in_window(m): the day m was said lies in the window, or m's text names a day, month or year that overlaps it
  (a memory written "yesterday (7 May 2023)" by the date-resolving extractor names 7 May 2023).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

from ..types import MemoryRecord
from .dates import _DAY_MONTH_YEAR, _MONTH_DAY_YEAR, _MONTH_NUM, _MONTH_RE, _date_from, parse_when, shift_months


@dataclass(frozen=True)
class Window:
    """Days start <= d < end; or, with `month` set (and start/end None), that month of any year."""

    start: date | None = None
    end: date | None = None
    month: int | None = None

    def contains(self, d: date) -> bool:
        if self.month is not None:
            return d.month == self.month
        assert self.start is not None and self.end is not None
        return self.start <= d < self.end

    def overlaps(self, other: Window) -> bool:
        if self.month is not None or other.month is not None:
            a, b = (self, other) if self.month is not None else (other, self)
            if b.month is not None:
                return a.month == b.month
            assert b.start is not None and b.end is not None
            return any(a.contains(b.start + timedelta(days=i)) for i in range(min((b.end - b.start).days, 366)))
        assert self.start and self.end and other.start and other.end
        return self.start < other.end and other.start < self.end


def day_window(d: date) -> Window:
    return Window(d, d + timedelta(days=1))


def month_window(year: int, month: int) -> Window:
    y2, m2 = shift_months(date(year, month, 1), 1)
    return Window(date(year, month, 1), date(y2, m2, 1))


def year_window(year: int) -> Window:
    return Window(date(year, 1, 1), date(year + 1, 1, 1))


def said_on(memory: MemoryRecord) -> date | None:
    """When a memory was said: its timestamp, else the day it was written, else None."""
    return parse_when(memory.timestamp) or parse_when(memory.created_at)


def reference_day(times: list[tuple[str, str]]) -> date | None:
    """The latest day among (timestamp, created_at) pairs (store.said_times(scope)), or None."""
    days = [d for ts, created in set(times) if (d := parse_when(ts) or parse_when(created)) is not None]
    return max(days) if days else None


def recency(day: date | None, reference: date | None, half_life_days: float) -> float:
    """0.5 ** (age / half_life) with age = reference - day in days, clipped at 0; 0 when either day is unknown."""
    if day is None or reference is None:
        return 0.0
    return 0.5 ** (max((reference - day).days, 0) / half_life_days)


_MONTH_YEAR = re.compile(rf"\b{_MONTH_RE},?\s+(\d{{4}})\b", re.IGNORECASE)
_MONTH_ONLY = re.compile(
    r"\b(?:in|during|since|by|of|early|late)\s+"
    r"(January|February|March|April|May|June|July|August|September|October|November|December)\b(?!,?\s+\d)"
)
_YEAR = re.compile(r"\b(19\d\d|20\d\d)\b")
_RELATIVE = re.compile(r"\b(yesterday|(?:last|this)\s+(?:week|month|year))\b", re.IGNORECASE)


def question_window(question: str, reference: date | None) -> Window | None:
    """The time a question names (see the module docstring), or None."""
    for pattern, order in ((_DAY_MONTH_YEAR, "dmy"), (_MONTH_DAY_YEAR, "mdy")):
        m = pattern.search(question)
        if m and (d := _date_from(m, order)) is not None:
            return day_window(d)
    m = _MONTH_YEAR.search(question)
    if m:
        return month_window(int(m.group(2)), _MONTH_NUM[m.group(1).lower().rstrip(".")])
    m = _MONTH_ONLY.search(question)
    if m:
        return Window(month=_MONTH_NUM[m.group(1).lower()])
    m = _YEAR.search(question)
    if m:
        return year_window(int(m.group(1)))
    m = _RELATIVE.search(question)
    if m and reference is not None:
        return _relative_window(" ".join(m.group(1).lower().split()), reference)
    return None


def _relative_window(words: str, ref: date) -> Window:
    if words == "yesterday":
        return day_window(ref - timedelta(days=1))
    which, unit = words.split()
    step = -1 if which == "last" else 0
    if unit == "week":
        monday = ref - timedelta(days=ref.weekday()) + timedelta(days=7 * step)
        return Window(monday, monday + timedelta(days=7))
    if unit == "month":
        return month_window(*shift_months(ref, step))
    return year_window(ref.year + step)


@lru_cache(maxsize=16384)  # the same candidates come back for many questions
def mentioned(text: str) -> tuple[Window, ...]:
    """The days, months and years a text names ("7 May 2023", "May 2023", "2022")."""
    out: list[Window] = []
    taken: list[tuple[int, int]] = []
    for pattern, order in ((_DAY_MONTH_YEAR, "dmy"), (_MONTH_DAY_YEAR, "mdy")):
        for m in pattern.finditer(text):
            if (d := _date_from(m, order)) is not None:
                out.append(day_window(d))
                taken.append(m.span())
    for m in _MONTH_YEAR.finditer(text):
        if not _inside(m.span(), taken):
            out.append(month_window(int(m.group(2)), _MONTH_NUM[m.group(1).lower().rstrip(".")]))
            taken.append(m.span())
    out += [year_window(int(m.group(1))) for m in _YEAR.finditer(text) if not _inside(m.span(), taken)]
    return tuple(out)


def _inside(span: tuple[int, int], taken: list[tuple[int, int]]) -> bool:
    return any(a <= span[0] and span[1] <= b for a, b in taken)


def in_window(memory: MemoryRecord, window: Window) -> bool:
    """Whether the memory was said in the window or names a time that overlaps it."""
    day = said_on(memory)
    if day is not None and window.contains(day):
        return True
    return any(window.overlaps(w) for w in mentioned(memory.text))
