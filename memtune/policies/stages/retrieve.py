"""Retrieval stage: question -> the top-k memories the answerer sees."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..metering import timed
from ..types import MemoryRecord, Scope


@dataclass
class RetrievalKnobs:
    # mem0's LOCOMO evaluation retrieves 30 (evaluation/run_experiments.py, --top_k default 30), and memtune scores
    # on LOCOMO; mem0's own defaults differ: 10 in the evaluation's MemorySearch class, 100 in Memory.search(limit)
    top_k: int = 30
    threshold: float | None = None  # drop memories less cosine-similar than this; mem0 default: none


class CosineRetriever:
    """Cosine top-k over the scope's memories, with an optional score threshold."""

    def __init__(self, **knobs):
        self.knobs = RetrievalKnobs(**knobs)
        if self.knobs.top_k < 1:
            raise ValueError(f"retriever.top_k must be >= 1, got {self.knobs.top_k}")

    def retrieve(self, query: str, vector: np.ndarray, store, scope: Scope) -> list[MemoryRecord]:
        with timed("retrieve"):
            return store.search(vector, scope, self.knobs.top_k, threshold=self.knobs.threshold)


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
            return sorted(store.get_all(scope), key=_turn_order)
