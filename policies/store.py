"""LanceDB memory store with an op history: the memories a policy keeps, and how each one came to be.

Two LanceDB tables live under `uri`:

* `<table>`: one row per live memory: id, text, vector (fixed_size_list<float32>[dim], unit length), user_id,
  agent_id, run_id, provenance (list<string>: the dia_ids the fact came from), timestamp (when the fact was said),
  created_at / updated_at (ISO UTC wall clock), metadata (JSON string), embedder_id.
* `<table>_history`: one row per applied change (ADD / UPDATE / DELETE / NOOP) with old and new text, the change's
  provenance, the memory's scope and a monotonic `seq`.

The embedder id and vector dim are kept in the memories table's schema metadata, so reopening a store with another
embedder fails loudly even when the table is empty (vectors of two embedders are not comparable).

Safety: scope values and memory ids reach LanceDB's SQL filters only through `sql_where()`, which quotes string
literals (doubling single quotes; LanceDB's SQL treats backslash literally) and rejects control characters.

Speed (benchmarks/store_bench.py; the policy's ingest loop is search_many() + apply() per message pair): a LanceDB
commit costs about 3 ms for an append and about 10 ms for a merge_insert on 2 cores, and merge_insert / delete / a
filtered scan get slower with every uncompacted fragment (about +0.1 ms each); each commit also leaves a version
on disk. Without compaction 3,000 steps leave ~2,400 fragments, ~2,900 versions and 850 MB on disk and run at
~17 steps/s. So:
* `apply()` makes one memories commit per batch (an add, or one merge_insert that also inserts and deletes, or one
  delete) and one history append, the two in parallel; `history_flush_every` > 1 groups history appends;
* `compact()` (optimize: merge fragments, drop old versions, refresh indices) runs every `compact_every` applies
  (default 50: at 4k rows a compaction costs ~100 ms, and 50 beat 200 by ~15% in the loop);
* reads (id look-ups for validation, scope filters, flat cosine top-k) come from an in-process mirror of the
  memories table keyed by the LanceDB table version: loaded from LanceDB, updated with exactly what each successful
  commit wrote, reloaded when the version moves in a way this store did not make (see refresh()). LanceDB stays the
  source of truth; `cache=False` sends every read to LanceDB (same results: both are exact flat cosine search with
  the scope applied before ranking). Search: ~0.1-0.5 ms from the mirror against ~7-18 ms from LanceDB at 1k-10k
  rows. Past `cache_max_rows` rows (default `index_min_rows`) the mirror is dropped and LanceDB answers: through
  an IVF_PQ cosine index (built by the first compact() past `index_min_rows`, rebuilt when the table has grown
  `reindex_growth`-fold since) for wide scopes, by exact prefiltered flat search for scopes of at most
  `index_min_rows` rows.

One writer process per store: compaction drops old versions (`keep_versions_seconds`, default 0).
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
import unicodedata
import uuid
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import lancedb
import numpy as np
import pyarrow as pa
from lancedb.index import BTree, IvfPq

from memtune.policies.types import OPS, MemoryRecord, Op, Scope

__all__ = ["Change", "MemoryStore", "sql_where"]

SCOPE_FIELDS = ("user_id", "agent_id", "run_id")
META_EMBEDDER = b"memtune.embedder_id"
META_DIM = b"memtune.dim"
META_TRAINED = b"memtune.index_trained_rows"  # vector-field metadata: rows the ANN index was trained on
_ROW_COLUMNS = ("id", "text", "user_id", "agent_id", "run_id", "provenance", "timestamp", "created_at",
                "updated_at", "metadata", "embedder_id")


# ---- the one place that writes SQL ----------------------------------------------------------------------------
def _sql_literal(value: Any, field: str) -> str:
    """`value` as a quoted SQL string literal; control characters (NUL, newline, ...) are refused."""
    _check_text(value, field)
    return "'" + value.replace("'", "''") + "'"


def _check_text(value: Any, field: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a str, got {type(value).__name__}: {value!r}")
    for ch in value:
        if unicodedata.category(ch) == "Cc":
            raise ValueError(f"{field} contains control character {ch!r} (U+{ord(ch):04X}): {value!r}; "
                             "ids and scope values may not contain control characters")


def sql_where(scope: Scope | None = None, ids: Iterable[str] | None = None, id_column: str = "id") -> str | None:
    """Build a LanceDB filter: equality on the non-empty scope fields, AND `id_column IN (ids)` when ids is given.

    Every filter this module sends to LanceDB comes from here. Returns None for "no filter" (an all-empty scope and
    no ids); an empty `ids` gives a filter that matches nothing.
    """
    if id_column not in ("id", "memory_id"):
        raise ValueError(f"id_column must be 'id' or 'memory_id', got {id_column!r}")
    parts = []
    if scope is not None:
        for name in SCOPE_FIELDS:
            value = getattr(scope, name)
            if value:
                parts.append(f"{name} = {_sql_literal(value, name)}")
    if ids is not None:
        ids = list(ids)
        if ids:
            parts.append(f"{id_column} IN ({', '.join(_sql_literal(i, 'memory_id') for i in ids)})")
        else:
            parts.append("false")
    return " AND ".join(parts) if parts else None


def _check_scope(scope: Scope) -> None:
    if not isinstance(scope, Scope):
        raise TypeError(f"scope must be a memtune Scope, got {type(scope).__name__}")
    for name in SCOPE_FIELDS:
        _check_text(getattr(scope, name), name)


def _in_scope(row: dict, scope: Scope) -> bool:
    """Empty scope fields are wildcards."""
    return all(not getattr(scope, f) or row[f] == getattr(scope, f) for f in SCOPE_FIELDS)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


# ---- records ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)  # eq=False: a numpy vector has no truth value, so equality is identity
class Change:
    """One write, as decided by a policy. NOOP is recorded in the history only."""

    op: Op  # "ADD" | "UPDATE" | "DELETE" | "NOOP"
    text: str = ""  # ADD/UPDATE: the memory text; NOOP: the candidate fact judged redundant
    vector: np.ndarray | None = None  # required for ADD/UPDATE (normalised by the store)
    memory_id: str | None = None  # required for UPDATE/DELETE/NOOP; ADD gets a new uuid4
    scope: Scope = Scope()  # ADD: the owner; UPDATE/DELETE/NOOP: the target must lie inside it (wildcards)
    provenance: tuple[str, ...] = ()  # dia_ids the fact came from; on UPDATE unioned with the old ones
    timestamp: str = ""  # when the fact was said (UPDATE keeps the old one when empty)
    metadata: dict | None = None  # ADD: stored; UPDATE: merged over the old (None keeps it)

    def __post_init__(self):
        if not isinstance(self.provenance, tuple):
            object.__setattr__(self, "provenance", tuple(self.provenance))


@dataclass
class _Plan:
    results: list[tuple[str, str, str]]
    inserts: list[dict]  # full rows (with "vector")
    updates: list[dict]
    deletes: list[str]
    history: list[dict]
    after: dict[str, dict | None]  # id -> row after the batch (None: deleted), for the mirror


# ---- the in-process read mirror -------------------------------------------------------------------------------
class _Mirror:
    """The memories table at one LanceDB version, as numpy arrays: id look-ups, scope masks, exact cosine top-k."""

    def __init__(self, dim: int, version: int):
        self.dim, self.version = dim, version
        self.n = 0  # slots used
        self.dead = 0
        self.vectors = np.zeros((64, dim), np.float32)
        self.alive = np.zeros(64, bool)
        self.codes = {f: np.zeros(64, np.int32) for f in SCOPE_FIELDS}
        self.vocab: dict[str, dict[str, int]] = {f: {} for f in SCOPE_FIELDS}
        self.rows: list[dict | None] = []
        self.slot: dict[str, int] = {}

    @classmethod
    def load(cls, table, dim: int) -> "_Mirror":
        version = table.version
        data = table.to_arrow()
        m = cls(dim, version)
        if data.num_rows:
            vecs = np.asarray(data["vector"].combine_chunks().flatten().to_numpy(zero_copy_only=False),
                              np.float32).reshape(-1, dim)
            rows = data.select(list(_ROW_COLUMNS)).to_pylist()
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
            clean = {k: row[k] for k in _ROW_COLUMNS}
            clean["provenance"] = list(clean["provenance"] or [])
            self.rows[s] = clean
            self.alive[s] = True
            for f in SCOPE_FIELDS:
                self.codes[f][s] = self.vocab[f].setdefault(row[f] or "", len(self.vocab[f]))
            if vectors is not None:
                self.vectors[s] = vectors[i]

    def remove(self, ids: Iterable[str]) -> None:
        for i in ids:
            s = self.slot.pop(i, None)
            if s is not None:
                self.alive[s] = False
                self.rows[s] = None
                self.dead += 1
        if self.dead > 1024 and self.dead > self.n // 2:  # squeeze out tombstones
            keep = np.flatnonzero(self.alive[: self.n])
            rows = [self.rows[s] for s in keep]
            vecs = self.vectors[keep].copy()
            fresh = _Mirror(self.dim, self.version)
            fresh.put_many(rows, vecs)
            self.__dict__.update(fresh.__dict__)

    def get(self, memory_id: str) -> dict | None:
        s = self.slot.get(memory_id)
        return None if s is None else self.rows[s]

    def mask(self, scope: Scope) -> np.ndarray:
        m = self.alive[: self.n].copy()
        for f in SCOPE_FIELDS:
            value = getattr(scope, f)
            if value:
                code = self.vocab[f].get(value)
                if code is None:
                    return np.zeros(self.n, bool)
                m &= self.codes[f][: self.n] == code
        return m

    def top_k(self, queries: np.ndarray, scope: Scope, k: int) -> list[list[tuple[dict, float]]]:
        idx = np.flatnonzero(self.mask(scope))
        if idx.size == 0 or k <= 0:
            return [[] for _ in range(len(queries))]
        # (candidates, queries). einsum, not `@`: multi-threaded OpenBLAS took ~8 ms for this product on a busy
        # 2-core machine, einsum's single-threaded loop 0.4 ms (10k rows, 1/7 of them in scope).
        sims = np.einsum("ij,kj->ik", self.vectors[idx], queries)
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

    def select(self, scope: Scope) -> list[dict]:
        return [self.rows[s] for s in np.flatnonzero(self.mask(scope))]


def _grow_rows(a: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n, a.shape[1]), a.dtype)
    out[: len(a)] = a
    return out


def _normalise(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return (v / np.where(norms > 0, norms, 1.0)).astype(np.float32, copy=False)


# ---- the store --------------------------------------------------------------------------------------------------
class MemoryStore:
    """Memories of many scopes in one LanceDB table, plus the history of every change.

    index_min_rows  build an ANN index (IVF_PQ, cosine) once the table has this many rows; rebuild it when the table
                    has grown `reindex_growth` times past the rows it was trained on. Below it: exact flat search.
    compact_every   compact (merge fragments, drop old versions, refresh indices) every N apply() calls; 0 = never.
    cache           serve reads from the version-keyed in-process mirror (see the module docstring).
    cache_max_rows  drop the mirror past this many rows (default: index_min_rows).
    history_flush_every  1 (default): every apply() appends its history rows in the same call. N > 1: group commit,
                    history rows are appended once every N applies (and by flush(), history(), compact(),
                    delete_all(), close(), and at interpreter exit); a crash loses at most the last N-1 batches'
                    history, never memories. The ingest loop runs about 1.5x faster with N=20 (one LanceDB commit
                    per apply instead of two).
    """

    def __init__(self, uri: str | os.PathLike, dim: int, embedder_id: str, table: str = "memories",
                 index_min_rows: int = 50_000, compact_every: int = 50, *, cache: bool = True,
                 cache_max_rows: int | None = None, history_flush_every: int = 1,
                 keep_versions_seconds: float = 0.0, reindex_growth: float = 2.0, nprobes: int = 20,
                 refine_factor: int = 10):
        if not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        if not embedder_id or not isinstance(embedder_id, str):
            raise ValueError(f"embedder_id must be a non-empty str, got {embedder_id!r}")
        if not table.replace("_", "").isalnum():
            raise ValueError(f"table name must be letters, digits and '_', got {table!r}")
        self.uri, self.dim, self.embedder_id, self.table_name = str(uri), dim, embedder_id, table
        self.history_name = f"{table}_history"
        self.index_min_rows, self.compact_every = int(index_min_rows), int(compact_every or 0)
        self.cache = cache
        self.cache_max_rows = int(cache_max_rows if cache_max_rows is not None else index_min_rows)
        if int(history_flush_every) < 1:
            raise ValueError(f"history_flush_every must be >= 1, got {history_flush_every!r}")
        self.history_flush_every = int(history_flush_every)
        self.keep_versions = timedelta(seconds=keep_versions_seconds)
        self.reindex_growth, self.nprobes, self.refine_factor = reindex_growth, nprobes, refine_factor
        self._lock = threading.RLock()
        self._mirror: _Mirror | None = None
        self._too_big_at: int | None = None  # table version at which the mirror was found too big
        self._since_compact = 0
        self._last_seq = 0
        self._db = lancedb.connect(self.uri)
        self._schema = self._memory_schema()
        self._history_schema = self._make_history_schema()
        self._table = self._open_or_create(self.table_name, self._schema, check=True)
        self._history = self._open_or_create(self.history_name, self._history_schema, check=False)
        # The version this handle is at. It only moves when this store writes (lancedb.connect() without a
        # read_consistency_interval does not follow other writers), so reads need not ask LanceDB for it
        # (about 0.2 ms a call); refresh() follows other writers.
        self._version, self._hversion = self._table.version, self._history.version
        self._vector_indexed = self._has_vector_index()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memtune-history")
        self._pending_history: list[list[dict]] = []  # history rows of applied batches not yet written
        if self.history_flush_every > 1:
            atexit.register(_flush_at_exit, weakref.ref(self))

    # -- schemas / opening ----------------------------------------------------------------------------------------
    def _meta(self) -> dict[bytes, bytes]:
        return {META_EMBEDDER: self.embedder_id.encode(), META_DIM: str(self.dim).encode()}

    def _memory_schema(self) -> pa.Schema:
        s = pa.string()
        return pa.schema([
            pa.field("id", s), pa.field("text", s), pa.field("vector", pa.list_(pa.float32(), self.dim)),
            pa.field("user_id", s), pa.field("agent_id", s), pa.field("run_id", s),
            pa.field("provenance", pa.list_(s)), pa.field("timestamp", s), pa.field("created_at", s),
            pa.field("updated_at", s), pa.field("metadata", s), pa.field("embedder_id", s),
        ], metadata=self._meta())

    def _make_history_schema(self) -> pa.Schema:
        s = pa.string()
        return pa.schema([
            pa.field("memory_id", s), pa.field("op", s), pa.field("old_text", s), pa.field("new_text", s),
            pa.field("time", s), pa.field("seq", pa.int64()), pa.field("provenance", pa.list_(s)),
            pa.field("user_id", s), pa.field("agent_id", s), pa.field("run_id", s), pa.field("metadata", s),
        ], metadata=self._meta())

    def _open_or_create(self, name: str, schema: pa.Schema, check: bool):
        try:
            tbl = self._db.open_table(name)
        except ValueError:  # "Table '...' was not found"
            return self._db.create_table(name, schema=schema)
        if check:
            self._check_compatible(tbl)
        return tbl

    def _check_compatible(self, tbl) -> None:
        meta = tbl.schema.metadata or {}
        field = tbl.schema.field("vector") if "vector" in tbl.schema.names else None
        stored_dim = getattr(field.type, "list_size", None) if field is not None else None
        stored_id = meta.get(META_EMBEDDER, b"").decode() or "<unknown: not written by memtune>"
        if stored_id != self.embedder_id or stored_dim != self.dim:
            raise ValueError(
                f"memory store {self.uri!r} (table {self.table_name!r}) was written with embedder "
                f"{stored_id!r} (dim {stored_dim}), but it was opened with embedder {self.embedder_id!r} "
                f"(dim {self.dim}). Vectors from different embedders cannot be compared: open it with embedder "
                f"{stored_id!r}, or re-embed the memories into a new store (use a new store uri, or delete this one)."
            )

    # -- validation helpers ---------------------------------------------------------------------------------------
    def _vectors(self, vectors: Any, what: str) -> np.ndarray:
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim == 1:
            v = v[None, :]
        if v.ndim != 2 or v.shape[1] != self.dim:
            raise ValueError(f"{what}: expected vectors of dim {self.dim} (embedder {self.embedder_id!r}), "
                             f"got shape {tuple(np.shape(vectors))}")
        if not np.isfinite(v).all():
            raise ValueError(f"{what}: vector contains NaN or inf")
        if (np.linalg.norm(v, axis=1) == 0).any():
            raise ValueError(f"{what}: zero vector (cosine similarity is undefined)")
        return _normalise(v)

    def _validate(self, c: Change, i: int) -> np.ndarray | None:
        where = f"change {i} ({getattr(c, 'op', '?')})"
        if not isinstance(c, Change):
            raise TypeError(f"change {i}: expected a Change, got {type(c).__name__}")
        if c.op not in OPS:
            raise ValueError(f"{where}: op must be one of {OPS}")
        _check_scope(c.scope)
        if not all(isinstance(p, str) for p in c.provenance):
            raise TypeError(f"{where}: provenance must be strings, got {c.provenance!r}")
        if c.metadata is not None and not isinstance(c.metadata, dict):
            raise TypeError(f"{where}: metadata must be a dict or None")
        if c.op == "ADD" and c.memory_id is not None:
            raise ValueError(f"{where}: ADD takes no memory_id (the store assigns one), got {c.memory_id!r}")
        if c.op != "ADD":
            if not c.memory_id:
                raise ValueError(f"{where}: memory_id is required")
            _check_text(c.memory_id, "memory_id")
        if c.op in ("ADD", "UPDATE"):
            if not isinstance(c.text, str) or not c.text.strip():
                raise ValueError(f"{where}: text is required")
            if c.vector is None:
                raise ValueError(f"{where}: vector is required")
            return self._vectors(c.vector, where)[0]
        return None

    # -- reads: the mirror or LanceDB -----------------------------------------------------------------------------
    def _view(self) -> _Mirror | None:
        """The mirror at the current table version (reloaded if LanceDB moved on), or None: read LanceDB."""
        if not self.cache:
            return None
        version = self._version
        if self._mirror is not None and self._mirror.version == version:
            return self._mirror
        self._mirror = None
        if self._too_big_at == version:
            return None
        if self._table.count_rows() >= self.cache_max_rows:
            self._too_big_at = version
            return None
        self._too_big_at = None
        self._mirror = _Mirror.load(self._table, self.dim)
        self._version = self._mirror.version
        return self._mirror

    def _query_rows(self, where: str | None) -> list[dict]:
        q = self._table.search()
        if where:
            q = q.where(where)
        return q.select(list(_ROW_COLUMNS)).to_arrow().to_pylist()

    def _rows_by_id(self, ids: Sequence[str]) -> dict[str, dict]:
        if not ids:
            return {}
        view = self._view()
        if view is not None:
            return {i: r for i in ids if (r := view.get(i)) is not None}
        return {r["id"]: r for r in self._query_rows(sql_where(ids=ids))}

    @staticmethod
    def _record(row: dict, score: float | None = None) -> MemoryRecord:
        return MemoryRecord(
            id=row["id"], text=row["text"],
            scope=Scope(row["user_id"] or "", row["agent_id"] or "", row["run_id"] or ""),
            provenance=tuple(row["provenance"] or ()), timestamp=row["timestamp"] or "",
            created_at=row["created_at"] or "", updated_at=row["updated_at"] or "",
            metadata=json.loads(row["metadata"]) if row["metadata"] else {}, score=score,
        )

    # -- writes ---------------------------------------------------------------------------------------------------
    def _next_seq(self) -> int:
        self._last_seq = max(self._last_seq + 1, time.time_ns())
        return self._last_seq

    def _plan(self, changes: Sequence[Change]) -> _Plan:
        """Validate the whole batch and work out its effect, in order, without writing anything."""
        vectors = [self._validate(c, i) for i, c in enumerate(changes)]
        before = self._rows_by_id(sorted({c.memory_id for c in changes if c.op != "ADD"}))
        state: dict[str, dict | None] = dict(before)
        dirty: dict[str, None] = {}  # ids added/updated, in order
        results, history = [], []
        now = _now()
        for i, (c, vec) in enumerate(zip(changes, vectors)):
            if c.op == "ADD":
                mid = str(uuid.uuid4())
                row = {"id": mid, "text": c.text, "vector": vec, "user_id": c.scope.user_id,
                       "agent_id": c.scope.agent_id, "run_id": c.scope.run_id, "provenance": list(c.provenance),
                       "timestamp": c.timestamp, "created_at": now, "updated_at": now,
                       "metadata": json.dumps(c.metadata or {}, sort_keys=True, ensure_ascii=False),
                       "embedder_id": self.embedder_id}
                state[mid] = row
                dirty[mid] = None
                old_text, new_text = "", c.text
            else:
                mid = c.memory_id
                row = state.get(mid)
                if row is None:
                    gone = " (deleted earlier in this batch)" if mid in before else ""
                    raise KeyError(f"change {i} ({c.op}): unknown memory id {mid!r}{gone}; "
                                   "nothing from this batch was written")
                if not _in_scope(row, c.scope):
                    raise KeyError(f"change {i} ({c.op}): memory id {mid!r} is not in scope {c.scope}; "
                                   "nothing from this batch was written")
                old_text = row["text"]
                new_text = c.text
                if c.op == "UPDATE":
                    old_prov = list(row["provenance"] or [])
                    meta = json.loads(row["metadata"]) if row["metadata"] else {}
                    if c.metadata:
                        meta.update(c.metadata)
                    row = {**row, "text": c.text, "vector": vec,
                           "provenance": old_prov + [p for p in dict.fromkeys(c.provenance) if p not in old_prov],
                           "timestamp": c.timestamp or row["timestamp"], "updated_at": now,
                           "metadata": json.dumps(meta, sort_keys=True, ensure_ascii=False)}
                    state[mid] = row
                    dirty[mid] = None
                elif c.op == "DELETE":
                    state[mid] = None
                    dirty.pop(mid, None)
                    new_text = ""
            results.append((c.op, mid, old_text))
            history.append({"memory_id": mid, "op": c.op, "old_text": old_text, "new_text": new_text,
                            "time": now, "seq": self._next_seq(), "provenance": list(c.provenance),
                            "user_id": row["user_id"], "agent_id": row["agent_id"], "run_id": row["run_id"],
                            "metadata": json.dumps(c.metadata or {}, sort_keys=True, ensure_ascii=False)})
        inserts = [state[i] for i in dirty if i not in before]
        updates = [state[i] for i in dirty if i in before]
        deletes = [i for i in before if state[i] is None]
        after = {i: state[i] for i in [*dirty, *deletes]}
        return _Plan(results, inserts, updates, deletes, history, after)

    def _arrow(self, rows: list[dict]) -> pa.Table:
        cols = {name: [r[name] for r in rows] for name in self._schema.names if name != "vector"}
        flat = np.concatenate([r["vector"] for r in rows]).astype(np.float32) if rows else np.zeros(0, np.float32)
        cols["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), self.dim)
        return pa.table({n: cols[n] for n in self._schema.names}, schema=self._schema)

    def _write_memories(self, plan: _Plan) -> int | None:
        """One LanceDB write for the whole batch; returns the new table version (None: nothing written)."""
        upserts = plan.inserts + plan.updates
        if not upserts and not plan.deletes:
            return None
        if not plan.updates and not plan.deletes:
            return self._table.add(self._arrow(plan.inserts)).version
        if not upserts:
            return self._table.delete(sql_where(ids=plan.deletes)).version
        merge = self._table.merge_insert("id").when_matched_update_all()
        if plan.inserts:
            merge = merge.when_not_matched_insert_all()
        if plan.deletes:
            merge = merge.when_not_matched_by_source_delete(sql_where(ids=plan.deletes))
        return merge.execute(self._arrow(upserts)).version

    def _write_history(self, rows: list[dict]) -> None:
        if rows:
            self._hversion = self._history.add(pa.Table.from_pylist(rows, schema=self._history_schema)).version

    def _write(self, write_memories, history_rows: list[dict]) -> int | None:
        """Run one memories write and the history append (in parallel: two tables, two commits); if either
        fails, restore both tables to where they were. Returns the memories version after the write."""
        v0, h0 = self._version, self._hversion
        pending = self._writer.submit(self._write_history, history_rows) if history_rows else None
        try:
            v1 = write_memories()
        except BaseException:
            if pending is not None:
                _quiet_result(pending)
            self._rollback(v0, h0)
            raise
        try:
            if pending is not None:
                pending.result()
        except BaseException:
            self._rollback(v0, h0)
            raise
        if v1 is not None:
            self._version = v1
        return v1

    def _rollback(self, v0: int, h0: int) -> None:
        self._mirror = None
        for tbl, version in ((self._table, v0), (self._history, h0)):
            if tbl.version != version:
                tbl.restore(version)
        self._version, self._hversion = self._table.version, self._history.version

    def apply(self, changes: Sequence[Change]) -> list[tuple[str, str, str]]:
        """Apply a batch of changes in order; returns (op, memory_id, old_text) per change.

        The whole batch is validated first: an unknown memory id (or one outside the change's scope) raises KeyError
        and nothing is written. The batch becomes one memories write (add, or one merge_insert that also inserts and
        deletes, or one delete) and one history append, run in parallel; if either fails, both tables are restored to
        the versions they had before the batch.
        """
        changes = list(changes)
        if not changes:
            return []
        with self._lock:
            view = self._view()
            plan = self._plan(changes)
            self._pending_history.append(plan.history)
            flush = len(self._pending_history) >= self.history_flush_every
            try:
                v1 = self._write(lambda: self._write_memories(plan),
                                 [r for batch in self._pending_history for r in batch] if flush else [])
            except BaseException:
                self._pending_history.pop()  # this batch did not happen; earlier ones stay pending
                raise
            if flush:
                self._pending_history.clear()
            if view is not None and self._mirror is view and v1 is not None:
                if v1 == view.version + 1:
                    live = [r for r in plan.after.values() if r is not None]
                    view.remove([i for i, r in plan.after.items() if r is None])
                    view.put_many(live, np.stack([r["vector"] for r in live]) if live else None)
                    view.version = v1
                    if len(view) >= self.cache_max_rows:
                        self._mirror = None
                else:  # someone else wrote in between: reload on the next read
                    self._mirror = None
            self._since_compact += 1
            if self.compact_every and self._since_compact >= self.compact_every:
                self.compact()
            return plan.results

    # -- reads ----------------------------------------------------------------------------------------------------
    def get(self, memory_id: str) -> MemoryRecord | None:
        _check_text(memory_id, "memory_id")
        with self._lock:
            row = self._rows_by_id([memory_id]).get(memory_id)
        return None if row is None else self._record(row)

    def get_all(self, scope: Scope = Scope(), limit: int | None = None) -> list[MemoryRecord]:
        """Memories in `scope` (empty fields are wildcards), oldest first."""
        _check_scope(scope)
        with self._lock:
            view = self._view()
            rows = view.select(scope) if view is not None else self._query_rows(sql_where(scope))
        rows = sorted(rows, key=lambda r: (r["created_at"], r["id"]))
        return [self._record(r) for r in (rows if limit is None else rows[: max(limit, 0)])]

    def search(self, vector, scope: Scope, top_k: int, threshold: float | None = None) -> list[MemoryRecord]:
        """The top_k memories in `scope` by cosine similarity (in `.score`, descending), >= threshold if given."""
        hits = self.search_many(self._vectors(vector, "search")[:1], scope, top_k)[0]
        return hits if threshold is None else [h for h in hits if h.score >= threshold]

    def search_many(self, vectors: np.ndarray, scope: Scope, top_k: int) -> list[list[MemoryRecord]]:
        """search() for each row of `vectors` (one pass over the scope)."""
        _check_scope(scope)
        q = np.zeros((0, self.dim), np.float32) if len(vectors) == 0 else self._vectors(vectors, "search_many")
        if top_k <= 0 or len(q) == 0:
            return [[] for _ in range(len(q))]
        with self._lock:
            view = self._view()
            if view is not None:
                return [[self._record(r, s) for r, s in hits] for hits in view.top_k(q, scope, top_k)]
            return self._lance_search(q, scope, top_k)

    def _lance_search(self, q: np.ndarray, scope: Scope, top_k: int) -> list[list[MemoryRecord]]:
        where = sql_where(scope)
        query = self._table.search(q if len(q) > 1 else q[0], vector_column_name="vector").distance_type("cosine")
        if where:
            query = query.where(where, prefilter=True)
        if self._vector_indexed:
            if where and self._table.count_rows(where) <= self.index_min_rows:
                query = query.bypass_vector_index()  # a small scope: exact flat search over it
            else:
                query = query.nprobes(self.nprobes).refine_factor(self.refine_factor)
        data = query.select([*_ROW_COLUMNS, "_distance"]).limit(top_k).to_arrow()
        qi = data["query_index"].to_pylist() if "query_index" in data.column_names else [0] * data.num_rows
        out: list[list[MemoryRecord]] = [[] for _ in range(len(q))]
        for j, row in zip(qi, data.to_pylist()):
            out[j].append(self._record(row, 1.0 - float(row["_distance"])))
        for hits in out:
            hits.sort(key=lambda r: -r.score)
        return out

    def flush(self) -> None:
        """Append history rows still held by group commit (history_flush_every > 1); a no-op otherwise."""
        with self._lock:
            if self._pending_history:
                self._write_history([r for batch in self._pending_history for r in batch])
                self._pending_history.clear()

    def history(self, memory_id: str) -> list[dict]:
        """Every change to `memory_id`, oldest first: {memory_id, op, old_text, new_text, time, seq, provenance,
        user_id, agent_id, run_id, metadata}. NOOP rows carry the redundant candidate fact in new_text."""
        where = sql_where(ids=[memory_id], id_column="memory_id")
        with self._lock:
            self.flush()
            rows = self._history.search().where(where).to_arrow().to_pylist()
        rows.sort(key=lambda r: r["seq"])
        for r in rows:
            r["metadata"] = json.loads(r["metadata"]) if r["metadata"] else {}
        return rows

    def count(self, scope: Scope = Scope()) -> int:
        _check_scope(scope)
        with self._lock:
            view = self._view()
            if view is not None:
                return int(view.mask(scope).sum())
            return self._table.count_rows(sql_where(scope))

    # -- bulk / maintenance ---------------------------------------------------------------------------------------
    def delete_all(self, scope: Scope) -> int:
        """Delete every memory in `scope` (recorded in the history); returns how many. An all-empty scope is refused."""
        _check_scope(scope)
        where = sql_where(scope)
        if where is None:
            raise ValueError("delete_all() got an empty scope, which would delete every memory: "
                             "pass a user_id/agent_id/run_id, or call reset() to wipe the store")
        with self._lock:
            view = self._view()
            rows = view.select(scope) if view is not None else self._query_rows(where)
            if not rows:
                return 0
            now = _now()
            hist = [{"memory_id": r["id"], "op": "DELETE", "old_text": r["text"], "new_text": "", "time": now,
                     "seq": self._next_seq(), "provenance": [], "user_id": r["user_id"],
                     "agent_id": r["agent_id"], "run_id": r["run_id"],
                     "metadata": json.dumps({"reason": "delete_all"})} for r in rows]
            v1 = self._write(lambda: self._table.delete(where).version,
                             [r for batch in self._pending_history for r in batch] + hist)
            self._pending_history.clear()
            if view is not None and self._mirror is view and v1 == view.version + 1:
                view.remove(r["id"] for r in rows)
                view.version = v1
            else:
                self._mirror = None
            return len(rows)

    def reset(self) -> None:
        """Drop every memory and the whole history (the store keeps its embedder id and dim)."""
        with self._lock:
            for name in (self.table_name, self.history_name):
                self._db.drop_table(name, ignore_missing=True)
            self._table = self._db.create_table(self.table_name, schema=self._schema)
            self._history = self._db.create_table(self.history_name, schema=self._history_schema)
            self._mirror, self._too_big_at, self._since_compact = None, None, 0
            self._version, self._hversion = self._table.version, self._history.version
            self._vector_indexed = False
            self._pending_history.clear()

    def compact(self) -> None:
        """Merge small fragments, drop old versions and refresh indices (both tables); build or rebuild the ANN index
        when the table has passed index_min_rows."""
        with self._lock:
            self.flush()
            in_sync = self._mirror is not None and self._mirror.version == self._version
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r".*removes every version.*")
                for tbl in (self._table, self._history):
                    tbl.optimize(cleanup_older_than=self.keep_versions)
            self._maybe_index()
            self._vector_indexed = self._has_vector_index()
            self._version, self._hversion = self._table.version, self._history.version
            if in_sync:
                self._mirror.version = self._version  # compaction and indexing keep the rows as they were
            self._since_compact = 0

    def refresh(self) -> None:
        """Follow writes made by other processes or handles (the mirror reloads if the table moved)."""
        with self._lock:
            self._table.checkout_latest()
            self._history.checkout_latest()
            self._version, self._hversion = self._table.version, self._history.version
            self._vector_indexed = self._has_vector_index()

    def _has_vector_index(self) -> bool:
        return any("vector" in idx.columns for idx in self._table.list_indices())

    def _maybe_index(self) -> None:
        rows = self._table.count_rows()
        if rows < self.index_min_rows or rows < 256:  # PQ training needs 256 rows
            return
        meta = self._table.schema.field("vector").metadata or {}
        trained = int(meta.get(META_TRAINED, b"0"))
        if self._has_vector_index() and rows < self.reindex_growth * trained:
            return
        self._table.create_index(
            "vector", config=IvfPq(distance_type="cosine", num_sub_vectors=_num_sub_vectors(self.dim)), replace=True)
        for col in ("id", "user_id"):  # merge_insert joins, id look-ups and scope prefilters on a big table
            self._table.create_index(col, config=BTree(), replace=True)
        self._table.update_field_metadata({"path": "vector", "metadata": {META_TRAINED.decode(): str(rows)}})

    @property
    def version(self) -> int:
        """The LanceDB version of the memories table (every write makes one)."""
        return self._table.version

    def versions(self) -> int:
        """How many versions of the memories table are kept on disk (compact() drops old ones)."""
        return len(self._table.list_versions())

    def disk_bytes(self) -> int:
        """Bytes on disk of both tables, old versions included (local stores only)."""
        total = 0
        for name in (self.table_name, self.history_name):
            for root, _, files in os.walk(Path(self.uri) / f"{name}.lance"):
                total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
        return total

    def stats(self) -> dict:
        """Rows, versions, fragments and indices of the memories table (for logging)."""
        s = self._table.stats()
        return {"rows": s["num_rows"], "version": self.version, "versions_kept": self.versions(),
                "fragments": s["fragment_stats"]["num_fragments"], "indices": s["num_indices"],
                "disk_bytes": self.disk_bytes()}

    def close(self) -> None:
        """Write pending history (group commit) and stop the history writer thread."""
        self.flush()
        self._writer.shutdown(wait=True)

    def __enter__(self) -> "MemoryStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"MemoryStore(uri={self.uri!r}, table={self.table_name!r}, embedder_id={self.embedder_id!r}, "
                f"dim={self.dim})")


def _flush_at_exit(ref: "weakref.ref[MemoryStore]") -> None:
    store = ref()
    if store is not None:
        store.flush()


def _quiet_result(future) -> None:
    try:
        future.result()
    except BaseException:
        pass


def _num_sub_vectors(dim: int) -> int:
    """PQ sub-vectors of 8 dims when dim allows it (384 -> 48: 48 bytes a vector), else of 4, 2 or 1."""
    for width in (8, 4, 2, 1):
        if dim % width == 0:
            return dim // width
    return 1
