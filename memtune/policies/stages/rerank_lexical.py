"""An LLM-free scorer for the rerank stage (stages/rerank.py): question-word coverage plus a prior for the fused
order the candidates arrive in.

    score(text at position i) = coverage(text) + prior / (1 + i)

`coverage` (stages/lexical.py) is the idf-weighted share of the question's content words the text holds, idf
over the candidates scored together; `prior` keeps the retrieval order's evidence (dense + BM25 fusion, the date
focus: everything the levers before the reranker computed), so a candidate moves up only when it covers clearly
more of the question than the ones ranked above it. prior = 0: coverage alone (the fused order breaks ties).
No model and no network: it fills the rerank stage where no cross-encoder weights are available offline.
"""

from __future__ import annotations

from .answer_spans import content_stems
from .lexical import coverage


class LexicalScorer:
    """score(query, texts): coverage of the query's content words + prior / (1 + position) (module doc)."""

    def __init__(self, prior: float = 2.0, idf: bool = True):
        if prior < 0:
            raise ValueError(f"retriever.scorer.prior must be >= 0, got {prior!r}")
        self.prior = prior
        self.idf = idf

    def score(self, query: str, texts: list[str]) -> list[float]:
        covered = coverage(content_stems(query), texts, self.idf)
        return [share + self.prior / (1 + i) for i, share in enumerate(covered)]
