"""Dates for "when" questions: the time a memory's text names, resolved against the time it was said.

`when_answer(text, timestamp, style)` finds the first temporal expression in `text` ("yesterday", "last week",
"two weekends ago", "last Friday", "next month", "in 2013", "on 8 May") and returns it as a date relative to
`timestamp` (a memory's session time: "1:56 pm on 8 May, 2023", or ISO "2023-05-08T13:56:00"), in one of
three styles:

- "locomo": LOCOMO's gold-answer style, which the annotators wrote from the same session dates: a day-precise
  expression becomes a date ("yesterday" -> "7 May 2023"), a vaguer one stays relative to the session date
  ("last week" -> "the week before 8 May 2023", "last Friday" -> "the Friday before 8 May 2023"), a month or
  year is given as such ("last month" -> "April 2023", "three years ago" -> "2020").
- "absolute": every expression resolved to one day (or month / year) ("last week" -> "1 May 2023").
- "session": the session date alone, whatever the text says (the extractive answerer's behaviour).

No expression (or an unparseable timestamp) -> the session date ("8 May 2023"), or the timestamp as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, timedelta

DATE_STYLES = ("locomo", "absolute", "session")
MONTHS = "january february march april may june july august september october november december".split()
WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
_NUMBERS = {
    w: n for n, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve".split())
} | {"a": 1, "an": 1, "a couple of": 2, "couple of": 2, "a few": 3, "few": 3}
_NUM = r"(\d{1,2}|a couple of|couple of|a few|few|an?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)"
_WEEKDAY = r"(monday|tuesday|wednesday|thursday|friday|saturday|sunday|mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)\b"
_MONTH = (
    r"(january|february|march|april|may|june|july|august|september|october|november|december|"
    r"jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)\.?(?![a-z])"
)
_SEASONS = ("spring", "summer", "fall", "autumn", "winter")

_TIMESTAMP = re.compile(rf"(\d{{1,2}})\s+{_MONTH},?\s+(\d{{4}})", re.IGNORECASE)
_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_TIME_OF_DAY = re.compile(r"^\s*\d{1,2}:\d{2}\s*(am|pm)\s+on\s+", re.IGNORECASE)


def parse_timestamp(timestamp: str) -> date | None:
    """The day of a memory's timestamp: LOCOMO's "1:56 pm on 8 May, 2023" or ISO "2023-05-08..."; None if neither."""
    m = _TIMESTAMP.search(timestamp or "")
    if m:
        try:
            return date(int(m.group(3)), _month_number(m.group(2)), int(m.group(1)))
        except ValueError:
            return None
    m = _ISO.search(timestamp or "")
    if m:
        try:
            return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            return None
    return None


def _month_number(name: str) -> int:
    return next(i for i, full in enumerate(MONTHS, 1) if full.startswith(name.lower()[:3]))


def format_day(day: date) -> str:
    """LOCOMO's date style: "7 May 2023"."""
    return f"{day.day} {MONTHS[day.month - 1].title()} {day.year}"


def format_month(year: int, month: int) -> str:
    return f"{MONTHS[month - 1].title()} {year}"


def _shift_month(day: date, months: int) -> tuple[int, int]:
    index = day.year * 12 + day.month - 1 + months
    return index // 12, index % 12 + 1


def _number(word: str) -> int:
    word = word.lower()
    return int(word) if word.isdigit() else _NUMBERS.get(word, 1)


def _weekday_before(day: date, weekday: int, after: bool = False) -> date:
    if after:
        return day + timedelta(days=(weekday - day.weekday() - 1) % 7 + 1)
    return day - timedelta(days=(day.weekday() - weekday - 1) % 7 + 1)


def _weekday_index(name: str) -> int:
    return next(i for i, full in enumerate(WEEKDAYS) if full.startswith(name.lower()[:3]))


# (pattern, resolver(match, session day, style) -> answer); tried in this order, the earliest match in the text wins
Resolver = Callable[[re.Match, date, str], str]


def _rules() -> list[tuple[str, Resolver]]:
    def day(offset: int):
        return lambda m, d, s: format_day(d + timedelta(days=offset))

    def span(unit: str, direction: int):  # last/this/next week|weekend
        words = {-1: "before", 0: "of", 1: "after"}[direction]

        def resolve(m, d, s):
            if s == "absolute":
                if unit == "weekend":
                    return format_day(_weekday_before(d, 5, after=direction > 0) if direction else d)
                return format_day(d + timedelta(days=7 * direction))
            return f"the {unit} {words} {format_day(d)}"

        return resolve

    def ago(m, d, s):
        n, unit = _number(m.group(1)), m.group(2).lower().rstrip("s")
        if unit == "day":
            return format_day(d - timedelta(days=n))
        if unit == "month":
            return format_month(*_shift_month(d, -n))
        if unit == "year":
            return str(d.year - n)
        if s == "absolute":
            return format_day(d - timedelta(days=7 * n))
        return f"{m.group(1).lower()} {m.group(2).lower()} before {format_day(d)}"

    def later(m, d, s):  # "two weekends later" -> the weekend after; "three days later" -> that day
        n, unit = _number(m.group(1)), m.group(2).lower().rstrip("s")
        if unit == "day":
            return format_day(d + timedelta(days=n))
        if s == "absolute":
            return format_day(d + timedelta(days=7 * n))
        return f"the {unit} after {format_day(d)}"

    def weekday(direction: int):
        def resolve(m, d, s):
            wd = _weekday_index(m.group(1))
            if s == "absolute":
                return format_day(_weekday_before(d, wd, after=direction > 0))
            return f"the {WEEKDAYS[wd].title()} {'after' if direction > 0 else 'before'} {format_day(d)}"

        return resolve

    def month(offset: int):
        return lambda m, d, s: format_month(*_shift_month(d, offset))

    def year(offset: int):
        return lambda m, d, s: str(d.year + offset)

    def season(offset: int):
        return lambda m, d, s: f"the {m.group(1).lower()} of {d.year + offset}"

    def named_date(m, d, s):  # "on 8 May", "May 8th" (with or without a year)
        groups = [g for g in m.groups() if g]
        day_no = int(next(g for g in groups if g.isdigit() and len(g) <= 2))
        month_no = _month_number(next(g for g in groups if g[:3].isalpha()))
        year_no = next((int(g) for g in groups if g.isdigit() and len(g) == 4), d.year)
        try:
            return format_day(date(year_no, month_no, day_no))
        except ValueError:
            return format_day(d)

    def in_month(m, d, s):  # "in May" / "in May 2022": the most recent such month unless a year is given
        month_no = _month_number(m.group(1))
        year_no = int(m.group(2)) if m.group(2) else (d.year if month_no <= d.month else d.year - 1)
        return format_month(year_no, month_no)

    seasons = "|".join(_SEASONS)
    return [
        (r"\bthe day before yesterday\b", day(-2)),
        (r"\b(?:yesterday|last night)\b", day(-1)),
        (r"\b(?:tomorrow)\b", day(1)),
        (r"\b(?:today|tonight|this morning|this afternoon|this evening)\b", day(0)),
        (rf"\b{_NUM}\s+(days?|weeks?|weekends?|months?|years?)\s+ago\b", ago),
        (rf"\b{_NUM}\s+(days?|weeks?|weekends?)\s+(?:later|from now)\b", later),
        (r"\b(?:last|this past|past)\s+weekend\b", span("weekend", -1)),
        (r"\bthis\s+weekend\b", span("weekend", 0)),
        (r"\bnext\s+weekend\b", span("weekend", 1)),
        (r"\b(?:last|this past|past)\s+week\b", span("week", -1)),
        (r"\bthis\s+week\b", span("week", 0)),
        (r"\bnext\s+week\b", span("week", 1)),
        (rf"\b(?:last|this past|on)\s+{_WEEKDAY}\b", weekday(-1)),
        (rf"\bnext\s+{_WEEKDAY}\b", weekday(1)),
        (r"\blast\s+month\b", month(-1)),
        (r"\bthis\s+month\b", month(0)),
        (r"\bnext\s+month\b", month(1)),
        (rf"\blast\s+({seasons})\b", season(-1)),
        (rf"\bthis\s+({seasons})\b", season(0)),
        (r"\blast\s+year\b", year(-1)),
        (r"\bthis\s+year\b", year(0)),
        (r"\bnext\s+year\b", year(1)),
        (rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}\b,?\s*(\d{{4}})?", named_date),
        (rf"\b{_MONTH}\s+(\d{{1,2}})(?:st|nd|rd|th)?\b,?\s*(\d{{4}})?", named_date),
        (rf"\bin\s+{_MONTH}\b\s*(\d{{4}})?", in_month),
        (r"\b(?:in|since|around)\s+((?:19|20)\d\d)\b", lambda m, d, s: m.group(1)),
    ]


_RULES = [(re.compile(pattern, re.IGNORECASE), resolve) for pattern, resolve in _rules()]


def temporal_expression(text: str) -> re.Match | None:
    """The earliest temporal expression in `text` (None when it names no time)."""
    found = [m for pattern, _ in _RULES if (m := pattern.search(text))]
    return min(found, key=lambda m: m.start()) if found else None


def when_answer(text: str, timestamp: str, style: str = "locomo", undated: str = "day") -> str:
    """The date `text` (said at `timestamp`) refers to, in `style` (see the module docstring); never empty unless
    both are. `undated`: what a text naming no time gets, its session's "day" ("8 May 2023") or "month"
    ("May 2023")."""
    if style not in DATE_STYLES:
        raise ValueError(f"answerer date_format must be one of {DATE_STYLES}, got {style!r}")
    session = parse_timestamp(timestamp)
    if session is None:
        return _TIME_OF_DAY.sub("", timestamp or "").replace(",", "").strip()
    if style != "session":
        for pattern, resolve in sorted(_RULES, key=lambda rule: _start(rule[0], text)):
            m = pattern.search(text)
            if m is None:
                break
            try:
                return resolve(m, session, style)
            except (StopIteration, ValueError):
                continue
    return format_month(session.year, session.month) if undated == "month" else format_day(session)


def _start(pattern: re.Pattern, text: str) -> int:
    m = pattern.search(text)
    return m.start() if m else len(text) + 1


def without_times(text: str) -> str:
    """`text` with every temporal expression the rules know removed ("I went there last week." -> "I went there
    ."; the caller tidies the spacing)."""
    for pattern, _ in _RULES:
        text = pattern.sub("", text)
    return text


def has_temporal_expression(text: str) -> bool:
    return temporal_expression(text) is not None
