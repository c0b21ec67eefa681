"""Retrieval stage: question -> the top-k memories the answerer sees."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..metering import timed
from ..types import MemoryRecord, Scope
from . import levers
from .history_cue import INCLUDE_HISTORY, include_invalid
from .levers import ReferenceDays
from .rerank import RerankStats, Scorer
from .slot_rank import slot_first


@dataclass
class RetrievalKnobs:
    """Cosine top-k (Mem0) and the levers beyond it (stages/levers.py says exactly what each does, in order). Every
    lever is off by default (Mem0 has none); the offline search space sweeps them."""

    # mem0's LOCOMO evaluation retrieves 30 (evaluation/run_experiments.py, --top_k default 30), and memtune scores
    # on LOCOMO; mem0's own defaults differ: 10 in the evaluation's MemorySearch class, 100 in Memory.search(limit)
    top_k: int = 30
    threshold: float | None = None  # drop memories less cosine-similar than this; mem0 default: none
    # candidates: how many nearest memories the levers start from (at least top_k); unused with every lever off
    dense_depth: int = 50
    # hybrid: fuse the dense candidates with BM25 hits from LanceDB's full-text index (store/fts.py)
    hybrid: bool = False
    fusion: str = "rrf"  # rrf (reciprocal rank) | weighted (sum of min-max-scaled scores); stages/fusion.py
    rrf_k: int = 60  # RRF's constant k (Cormack et al. 2009)
    dense_weight: float = 1.0  # weight of the dense list in the fusion
    keyword_weight: float = 1.0  # weight of the keyword list in the fusion
    keyword_depth: int = 50  # BM25 candidates
    # time (stages/timefocus.py): relevance in [0, 1] + recency_weight * 0.5 ** (age_days / recency_half_life_days)
    recency_weight: float = 0.0
    recency_half_life_days: float = 30.0
    date_filter: str = "off"  # off | boost (+date_boost when in the question's time) | filter (only those, if any)
    date_boost: float = 0.5
    # rerank: reorder the leading rerank_depth candidates with `scorer` (stages/rerank.py); the final k is top_k
    rerank: bool = False
    rerank_depth: int = 30
    # diversity (stages/fusion.py): drop candidates this cosine-similar to a better one; MMR trade-off (1 = relevance)
    dedup_threshold: float | None = None
    mmr_lambda: float | None = None
    # superseded (soft-invalidated) memories too: never | always | when_asked (history_cue.py); Mem0: never
    include_history: str = "never"
    slot_rank: bool = False  # memtune's own: the asked person's asked slot first (slot_rank.py); Mem0: cosine only

    def __post_init__(self):
        if self.date_filter is False:  # YAML 1.1 reads a bare `off` as false
            self.date_filter = "off"
        if self.include_history not in INCLUDE_HISTORY:
            raise ValueError(
                f"retriever.include_history must be one of {INCLUDE_HISTORY}, got {self.include_history!r}"
            )

    def levers_on(self) -> bool:
        return (
            self.hybrid
            or self.rerank
            or bool(self.recency_weight)
            or self.date_filter != "off"
            or self.dedup_threshold is not None
            or self.mmr_lambda is not None
        )

    def check(self) -> None:
        """ValueError naming the knob for a value out of range."""
        bad = []
        for name in ("top_k", "dense_depth", "keyword_depth", "rerank_depth", "rrf_k"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                bad.append(f"{name} must be an int >= 1, got {getattr(self, name)!r}")
        if self.fusion not in ("rrf", "weighted"):
            bad.append(f"fusion must be 'rrf' or 'weighted', got {self.fusion!r}")
        if self.date_filter not in ("off", "boost", "filter"):
            bad.append(f"date_filter must be 'off', 'boost' or 'filter', got {self.date_filter!r}")
        if min(self.dense_weight, self.keyword_weight, self.recency_weight, self.date_boost) < 0:
            bad.append("dense_weight, keyword_weight, recency_weight and date_boost must be >= 0")
        if self.recency_half_life_days <= 0:
            bad.append(f"recency_half_life_days must be > 0, got {self.recency_half_life_days!r}")
        if self.mmr_lambda is not None and not 0.0 <= self.mmr_lambda <= 1.0:
            bad.append(f"mmr_lambda must be in [0, 1] or null, got {self.mmr_lambda!r}")
        if self.dedup_threshold is not None and not -1.0 <= self.dedup_threshold <= 1.0:
            bad.append(f"dedup_threshold must be a cosine in [-1, 1] or null, got {self.dedup_threshold!r}")
        if bad:
            raise ValueError("retriever: " + "; ".join(bad))


class CosineRetriever:
    """Cosine top-k over the scope's memories, with an optional score threshold, and the retrieval levers
    (hybrid keyword search, time, reranking, diversity: stages/levers.py) when their knobs turn them on.

    scorer  the reranker's scorer (stages/rerank.py Scorer), needed when knobs.rerank is on."""

    def __init__(self, scorer: Scorer | None = None, **knobs):
        self.knobs = RetrievalKnobs(**knobs)
        self.knobs.check()
        if self.knobs.rerank and scorer is None:
            raise ValueError(
                "retriever.rerank is on but no scorer is configured: use policy/retriever=rerank_http (or another "
                "variant with a `scorer`), or set policy.retriever.rerank=false"
            )
        self.scorer = scorer
        self.rerank_stats = RerankStats()
        self._reference = ReferenceDays()

    def start_keyword(self, query: str, store, scope: Scope):
        """With hybrid on: start the store's keyword search for `query` now (before the query is embedded), to pass
        to retrieve_prefetched(); None when there is nothing to start (hybrid off, a store without it)."""
        start = getattr(store, "start_keyword_search", None)
        if not self.knobs.hybrid or start is None:
            return None
        history = include_invalid(self.knobs.include_history, query)
        return start(query, scope, self.knobs.keyword_depth, include_invalid=history)

    def retrieve(self, query: str, vector: np.ndarray, store, scope: Scope) -> list[MemoryRecord]:
        """The `retrieve` phase times the whole call (a reranker's own time is also reported as `rerank`)."""
        return self.retrieve_prefetched(query, vector, store, scope, None)

    def retrieve_prefetched(
        self, query: str, vector: np.ndarray, store, scope: Scope, prefetched
    ) -> list[MemoryRecord]:
        """retrieve(), with start_keyword()'s running keyword search for this query (or None)."""
        knobs = self.knobs
        with timed("retrieve"):
            history = include_invalid(knobs.include_history, query)
            if not knobs.levers_on():
                hits = store.search(vector, scope, knobs.top_k, threshold=knobs.threshold, include_invalid=history)
                return slot_first(query, hits) if knobs.slot_rank else hits
            memories, scores = levers.candidates(knobs, query, vector, store, scope, history, prefetched)
            if knobs.recency_weight or knobs.date_filter != "off":
                reference = self._reference.get(store, scope)
                memories, scores = levers.time_levers(knobs, query, memories, scores, reference)
            if knobs.rerank and self.scorer is not None and memories:
                memories, scores = levers.rerank_levers(knobs, query, memories, scores, self.scorer, self.rerank_stats)
            if knobs.dedup_threshold is not None or knobs.mmr_lambda is not None:
                memories = levers.diversity_levers(knobs, memories, scores, store)
            hits = memories[: knobs.top_k]
            return slot_first(query, hits) if knobs.slot_rank else hits


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
