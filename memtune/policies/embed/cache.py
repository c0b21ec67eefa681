"""A persistent sqlite cache of vectors in front of any embedder (see base.py for what an embedder is)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from pathlib import Path

import numpy as np

from .base import Embedder, check_texts


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
        texts = check_texts(texts)
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
