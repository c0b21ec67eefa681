"""Slot-first ranking (retriever knob `slot_rank`, off by default): when a question asks about one single-valued
attribute of one person ("Where does Maya live now?": maya's home), the retrieved memories that fill that slot for
that person (slots.py) move to the front, those that still hold first, then superseded ones (retrieved only with
include_history); everything else keeps its cosine order behind them. Nothing is added or dropped: it reorders the
retriever's own top-k.

Why: cosine similarity ranks by words shared with the question, and a short memory that shares the person's name
("Maya: Oh, nice to hear.") or a neighbouring topic ("Maya works as a chef." for "How does Maya get to work?") can
outrank the fact asked for. Reading the question: its subject is the first capitalised name that is not a question
word; its attribute the first attribute whose question words (slot_words.QUESTION_WORDS) it contains. No subject or
no attribute: the order is left as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..types import MemoryRecord
from .slot_words import NAME, NOT_NAMES, QUESTION_WORDS
from .slots import slot_of

_ASKING = frozenset(
    """What Where When Which Who Whom Whose How Why Does Did Do Is Was Were Has Have Had Can In On At For If Of From
    To By With As According January February March
    April May June July August September October November December""".split()
)


def question_slot(question: str) -> tuple[str, str] | None:
    """(subject, attribute) the question asks about, or None."""
    names = [n for n in NAME.findall(question) if n not in NOT_NAMES and n not in _ASKING]
    if not names:
        return None
    for attribute, pattern in QUESTION_WORDS:
        if pattern.search(question):
            return names[0].lower(), attribute
    return None


def slot_first(question: str, memories: Sequence[MemoryRecord]) -> list[MemoryRecord]:
    """`memories` with the asked slot's memories first (valid, then superseded), each group in its given order."""
    key = question_slot(question)
    if key is None:
        return list(memories)
    mates = [m for m in memories if (s := slot_of(m.text)) is not None and s.key == key]
    if not mates:
        return list(memories)
    chosen = {m.id for m in mates}
    ordered = [m for m in mates if m.valid] + [m for m in mates if not m.valid]
    return ordered + [m for m in memories if m.id not in chosen]
