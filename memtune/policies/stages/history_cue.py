"""When retrieval includes history (soft-invalidated memories): the retriever knob `include_history`.

    never       only memories that still hold (the default: what Mem0 returns)
    always      every memory, the superseded ones marked (invalid_at / superseded_by) and ranked by cosine like
                the rest
    when_asked  only when the question asks about the past or a change, by a small cue rule: `asks_history`

The cue rule looks for words that point before the present or at a change ("before", "used to", "previous",
"former", "originally", "at first", "earlier", "in the past", "back then", "anymore", "no longer", "old <thing>",
"until", "change", "switch", "moved from", "stopped", "quit"), or for a past-tense question anchored at a date ("What
was Bob's job in May 2023?": what held then); not for past tense alone: LOCOMO's questions are nearly all in the
past tense ("What did Caroline research?") and ask about what was said, not about what stopped holding.
"""

from __future__ import annotations

import re

INCLUDE_HISTORY = ("never", "always", "when_asked")
_MONTHS = r"(?:January|February|March|April|May|June|July|August|September|October|November|December)\b"

HISTORY_CUE = re.compile(
    r"\b(?:before|used\s+to|did\s+\w+(?:'s)?(?:\s+\w+)?\s+use\s+to|previous|previously|former|formerly|originally|at\s+first|earlier|prior\s+to|"
    r"in\s+the\s+past|back\s+then|anymore|any\s+more|no\s+longer|until|change|changed|changes|changing|switch|"
    r"switched|moved\s+from|stopped|quit|ex-\w+)\b"
    r"|(?<!how\s)(?<!-)\bold\s+(?!age\b)\w+"  # "her old job", not "how old", "a one-year-old child"
    # a date in a past-tense question: what held then ("What was Bob's job in May 2023?")
    rf"|\b(?:did|was|were|had)\b.*\b(?:in|during|around|by)\s+(?:(?:early|late|mid)\s+)?(?:{_MONTHS}|(?:19|20)\d\d\b)",
    re.IGNORECASE,
)


def asks_history(question: str) -> bool:
    """The question asks about what held before, or about a change (see the module docstring)."""
    return bool(HISTORY_CUE.search(question))


def include_invalid(mode: str, question: str) -> bool:
    """Whether a retrieval under `include_history=mode` returns superseded memories for `question`."""
    if mode not in INCLUDE_HISTORY:
        raise ValueError(f"retriever.include_history must be one of {INCLUDE_HISTORY}, got {mode!r}")
    return mode == "always" or (mode == "when_asked" and asks_history(question))
