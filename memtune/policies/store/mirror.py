"""The in-process read mirror of the memory store: the memories table at one LanceDB version, as numpy arrays.

It serves id look-ups, scope filters and exact flat cosine top-k; the store loads it from LanceDB, derives a new one
from exactly what each successful commit wrote, and drops it when the table moves in a way the store did not make or
grows past `cache_max_rows` (see memtune.policies.store.store).

A mirror never changes once the store has published it, so searches read it without the store lock while a writer
commits (reads.py): `changed()` returns a new mirror, and the writer publishes it (one reference assignment) only
after its LanceDB commit succeeded. The big arrays are shared between a mirror and the ones derived from it, and
cost nothing to share because they only ever grow at the end: every changed row (insert, update, invalidation) gets
a new slot past `n` (the old slot of an updated row just stops being alive), and a mirror reads slots below its own
`n` only. What does change in place is copied per write: the alive / valid masks (n bytes each) and the id -> slot
dict (about 1 ms at 100k rows). A mirror squeezes out its dead slots into fresh arrays once they are over half.

Vectors are kept twice, row-major (`vectors`: gathering a small scope's rows) and dimension-major (`columns`: one
matrix-vector product over all rows, which reads the matrix at memory speed: 7 ms for 100k x 384 float32 against
13-15 ms for the row-major product on one core here). That costs 1.5 KB of RAM a memory on top of the ~4-5 KB the
row and the first copy take.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import numpy as np

from ..types import Scope
from .lance import _ROW_COLUMNS, present_columns
from .sql import SCOPE_FIELDS

BLAS_MIN_ROWS = 32_768  # score at least this many rows with BLAS (matmul), fewer with einsum (see _Mirror.top_k)
GATHER_SHARE = 8  # a scope of under 1/8 of the rows is scored by gathering its rows, a wider one by a full pass


class _Mirror:
    """The memories table at one LanceDB version, as numpy arrays: id look-ups, scope masks, exact cosine top-k.
    Immutable once published (module docstring): writers call changed()."""

    def __init__(self, dim: int, version: int):
        self.dim, self.version = dim, version
        self.n = 0  # slots of this mirror (alive or dead); arrays may hold more, written for a newer mirror
        self.dead = 0
        self.vectors = np.zeros((64, dim), np.float32)  # row-major
        self.columns = np.zeros((dim, 64), np.float32)  # the same vectors, dimension-major
        self.alive = np.zeros(64, bool)
        self.valid = np.zeros(64, bool)  # alive and never invalidated (soft invalidation: invalid_at empty)
        self.codes = {f: np.zeros(64, np.int32) for f in SCOPE_FIELDS}
        self.vocab: dict[str, dict[str, int]] = {f: {} for f in SCOPE_FIELDS}  # grows only: shared by derived ones
        self.rows: list[dict | None] = []  # grows only past n (entries below n never change)
        self.slot: dict[str, int] = {}  # id -> its alive slot

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
            m._append(rows, _normalise(vecs))
        return m

    def __len__(self) -> int:
        return len(self.slot)

    # -- writes: only on a mirror nobody else sees yet ------------------------------------------------------------
    def changed(self, removed: Iterable[str], rows: list[dict], vectors: np.ndarray | None, version: int) -> _Mirror:
        """A new mirror at `version`: this one less the `removed` ids, with `rows` inserted or replaced (vectors[i]
        belongs to rows[i]; None keeps the stored vectors). This mirror stays as it was."""
        if vectors is None and rows:
            vectors = np.stack([self.vectors[self.slot[r["id"]]] for r in rows])
        new = copy.copy(self)
        new.version = version
        new.alive, new.valid, new.slot = self.alive.copy(), self.valid.copy(), dict(self.slot)
        new._kill(removed)
        new._append(rows, vectors)
        if new.dead > 1024 and new.dead > new.n // 2:
            return new._squeezed()
        return new

    def at(self, version: int) -> _Mirror:
        """The same rows at another table version (a compaction's: it rewrites files, not rows)."""
        new = copy.copy(self)
        new.version = version
        return new

    def _kill(self, ids: Iterable[str]) -> None:
        for i in ids:
            s = self.slot.pop(i, None)
            if s is not None:
                self.alive[s] = self.valid[s] = False
                self.dead += 1

    def _append(self, rows: list[dict], vectors: np.ndarray | None) -> None:
        """Put `rows` in new slots past n (a replaced row's old slot dies)."""
        if not rows:
            return
        self._kill([r["id"] for r in rows if r["id"] in self.slot])
        self._grow(self.n + len(rows))
        del self.rows[self.n :]  # slots past n are this writer's to fill (a failed write may have left some)
        start = self.n
        for k, row in enumerate(rows):
            s = start + k
            clean = {c: row.get(c) for c in _ROW_COLUMNS}  # a column an old version lacks reads as None
            clean["provenance"] = list(clean["provenance"] or [])
            self.rows.append(clean)
            self.slot[row["id"]] = s
            self.alive[s] = True
            self.valid[s] = not clean["invalid_at"]
            for f in SCOPE_FIELDS:
                self.codes[f][s] = self.vocab[f].setdefault(row[f] or "", len(self.vocab[f]))
        if vectors is not None:
            block = np.asarray(vectors, np.float32)
            self.vectors[start : start + len(rows)] = block
            self.columns[:, start : start + len(rows)] = block.T
        self.n = start + len(rows)

    def _grow(self, need: int) -> None:
        """New, bigger arrays (a published mirror keeps the ones it has)."""
        cap = len(self.alive)
        if need <= cap:
            return
        new, n = max(need, 2 * cap), self.n
        vectors = np.zeros((new, self.dim), np.float32)
        vectors[:n] = self.vectors[:n]
        columns = np.zeros((self.dim, new), np.float32)
        columns[:, :n] = self.columns[:, :n]
        self.vectors, self.columns = vectors, columns
        self.alive, self.valid = _grown(self.alive, new), _grown(self.valid, new)
        self.codes = {f: _grown(c, new) for f, c in self.codes.items()}

    def _squeezed(self) -> _Mirror:
        keep = np.flatnonzero(self.alive[: self.n])
        fresh = _Mirror(self.dim, self.version)
        fresh.vocab = {f: dict(v) for f, v in self.vocab.items()}
        fresh._append([self.rows[s] for s in keep], self.vectors[keep])  # type: ignore[misc]  # alive slots hold rows
        return fresh

    # -- reads ------------------------------------------------------------------------------------------------------
    def get(self, memory_id: str) -> dict | None:
        s = self.slot.get(memory_id)
        return None if s is None else self.rows[s]

    def vector(self, memory_id: str) -> np.ndarray:
        return self.vectors[self.slot[memory_id]]

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
        # (queries, candidates). Small products use einsum, not BLAS: multi-threaded OpenBLAS took ~8 ms for this
        # product on a busy 2-core machine, einsum's single-threaded loop 0.4 ms (10k rows, 1/7 of them in scope).
        # Large ones use BLAS on the dimension-major copy: at 100k x 384 one query took 15.6 ms with einsum, 13-15
        # ms with BLAS on the row-major matrix and 7 ms on the dimension-major one (one BLAS thread).
        if idx.size * GATHER_SHARE < self.n or self.n < BLAS_MIN_ROWS:  # gather the scope's rows (a copy)
            rows = self.vectors[idx] if idx.size < self.n else self.vectors[: self.n]
            sims = np.einsum("ij,kj->ik", rows, queries).T
        else:  # a wide scope: score every slot in one pass (gathering would copy most of the matrix), keep the scope
            sims = np.matmul(queries, self.columns[:, : self.n])
            if idx.size < self.n:
                sims = sims[:, idx]
        out = []
        for s in sims:
            if idx.size > k:
                part = np.argpartition(-s, k - 1)[:k]
                order = part[np.argsort(-s[part], kind="stable")]
            else:
                order = np.argsort(-s, kind="stable")
            out.append([(self.rows[idx[o]], float(s[o])) for o in order])
        return out

    def select(self, scope: Scope, include_invalid: bool = True) -> list[dict]:
        """The scope's rows, in slot order."""
        return [self.rows[s] for s in np.flatnonzero(self.mask(scope, include_invalid))]  # type: ignore[misc]


def _grown(a: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, a.dtype)
    out[: len(a)] = a
    return out


def _normalise(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return (v / np.where(norms > 0, norms, 1.0)).astype(np.float32, copy=False)
