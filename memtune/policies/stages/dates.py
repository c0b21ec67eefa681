"""When things were said, and what relative dates in them mean: pure functions, no LM.

`parse_when(s)` reads a stored timestamp (LOCOMO's "1:56 pm on 8 May, 2023", ISO "2023-05-08T13:56:00Z",
"8 May 2023", "May 8, 2023", "2023-05-08") as a date, or None.

`resolve_relative(text, said_on)` keeps the speaker's words and writes after each relative date what it means from
the day it was said, in LOCOMO's answer style: "I went yesterday" said on 8 May 2023 -> "I went yesterday
(7 May 2023)". Conventions (a week runs Monday to Sunday):

    yesterday / last night, today / tonight / this morning|afternoon|evening, tomorrow,
    the day before yesterday, the day after tomorrow                 -> the day ("7 May 2023")
    N days ago, in N days                                            -> the day
    last|past|this|next <weekday>: last = the latest such day before the day said, next = the first after it,
        this = the one in the same week                              -> the day
    last / this / next week, last / this / next weekend              -> "the week before 8 May 2023",
        "the week of 8 May 2023", "the weekend after 8 May 2023" (anchored, as LOCOMO's gold answers are: it pins
        the day without guessing which week "next" means)
    N weeks ago, in N weeks                                          -> "the week of 24 April 2023" (day - 7N)
    last / this / next month, N months ago, in N months              -> "April 2023"
    last / this / next year, N years ago, in N years                 -> "2022"
    a few days / weeks / months ago                                  -> "a few days before 8 May 2023"

N is a digit or a number word up to twelve, "a", "an", "one" or "a couple of" (2). Vague words ("recently", "the
other day") are left alone; an expression already followed by "(" is not annotated again.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from functools import lru_cache

MONTHS = "January February March April May June July August September October November December".split()
_MONTH_NUM = {m.lower(): i + 1 for i, m in enumerate(MONTHS)} | {m[:3].lower(): i + 1 for i, m in enumerate(MONTHS)}
_MONTH_NUM["sept"] = 9
_MONTH_RE = (
    r"(january|february|march|april|may|june|july|august|september|october|november|december|"
    r"jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)\.?"
)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_NUMBERS = {
    "a": 1, "an": 1, "one": 1, "a couple of": 2, "couple of": 2, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
}  # fmt: skip
_NUM_RE = r"(\d{1,3}|a couple of|couple of|an|a|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)"

_DAY_MONTH_YEAR = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+{_MONTH_RE},?\s+(\d{{4}})\b", re.IGNORECASE)
_MONTH_DAY_YEAR = re.compile(rf"\b{_MONTH_RE}\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b", re.IGNORECASE)
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})")


def day_text(d: date) -> str:
    """LOCOMO's date style: "7 May 2023"."""
    return f"{d.day} {MONTHS[d.month - 1]} {d.year}"


@lru_cache(maxsize=8192)  # timestamps repeat (one per session) and retrieval reads them per candidate
def parse_when(text: str) -> date | None:
    """The date in a stored timestamp, or None when it has none we can read."""
    if not text:
        return None
    s = text.strip()
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).date()
    except ValueError:
        pass
    for pattern, order in ((_DAY_MONTH_YEAR, "dmy"), (_MONTH_DAY_YEAR, "mdy"), (_ISO_DATE, "ymd")):
        m = pattern.search(s)
        if m:
            d = _date_from(m, order)
            if d is not None:
                return d
    return None


def _date_from(m: re.Match, order: str) -> date | None:
    try:
        if order == "dmy":
            return date(int(m.group(3)), _MONTH_NUM[m.group(2).lower().rstrip(".")], int(m.group(1)))
        if order == "mdy":
            return date(int(m.group(3)), _MONTH_NUM[m.group(1).lower().rstrip(".")], int(m.group(2)))
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except (ValueError, KeyError):  # "31 February 2023"
        return None


def shift_months(d: date, months: int) -> tuple[int, int]:
    """(year, month) `months` after d's month (negative: before)."""
    index = d.year * 12 + (d.month - 1) + months
    return index // 12, index % 12 + 1


def month_text(year: int, month: int) -> str:
    return f"{MONTHS[month - 1]} {year}"


def _number(word: str) -> int:
    w = word.lower()
    return int(w) if w.isdigit() else _NUMBERS[w]


def _weekday(d: date, name: str, which: str) -> date:
    target = WEEKDAYS.index(name.lower())
    if which in ("last", "past"):
        return d - timedelta(days=(d.weekday() - target - 1) % 7 + 1)
    if which == "next":
        return d + timedelta(days=(target - d.weekday() - 1) % 7 + 1)
    return d + timedelta(days=target - d.weekday())  # this: the same Monday-to-Sunday week


def _span(unit: str, n: int, d: date) -> str:
    """What "n units from d" means (n < 0: ago)."""
    if unit == "day":
        return day_text(d + timedelta(days=n))
    if unit == "week":
        return f"the week of {day_text(d + timedelta(days=7 * n))}"
    if unit == "month":
        return month_text(*shift_months(d, n))
    return str(d.year + n)


_SIMPLE_DAYS = {
    "the day before yesterday": -2,
    "the day after tomorrow": 2,
    "yesterday": -1,
    "last night": -1,
    "today": 0,
    "tonight": 0,
    "this morning": 0,
    "this afternoon": 0,
    "this evening": 0,
    "tomorrow": 1,
}
_WEEKDAY_RE = "|".join(WEEKDAYS)
_EXPRESSION = re.compile(
    r"\b(?:"
    + r"(?P<simple>"
    + "|".join(re.escape(k) for k in sorted(_SIMPLE_DAYS, key=len, reverse=True))
    + ")"
    + rf"|(?P<which>last|past|this|next)\s+(?P<weekday>{_WEEKDAY_RE})"
    + r"|(?P<which2>last|this|next)\s+(?P<period>weekend|week|month|year)"
    + r"|(?P<few>a few|few|several)\s+(?P<few_unit>day|week|month|year)s?\s+ago"
    + rf"|(?P<n>{_NUM_RE})\s+(?P<unit>day|week|month|year)s?\s+ago"
    + rf"|in\s+(?P<n2>{_NUM_RE})\s+(?P<unit2>day|week|month|year)s?"
    + r")\b(?!\s*\()(?!['’]s\b)",
    re.IGNORECASE,
)


def _meaning(m: re.Match, d: date) -> str:
    g = m.groupdict()
    if g["simple"]:
        return day_text(d + timedelta(days=_SIMPLE_DAYS[g["simple"].lower()]))
    if g["weekday"]:
        return day_text(_weekday(d, g["weekday"], g["which"].lower()))
    if g["period"]:
        which, period = g["which2"].lower(), g["period"].lower()
        if period in ("week", "weekend"):
            word = {"last": "before", "this": "of", "next": "after"}[which]
            return f"the {period} {word} {day_text(d)}"
        step = {"last": -1, "this": 0, "next": 1}[which]
        return _span(period, step, d)
    if g["few"]:
        return f"a few {g['few_unit'].lower()}s before {day_text(d)}"
    if g["n"]:
        return _span(g["unit"].lower(), -_number(g["n"]), d)
    return _span(g["unit2"].lower(), _number(g["n2"]), d)


def resolve_relative(text: str, said_on: date | None) -> str:
    """`text` with each relative date followed by its meaning from `said_on` in parentheses (see the module
    docstring); unchanged when said_on is None."""
    if said_on is None:
        return text
    return _EXPRESSION.sub(lambda m: f"{m.group(0)} ({_meaning(m, said_on)})", text)
