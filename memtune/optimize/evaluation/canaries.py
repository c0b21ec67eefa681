"""Canary answers: wrong answers made from gold answers, to measure how lenient a judge is (pure functions; tests
with hand-checked values in tests/test_judge_checks.py).

* vague: an answer too vague to be right, of the gold answer's type: a date -> "sometime last year" (or "a while
  ago" when the gold answer is itself a year or says "last year"), a number -> "several", a name -> "someone or
  something they mentioned", anything else -> "a few different things". A judge that accepts it rewards topic,
  not content (mem0's lenient judge: "if it touches on the same topic ... CORRECT").
* wrong_entity: the gold answer with its most specific date, number or name swapped for another of the same type
  (a full date for a full date, a year for a year, a name for a name) from the same conversation (other questions'
  gold answers, the speakers, the session dates), chosen by a hash of the question id among those that bring a
  token the gold answer lacks. None when the gold answer holds no such entity or the conversation no other one.

Entity types come from the text alone (no NER model): dates (day month year, month year, day month, year, a
relative period like "last week", a weekday), numbers (digits or a number word) and names (a capitalised word run
the conversation also writes capitalised after a lowercase word, `proper_nouns`: "Sweden", not "Single").
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence

from .metrics import normalize_tokens

KINDS = ("vague", "wrong_entity")
# entity types, in the order a wrong-entity canary prefers to swap them (the most specific first)
DATE_TYPES = ("dmy", "my", "dm", "year", "weekday", "relative")
TYPES = ("dmy", "my", "dm", "year", "name", "number", "weekday", "relative")
_MONTH = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December"
    r"|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\.?"
)
_WEEKDAY = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_ORD = r"(?:st|nd|rd|th)?"
_DATES = (  # (type, pattern), tried in this order; a later match may not overlap an earlier one
    ("dmy", rf"\d{{1,2}}{_ORD}\s+{_MONTH},?\s+\d{{4}}|{_MONTH}\s+\d{{1,2}}{_ORD},?\s+\d{{4}}"),
    ("my", rf"{_MONTH},?\s+\d{{4}}"),
    ("dm", rf"\d{{1,2}}{_ORD}\s+{_MONTH}|{_MONTH}\s+\d{{1,2}}{_ORD}"),
    ("year", r"(?:19|20)\d{2}"),
    ("relative", rf"(?:last|next|this)\s+(?:week|weekend|month|year|{_WEEKDAY})"),
    ("weekday", _WEEKDAY),
)
_DATE_RES = [(kind, re.compile(rf"\b(?:{pattern})\b", re.IGNORECASE)) for kind, pattern in _DATES]
_NUMBER_WORDS = "one two three four five six seven eight nine ten eleven twelve twenty".split()
_NUMBER = re.compile(r"\b(?:\d+(?:\.\d+)?|" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)
_CAPS = r"[A-Z][a-zA-Z'\-]+(?:\s+[A-Z][a-zA-Z'\-]+)*"
_NAME = re.compile(rf"\b{_CAPS}\b")
_MID_SENTENCE_NAME = re.compile(rf"(?<=[a-z0-9,;:] ){_CAPS}\b")  # after a lowercase word: not a sentence start
_NOT_NAME = re.compile(rf"^(?:{_MONTH}|{_WEEKDAY}|I|I'm|I've|I'll|I'd|OK)$")
_STAMP_DATE = re.compile(r"(\d{1,2})\s+([A-Za-z]+),?\s+(\d{4})")

VAGUE = {
    "date": "sometime last year",
    "number": "several",
    "name": "someone or something they mentioned",
    "other": "a few different things",
}


def proper_nouns(texts: Iterable[str]) -> set[str]:
    """Capitalised word runs that follow a lowercase word somewhere in `texts` (so not a sentence's first word):
    the conversation's names ("Sweden", "Charlotte's Web"), not its capitalised answers ("Single")."""
    out: set[str] = set()
    for text in texts:
        for m in _MID_SENTENCE_NAME.finditer(str(text)):
            if not _NOT_NAME.match(m.group(0)):
                out.add(m.group(0))
    return out


def entities(text: str, names: set[str] | None = None) -> list[tuple[int, int, str, str]]:
    """Typed entity spans of `text` in order, not overlapping: (start, end, surface, type). A capitalised run is a
    name when it is in `names` (`proper_nouns` of the conversation); without `names`, when it is not the text's
    first word."""
    found: list[tuple[int, int, str, str]] = []

    def free(a: int, b: int) -> bool:
        return all(b <= s or a >= e for s, e, _, _ in found)

    for kind, pattern in _DATE_RES:
        for m in pattern.finditer(text):
            if free(m.start(), m.end()):
                found.append((m.start(), m.end(), m.group(0), kind))
    for m in _NUMBER.finditer(text):
        if free(m.start(), m.end()):
            found.append((m.start(), m.end(), m.group(0), "number"))
    for m in _NAME.finditer(text):
        surface = m.group(0)
        if not free(m.start(), m.end()) or _NOT_NAME.match(surface):
            continue
        if (names is not None and surface not in names) or (names is None and m.start() == 0):
            continue
        found.append((m.start(), m.end(), surface, "name"))
    return sorted(found)


def answer_type(gold: str, names: set[str] | None = None) -> str:
    """date | number | name | other: the type of the gold answer's most specific entity."""
    spans = entities(str(gold), names)
    if not spans:
        return "other"
    kind = min(spans, key=lambda s: TYPES.index(s[3]))[3]
    return "date" if kind in DATE_TYPES else kind


def vague_canary(gold: str, names: set[str] | None = None) -> str:
    kind = answer_type(gold, names)
    if kind == "date" and (re.fullmatch(r"\s*(?:19|20)\d{2}\s*", str(gold)) or "last year" in str(gold).lower()):
        return "a while ago"
    return VAGUE[kind]


def session_dates(timestamps: Iterable[str]) -> list[str]:
    """LOCOMO session stamps ("1:56 pm on 8 May, 2023") as dates ("8 May 2023")."""
    out = []
    for stamp in timestamps:
        m = _STAMP_DATE.search(str(stamp))
        if m:
            out.append(f"{int(m.group(1))} {m.group(2)} {m.group(3)}")
    return out


def entity_pool(
    answers: Iterable[str], names: set[str], speakers: Iterable[str] = (), dates: Iterable[str] = ()
) -> dict[str, list[str]]:
    """Entities by type from a conversation's gold answers, its speakers (names) and session dates (day month
    year), deduplicated in first-seen order."""
    pool: dict[str, list[str]] = {t: [] for t in TYPES}
    for answer in answers:
        for _, _, surface, kind in entities(str(answer), names):
            pool[kind].append(surface)
    pool["name"] += [str(s) for s in speakers if s]
    pool["dmy"] += list(dates)
    return {kind: list(dict.fromkeys(values)) for kind, values in pool.items()}


def wrong_entity_canary(
    gold: str, pool: Mapping[str, Sequence[str]], key: str, names: set[str] | None = None
) -> str | None:
    """The gold answer with its most specific entity (TYPES order; the first of that type) swapped for another of
    the same type from `pool` that brings a token the gold answer does not have, picked by a hash of `key` (the
    qid). So "7 May 2023" may become "25 May 2023", never "7 May 2023" again, and "Sweden and Norway" never
    "Norway and Norway"."""
    gold = str(gold)
    spans = entities(gold, names)
    if not spans:
        return None
    start, end, _, kind = min(spans, key=lambda s: (TYPES.index(s[3]), s[0]))
    gold_tokens = set(normalize_tokens(gold))
    candidates = [c for c in pool.get(kind, []) if not set(normalize_tokens(c)) <= gold_tokens]
    if not candidates:
        return None
    pick = int(hashlib.sha256(key.encode()).hexdigest(), 16) % len(candidates)
    return gold[:start] + candidates[pick] + gold[end:]
