"""A reranker scorer behind an OpenAI-compatible `/rerank` endpoint (the Cohere / Jina / vLLM / TEI shape):

    POST {base_url}/rerank  {"model": ..., "query": ..., "documents": [...], "top_n": len(documents)}
    -> {"results": [{"index": i, "relevance_score": s}, ...]}

Every document must come back exactly once; anything else is an error, which the reranker stage (rerank.py)
counts and answers with the fused order. The key is read from the environment variable `api_key_env` names
(a bundle never stores it); none set: no Authorization header (a local server). Stdlib HTTP only.
"""

from __future__ import annotations

import json
import os
import urllib.request

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"  # a local rerank server (vLLM / TEI) on its usual port
DEFAULT_MODEL = "BAAI/bge-reranker-v2-m3"  # a common open cross-encoder such servers host


class HttpRerankScorer:
    """base_url / model: None reads $MEMTUNE_RERANK_BASE_URL / $MEMTUNE_RERANK_MODEL at build time (so a bundle
    names no endpoint of its own), else the defaults above."""

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key_env: str = "MEMTUNE_RERANK_API_KEY",
        timeout: float = 10.0,
    ):
        base_url = base_url or os.environ.get("MEMTUNE_RERANK_BASE_URL") or DEFAULT_BASE_URL
        model = model or os.environ.get("MEMTUNE_RERANK_MODEL") or DEFAULT_MODEL
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"rerank base_url must be an http(s) URL, got {base_url!r}")
        if not model:
            raise ValueError("rerank model must be named (the endpoint's model id)")
        self.url = base_url.rstrip("/") + "/rerank"
        self.model, self.api_key_env, self.timeout = model, api_key_env, float(timeout)

    def score(self, query: str, texts: list[str]) -> list[float]:
        if not texts:
            return []
        body = json.dumps({"model": self.model, "query": query, "documents": texts, "top_n": len(texts)}).encode()
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env, "")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (http(s) checked above)
            payload = json.loads(response.read())
        return parse_results(payload, len(texts))


def parse_results(payload: object, n: int) -> list[float]:
    """Scores in document order from a rerank response; ValueError unless each of the n documents is scored once."""
    results = payload.get("results") if isinstance(payload, dict) else None
    if not isinstance(results, list):
        raise ValueError(f"rerank response has no 'results' list: {str(payload)[:200]}")
    scores: list[float | None] = [None] * n
    for item in results:
        index = item.get("index") if isinstance(item, dict) else None
        score = item.get("relevance_score") if isinstance(item, dict) else None
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
            raise ValueError(f"rerank result with a bad index: {str(item)[:200]}")
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise ValueError(f"rerank result without a numeric relevance_score: {str(item)[:200]}")
        if scores[index] is not None:
            raise ValueError(f"rerank response scores document {index} twice")
        scores[index] = float(score)
    missing = [i for i, s in enumerate(scores) if s is None]
    if missing:
        raise ValueError(f"rerank response did not score documents {missing[:10]}")
    return [s for s in scores if s is not None]
