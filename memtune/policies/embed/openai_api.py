"""Embeddings from any OpenAI-compatible ``/embeddings`` endpoint (see base.py for what an embedder is)."""

from __future__ import annotations

import os
import threading

import numpy as np

from .base import check_texts, normalize_rows


class OpenAIEmbedder:
    """Any OpenAI-compatible ``/embeddings`` endpoint, through the ``openai`` client.

    ``base_url`` defaults to the environment variable ``OPENAI_BASE_URL`` (then to api.openai.com). The API
    key is read from the environment variable named by ``api_key_env``; a custom ``base_url`` (a local
    server) may run without one. Rows are re-normalised; the endpoint must return ``dim``-d vectors.
    Empty strings, which the OpenAI API rejects, are sent as a single space.
    """

    def __init__(
        self,
        model: str = "text-embedding-3-small",
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        dim: int = 1536,
        batch_size: int = 256,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.model, self.dim, self.batch_size = model, int(dim), int(batch_size)
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.api_key_env = api_key_env
        self.id = f"openai:{model}"
        self._client = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OpenAIEmbedder(model={self.model!r}, base_url={self.base_url!r}, dim={self.dim})"

    def __getstate__(self):
        state = self.__dict__.copy()
        state.update(_client=None, _lock=None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _get_client(self):
        with self._lock:
            if self._client is None:
                import openai

                key = os.environ.get(self.api_key_env)
                if not key:
                    if self.base_url is None:
                        raise RuntimeError(f"OpenAIEmbedder: environment variable {self.api_key_env} is not set")
                    key = "unused"  # local OpenAI-compatible servers usually ignore the key
                self._client = openai.OpenAI(base_url=self.base_url, api_key=key)
            return self._client

    def embed(self, texts: list[str]) -> np.ndarray:
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        client = self._get_client()
        rows: list[np.ndarray] = []
        for start in range(0, len(texts), self.batch_size):
            batch = [t if t else " " for t in texts[start : start + self.batch_size]]
            resp = client.embeddings.create(model=self.model, input=batch, encoding_format="float")
            data = sorted(resp.data, key=lambda d: d.index)
            if len(data) != len(batch):
                raise RuntimeError(f"{self.id}: sent {len(batch)} texts, got {len(data)} embeddings")
            vecs = np.asarray([d.embedding for d in data], dtype=np.float32)
            if vecs.ndim != 2 or vecs.shape[1] != self.dim:
                raise ValueError(
                    f"{self.id}: endpoint returned vectors of shape {vecs.shape}, "
                    f"expected dim={self.dim} (set dim to match the model)"
                )
            rows.append(vecs)
        return normalize_rows(np.concatenate(rows, axis=0))
