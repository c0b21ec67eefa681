"""The retrieval levers beyond cosine top-k, in the order they run (stages/retrieve.py `RetrievalKnobs` has the
knobs; each is off by default and costs nothing when off):

1. candidates: the dense_depth memories nearest the query (cosine, from the store); with `hybrid`, also the
   keyword_depth best by BM25 (LanceDB's full-text index, store/fts.py), fused by RRF or a weighted score
   (stages/fusion.py). Keyword-only hits get their cosine from their stored vectors. `threshold` drops candidates
   less cosine-similar than it.
2. time: relevance (the fused score, min-max scaled to [0, 1] over the candidates) + recency_weight * recency
   + date_boost * [said in / names the question's time] (date_filter=boost), or only the candidates in the
   question's time when any is (date_filter=filter); stages/timefocus.py defines each term.
3. rerank: the leading max(rerank_depth, top_k) candidates reordered by the scorer (stages/rerank.py); the rest
   are dropped. A scorer failure keeps the order of step 2.
4. diversity: near-duplicates collapsed (cosine >= dedup_threshold with a better candidate), then MMR
   (mmr_lambda) picks top_k over the order so far.

The memories returned carry `.score` = their cosine similarity to the query (as without levers: the Memory API's
"score" and threshold stay cosine), best first by the levers' order, at most top_k.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..types import MemoryRecord, Scope
from . import fusion, timefocus
from .rerank import RerankStats, Scorer, rerank

if TYPE_CHECKING:
    from ..store.store import MemoryStore
    from .retrieve import RetrievalKnobs


def candidates(
    knobs: RetrievalKnobs,
    query: str,
    vector: np.ndarray,
    store: MemoryStore,
    scope: Scope,
    include_invalid=False,
    prefetched=None,
):
    """(memories with cosine in .score, their fused scores), best first; superseded memories only with
    include_invalid (the retriever's include_history). `prefetched`: the keyword search of hybrid, already started
    (store/prefetch.py), or None."""
    depth = max(knobs.top_k, knobs.dense_depth)
    if not knobs.hybrid:
        dense = store.search(vector, scope, depth, include_invalid=include_invalid)
        pairs = [(m.id, float(m.score or 0.0)) for m in dense]
        by_id = {m.id: m for m in dense}
    else:  # both lists from one version of the store, the keyword search in a thread (timed as keyword_search)
        early = {} if prefetched is None else {"prefetched": prefetched}  # stores without it: as before
        dense, keyword, keyword_cosines = store.dense_and_keyword(
            vector, query, scope, depth, knobs.keyword_depth, include_invalid=include_invalid, **early
        )
        sources = [[(m.id, float(m.score or 0.0)) for m in dense], [(m.id, float(m.score or 0.0)) for m in keyword]]
        weights = [knobs.dense_weight, knobs.keyword_weight]
        pairs = (
            fusion.rrf(sources, weights, knobs.rrf_k) if knobs.fusion == "rrf" else fusion.weighted(sources, weights)
        )
        by_id = {m.id: m for m in dense}
        for m, c in zip(keyword, keyword_cosines):
            if m.id not in by_id:  # a keyword-only hit: its cosine
                m.score = float(c)
                by_id[m.id] = m
    memories = [by_id[i] for i, _ in pairs]
    scores = [s for _, s in pairs]
    if knobs.threshold is not None:
        keep = [j for j, m in enumerate(memories) if m.score is not None and m.score >= knobs.threshold]
        memories, scores = [memories[j] for j in keep], [scores[j] for j in keep]
    return memories, scores


class ReferenceDays:
    """The reference day of a scope (timefocus.reference_day), cached per store version."""

    def __init__(self):
        self._cache: dict[tuple, object] = {}

    def get(self, store: MemoryStore, scope: Scope):
        key = (id(store), store.version, scope)
        if key not in self._cache:
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[key] = timefocus.reference_day(store.said_times(scope))
        return self._cache[key]


def time_levers(knobs: RetrievalKnobs, query: str, memories: list[MemoryRecord], scores: list[float], reference):
    """Step 2: new (memories, scores) after recency and the question's time window."""
    window = timefocus.question_window(query, reference) if knobs.date_filter != "off" else None
    relevance = fusion.minmax(scores)
    if knobs.recency_weight:
        relevance = [
            r + knobs.recency_weight * timefocus.recency(timefocus.said_on(m), reference, knobs.recency_half_life_days)
            for r, m in zip(relevance, memories)
        ]
    if window is not None:
        inside = [timefocus.in_window(m, window) for m in memories]
        if knobs.date_filter == "boost":
            relevance = [r + knobs.date_boost * hit for r, hit in zip(relevance, inside)]
        elif any(inside):  # filter: only the candidates in the window, when there are any
            memories = [m for m, hit in zip(memories, inside) if hit]
            relevance = [r for r, hit in zip(relevance, inside) if hit]
    order = sorted(range(len(memories)), key=lambda j: -relevance[j])  # stable
    return [memories[j] for j in order], [relevance[j] for j in order]


def rerank_levers(knobs: RetrievalKnobs, query, memories, scores, scorer: Scorer, stats: RerankStats):
    """Step 3: the head of the list reordered by the scorer (the fused order when it fails)."""
    head = memories[: max(knobs.rerank_depth, knobs.top_k)]
    ranked = rerank(query, [m.text for m in head], scorer, stats)
    if ranked is None:
        return head, scores[: len(head)]
    order = sorted(range(len(head)), key=lambda j: -ranked[j])  # stable: ties keep the fused order
    return [head[j] for j in order], [ranked[j] for j in order]


def diversity_levers(knobs: RetrievalKnobs, memories, scores, store: MemoryStore):
    """Step 4: near-duplicates collapsed, then MMR."""
    if not memories:
        return memories
    vectors = store.vectors_of([m.id for m in memories])
    if knobs.dedup_threshold is not None:
        keep = fusion.collapse(vectors, knobs.dedup_threshold)
        memories, scores, vectors = [memories[j] for j in keep], [scores[j] for j in keep], vectors[keep]
    if knobs.mmr_lambda is not None:
        picked = fusion.mmr(scores, vectors, knobs.mmr_lambda, knobs.top_k)
        memories = [memories[j] for j in picked]
    return memories
