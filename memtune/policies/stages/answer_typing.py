"""What a question asks for, read from its words alone (pure functions, no spaCy).

`question_type` maps a question to one of QUESTION_TYPES (the evaluation's per-question frame has it as a column,
so reports can group by it); `quantity_word`, `focus_labels` and `choice_options` refine what span a question of
that type wants.
"""

from __future__ import annotations

import re

from .answer_spans import STOP

QUESTION_TYPES = ("when", "where", "who", "quantity", "yes_no", "why", "how", "which", "what", "other")
_POLAR = frozenset(
    "is are was were am do does did has have had can could would will should shall may might must".split()
)
_WHEN_NOUNS = frozenset("year month day date time week weekend season".split())
_QUANTITY = frozenset("many much long often old far".split())
_WH = ("when", "where", "who", "whom", "whose", "how", "why", "which", "what")


def question_type(question: str) -> str:
    """The kind of answer `question` asks for, one of QUESTION_TYPES:

    when ("when", "what year/month/date", "in which month"), where, who (who/whom/whose), quantity ("how
    many/much/long/often/old/far"), why, how (other "how"), which, what, yes_no (starts with an auxiliary verb:
    is/are/was/were/do/does/did/has/have/can/would/...), other (none of these). The first wh-word within the
    first six words decides ("According to Gina, what ..." is a what question); a polar opener decides only when
    no wh-word follows it early ("Did ... what?" stays yes_no)."""
    words = re.findall(r"[a-z0-9']+", question.lower())
    if not words:
        return "other"
    if words[0] in _POLAR:
        return "yes_no"
    for i, word in enumerate(words[:6]):
        if word not in _WH:
            continue
        after = words[i + 1] if i + 1 < len(words) else ""
        if word == "when":
            return "when"
        if word == "where":
            return "where"
        if word in ("who", "whom", "whose"):
            return "who"
        if word == "why":
            return "why"
        if word == "how":
            return "quantity" if after in _QUANTITY else "how"
        if after in _WHEN_NOUNS or (after == "kind" and words[i + 3 : i + 4] == ["day"]):
            return "when"
        return word  # which / what
    return "other"


_CHOICE = re.compile(r"((?:[\w'-]+\s+){0,2}[\w'-]+)\s+or\s+((?:[\w'-]+\s+){0,2}[\w'-]+)\s*\?", re.IGNORECASE)


def choice_options(question: str) -> tuple[str, str] | None:
    """The two options of an either-or question ("... a national park or a theme park?" -> ("national park",
    "theme park")), or None ("Answer yes or no." and questions with no "X or Y?" are not choices)."""
    m = _CHOICE.search(question)
    if m is None:
        return None
    left, right = (_drop_stop(m.group(1).split()[-2:]), _drop_stop(m.group(2).split()))
    if not left or not right or {left.lower(), right.lower()} & {"yes", "no", "not"}:
        return None
    return left, right


def _drop_stop(words: list[str]) -> str:
    return " ".join(w for w in words if w.lower() not in STOP)


_FOCUS = {
    "WORK_OF_ART": "book books movie movies film films song songs show shows game games title series album novel "
    "poem play screenplay",
    "GPE": "city cities country countries state states town towns place places location area areas spot",
    "PERSON": "person people artist artists musician musicians band bands singer friend friends name names",
    "EVENT": "holiday holidays event events festival",
}
_FOCUS_LABELS = {
    "WORK_OF_ART": ("WORK_OF_ART", "PRODUCT"),
    "GPE": ("GPE", "LOC", "FAC"),
    "PERSON": ("PERSON", "ORG"),
    "EVENT": ("EVENT", "DATE"),
}


def focus_labels(question: str) -> tuple[str, ...]:
    """Entity labels a what/which question's focus noun asks for: "What book ..." -> works of art, "Which cities
    ..." -> places, "What are the names ..." -> people; () when the focus names no entity kind."""
    m = re.search(r"\b(?:what|which)\s+(?:(?:kind|type|sort)s?\s+of\s+)?(?:\w+\s+)?(\w+)\b", question, re.IGNORECASE)
    words = {w.lower() for w in m.groups()} if m else set()
    first = re.search(r"\b(?:what|which)\s+(?:(?:kind|type|sort)s?\s+of\s+)?(\w+)", question, re.IGNORECASE)
    if first:
        words.add(first.group(1).lower())
    for key, nouns in _FOCUS.items():
        if words & set(nouns.split()):
            return _FOCUS_LABELS[key]
    return _FOCUS_LABELS["PERSON"] if re.search(r"\bnames?\b", question, re.IGNORECASE) else ()


def quantity_word(question: str) -> str:
    """The word after "how" in a quantity question (many / much / long / often / old / far), "ago" for "how long
    ago"; "" for other questions."""
    m = re.search(r"\bhow\s+(many|much|long|often|old|far)\b(\s+ago)?", question, re.IGNORECASE)
    return "" if m is None else ("ago" if m.group(2) else m.group(1).lower())
