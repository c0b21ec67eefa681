"""Retrieval stage: question -> the top-k memories the answerer sees."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..metering import timed
from ..types import MemoryRecord, Scope
from .history_cue import INCLUDE_HISTORY, include_invalid
from .slot_rank import slot_first


@dataclass
class RetrievalKnobs:
    top_k: int = 10  # mem0 search default (v1 code: limit=10); mem0's LOCOMO evaluation uses 30
    threshold: float | None = None  # drop memories less cosine-similar than this; mem0 default: none
    # superseded (soft-invalidated) memories too: never | always | when_asked (history_cue.py); Mem0: never
    include_history: str = "never"
    slot_rank: bool = False  # memtune's own: the asked person's asked slot first (slot_rank.py); Mem0: cosine only

    def __post_init__(self):
        if self.include_history not in INCLUDE_HISTORY:
            raise ValueError(
                f"retriever.include_history must be one of {INCLUDE_HISTORY}, got {self.include_history!r}"
            )


class CosineRetriever:
    """Cosine top-k over the scope's memories, with an optional score threshold."""

    def __init__(self, **knobs):
        self.knobs = RetrievalKnobs(**knobs)
        if self.knobs.top_k < 1:
            raise ValueError(f"retriever.top_k must be >= 1, got {self.knobs.top_k}")

    def retrieve(self, query: str, vector: np.ndarray, store, scope: Scope) -> list[MemoryRecord]:
        with timed("retrieve"):
            history = include_invalid(self.knobs.include_history, query)
            hits = store.search(
                vector, scope, self.knobs.top_k, threshold=self.knobs.threshold, include_invalid=history
            )
            return slot_first(query, hits) if self.knobs.slot_rank else hits


def _turn_order(memory: MemoryRecord) -> tuple:
    """Sort key: write time, then the first cited turn ("D3:7" -> (3, 7))."""
    first = memory.provenance[0] if memory.provenance else ""
    numbers = tuple(int(n) for n in re.findall(r"\d+", first))
    return memory.created_at, numbers


class AllRetriever:
    """Full-context baseline: every memory of the scope, in conversation order (top_k is ignored)."""

    def __init__(self, **knobs):
        self.knobs = RetrievalKnobs(**knobs)

    def retrieve(self, query: str, vector: np.ndarray, store, scope: Scope) -> list[MemoryRecord]:
        with timed("retrieve"):
            history = include_invalid(self.knobs.include_history, query)
            return sorted(store.get_all(scope, include_invalid=history), key=_turn_order)
