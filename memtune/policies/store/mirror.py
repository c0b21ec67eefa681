"""The in-process read mirror of the memory store: the memories table at one LanceDB version, as numpy arrays.

It serves id look-ups, scope filters and exact flat cosine top-k; the store loads it from LanceDB, updates it with
exactly what each successful commit wrote, and drops it when the table moves in a way the store did not make or
grows past `cache_max_rows` (see memtune.policies.store.store).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..types import Scope
from .lance import _ROW_COLUMNS, present_columns
from .sql import SCOPE_FIELDS

BLAS_MIN_ROWS = 32_768  # score at least this many rows with BLAS (np.dot), fewer with einsum (see _Mirror.top_k)


class _Mirror:
    """The memories table at one LanceDB version, as numpy arrays: id look-ups, scope masks, exact cosine top-k."""

    def __init__(self, dim: int, version: int):
        self.dim, self.version = dim, version
        self.n = 0  # slots used
        self.dead = 0
        self.vectors = np.zeros((64, dim), np.float32)
        self.alive = np.zeros(64, bool)
        self.valid = np.zeros(64, bool)  # alive and never invalidated (soft invalidation: invalid_at empty)
        self.codes = {f: np.zeros(64, np.int32) for f in SCOPE_FIELDS}
        self.vocab: dict[str, dict[str, int]] = {f: {} for f in SCOPE_FIELDS}
        self.rows: list[dict | None] = []
        self.slot: dict[str, int] = {}

    @classmethod
    def load(cls, table, dim: int) -> _Mirror:
        version = table.version
        data = table.to_arrow()
        m = cls(dim, version)
        if data.num_rows:
            vecs = np.asarray(
                data["vector"].combine_chunks().flatten().to_numpy(zero_copy_only=False), np.float32
            ).reshape(-1, dim)
            rows = data.select(list(present_columns(table))).to_pylist()
            m.put_many(rows, _normalise(vecs))
        return m

    def __len__(self) -> int:
        return len(self.slot)

    def _grow(self, need: int) -> None:
        cap = len(self.alive)
        if need <= cap:
            return
        new = max(need, 2 * cap)
        self.vectors = _grow_rows(self.vectors, new)
        self.alive = np.concatenate([self.alive, np.zeros(new - cap, bool)])
        self.valid = np.concatenate([self.valid, np.zeros(new - cap, bool)])
        for f in SCOPE_FIELDS:
            self.codes[f] = np.concatenate([self.codes[f], np.zeros(new - cap, np.int32)])

    def put_many(self, rows: list[dict], vectors: np.ndarray | None) -> None:
        """Insert or replace rows (vectors[i] belongs to rows[i]; None keeps the stored vectors)."""
        self._grow(self.n + len(rows))
        for i, row in enumerate(rows):
            s = self.slot.get(row["id"])
            if s is None:
                s = self.n
                self.n += 1
                self.rows.append(None)
                self.slot[row["id"]] = s
            clean = {k: row.get(k) for k in _ROW_COLUMNS}  # a column an old version lacks reads as None
            clean["provenance"] = list(clean["provenance"] or [])
            self.rows[s] = clean
            self.alive[s] = True
            self.valid[s] = not clean["invalid_at"]
            for f in SCOPE_FIELDS:
                self.codes[f][s] = self.vocab[f].setdefault(row[f] or "", len(self.vocab[f]))
            if vectors is not None:
                self.vectors[s] = vectors[i]

    def remove(self, ids: Iterable[str]) -> None:
        for i in ids:
            s = self.slot.pop(i, None)
            if s is not None:
                self.alive[s] = False
                self.valid[s] = False
                self.rows[s] = None
                self.dead += 1
        if self.dead > 1024 and self.dead > self.n // 2:  # squeeze out tombstones
            keep = np.flatnonzero(self.alive[: self.n])
            rows: list[dict] = [self.rows[s] for s in keep]  # type: ignore[misc]  # alive slots hold rows
            vecs = self.vectors[keep].copy()
            fresh = _Mirror(self.dim, self.version)
            fresh.put_many(rows, vecs)
            self.__dict__.update(fresh.__dict__)

    def get(self, memory_id: str) -> dict | None:
        s = self.slot.get(memory_id)
        return None if s is None else self.rows[s]

    def mask(self, scope: Scope, include_invalid: bool = True) -> np.ndarray:
        """Slots of the scope's memories (only the valid ones unless include_invalid)."""
        m = (self.alive if include_invalid else self.valid)[: self.n].copy()
        for f in SCOPE_FIELDS:
            value = getattr(scope, f)
            if value:
                code = self.vocab[f].get(value)
                if code is None:
                    return np.zeros(self.n, bool)
                m &= self.codes[f][: self.n] == code
        return m

    def top_k(
        self, queries: np.ndarray, scope: Scope, k: int, include_invalid: bool = False
    ) -> list[list[tuple[dict, float]]]:
        mask = self.mask(scope, include_invalid)
        idx = np.flatnonzero(mask)
        if idx.size == 0 or k <= 0:
            return [[] for _ in range(len(queries))]
        # (candidates, queries). Small products use einsum, not `@`: multi-threaded OpenBLAS took ~8 ms for this
        # product on a busy 2-core machine, einsum's single-threaded loop 0.4 ms (10k rows, 1/7 of them in scope).
        # Large ones use BLAS: at 100k x 384 one query took 15.6 ms with einsum, 3.4 ms with np.dot (10.5 ms on one
        # BLAS thread), on a quiet machine.
        if idx.size * 4 < self.n:  # a small scope: gather its rows (a copy of |scope| vectors)
            sims = _product(self.vectors[idx], queries)
        else:  # a wide scope: score every slot in place (gathering would copy most of the matrix) and keep the scope
            sims = _product(self.vectors[: self.n], queries)[idx]
        out = []
        for j in range(sims.shape[1]):
            s = sims[:, j]
            if idx.size > k:
                part = np.argpartition(-s, k - 1)[:k]
                order = part[np.argsort(-s[part], kind="stable")]
            else:
                order = np.argsort(-s, kind="stable")
            out.append([(self.rows[idx[o]], float(s[o])) for o in order])
        return out

    def select(self, scope: Scope, include_invalid: bool = True) -> list[dict]:
        return [self.rows[s] for s in np.flatnonzero(self.mask(scope, include_invalid))]  # type: ignore[misc]  # alive slots hold rows


def _product(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(rows, queries) cosine scores of unit vectors."""
    if len(vectors) >= BLAS_MIN_ROWS:
        return np.dot(vectors, queries.T)
    return np.einsum("ij,kj->ik", vectors, queries)


def _grow_rows(a: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n, a.shape[1]), a.dtype)
    out[: len(a)] = a
    return out


def _normalise(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return (v / np.where(norms > 0, norms, 1.0)).astype(np.float32, copy=False)
