"""Pure ranking arithmetic of the retrieval levers: fusing ranked lists, min-max scaling, maximal marginal relevance
and near-duplicate collapse. Ids in, ids and scores out; hand-checked in tests/test_retrieval_levers.py.

* RRF (Cormack, Clarke and Buettcher 2009): score(d) = sum over sources s of w_s / (k + rank_s(d)), rank from 1,
  k = 60 (their constant); a source that did not return d adds nothing.
* weighted: score(d) = sum over sources of w_s * minmax_s(d), where minmax_s scales source s's own scores of its
  candidates to [0, 1] (all equal: 1); a source that did not return d adds 0.
* MMR (Carbonell and Goldstein 1998): pick greedily argmax lambda * rel(d) - (1 - lambda) * max_{p picked} cos(d, p),
  with rel the candidates' scores scaled to [0, 1]; lambda = 1 is the relevance order.
* collapse: walk the order; drop a candidate whose cosine with one already kept is >= the cut-off.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RRF_K = 60  # Cormack et al. 2009


def minmax(scores: Sequence[float]) -> list[float]:
    """Scores scaled to [0, 1] (lowest -> 0, highest -> 1); all equal (or one): 1.0 each."""
    if not scores:
        return []
    lo, hi = min(scores), max(scores)
    if hi <= lo:
        return [1.0] * len(scores)
    return [(s - lo) / (hi - lo) for s in scores]


def _union(sources: Sequence[Sequence[tuple[str, float]]]) -> list[str]:
    """Every id in order of first appearance, sources taken in turn (ties then keep the first source's order)."""
    seen: dict[str, None] = {}
    for ranked in sources:
        for i, _ in ranked:
            seen.setdefault(i, None)
    return list(seen)


def rrf(
    sources: Sequence[Sequence[tuple[str, float]]], weights: Sequence[float], k: int = RRF_K
) -> list[tuple[str, float]]:
    """Reciprocal-rank fusion of ranked (id, score) lists (best first); returns (id, fused score) best first."""
    if len(sources) != len(weights):
        raise ValueError(f"rrf: {len(sources)} sources but {len(weights)} weights")
    fused = dict.fromkeys(_union(sources), 0.0)
    for ranked, w in zip(sources, weights):
        for rank, (i, _) in enumerate(ranked, 1):
            fused[i] += w / (k + rank)
    return sorted(fused.items(), key=lambda kv: -kv[1])  # stable: ties keep first-appearance order


def weighted(sources: Sequence[Sequence[tuple[str, float]]], weights: Sequence[float]) -> list[tuple[str, float]]:
    """Weighted sum of each source's min-max-scaled scores; returns (id, fused score) best first."""
    if len(sources) != len(weights):
        raise ValueError(f"weighted: {len(sources)} sources but {len(weights)} weights")
    fused = dict.fromkeys(_union(sources), 0.0)
    for ranked, w in zip(sources, weights):
        for (i, _), scaled in zip(ranked, minmax([s for _, s in ranked])):
            fused[i] += w * scaled
    return sorted(fused.items(), key=lambda kv: -kv[1])


def mmr(relevance: Sequence[float], vectors: np.ndarray, lam: float, k: int) -> list[int]:
    """Indices of k candidates picked by MMR (see the module docstring); `relevance` is scaled to [0, 1] first and
    `vectors` are unit rows (cosine = dot product). Ties go to the earlier candidate."""
    n = len(relevance)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"mmr lambda must be in [0, 1], got {lam}")
    rel = np.asarray(minmax(relevance), np.float64)
    sims = vectors @ vectors.T if n else np.zeros((0, 0))
    picked: list[int] = []
    redundancy = np.full(n, -np.inf)  # max cosine to a picked candidate; nothing picked yet: no penalty
    left = np.ones(n, bool)
    for _ in range(min(k, n)):
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0)
        value = np.where(left, lam * rel - (1.0 - lam) * penalty, -np.inf)
        best = int(np.argmax(value))  # the first maximum
        picked.append(best)
        left[best] = False
        redundancy = np.maximum(redundancy, sims[best])
    return picked


def collapse(vectors: np.ndarray, cutoff: float) -> list[int]:
    """Indices kept, in order: a candidate is dropped when its cosine with an earlier kept one is >= cutoff."""
    kept: list[int] = []
    for i in range(len(vectors)):
        if not kept or float(np.max(vectors[kept] @ vectors[i])) < cutoff:
            kept.append(i)
    return kept
