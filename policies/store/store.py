"""LanceDB memory store with an op history: the memories a policy keeps, and how each one came to be.

Two LanceDB tables live under `uri`:

* `<table>`: one row per live memory: id, text, vector (fixed_size_list<float32>[dim], unit length), user_id,
  agent_id, run_id, provenance (list<string>: the dia_ids the fact came from), timestamp (when the fact was said),
  created_at / updated_at (ISO UTC wall clock), metadata (JSON string), embedder_id, policy_version (the bundle
  version of the policy that last wrote the row, the `policy_version` knob; "" for eval runs).
* `<table>_history`: one row per applied change (ADD / UPDATE / DELETE / NOOP) with old and new text, old and new
  provenance (ADD / UPDATE: the memory's before and after, so a replacing UPDATE loses nothing; NOOP / DELETE: the
  change's, and the memory's before), the memory's scope, the writing policy_version and a monotonic `seq`.

A store written before `policy_version` or `old_provenance` existed is upgraded when opened (one metadata-only
commit adds the column; its old rows read as "" / []). Versions: every commit makes a LanceDB version; `versions_list()`,
`as_of(version)` (a read-only store at that version) and `restore(version)` (roll back; the history records it)
work on the versions compaction kept (`keep_versions_seconds`, `keep_last_versions`; see store_versions.py).

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
  `index_min_rows` rows. At 100k memories (store_bench.py --scale, 2 busy cores) the mirror searched one scope of
  all 100k in p50 4.5 / p95 6.2 ms (one BLAS pass over the vectors, no copy; quiet machine) and 100 scopes of 1k in < 1 ms; LanceDB took 19-27 ms
  either way, and its IVF_PQ recall@10 on random vectors was 0.4-0.7. Production (conf/store/lancedb.yaml) keeps
  the mirror up to 200k rows.

One writer process per store: compaction drops old versions (`keep_versions_seconds`, `keep_last_versions`,
default 0: only the latest survives; conf/store/lancedb.yaml keeps 7 days for production).
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import lancedb
import numpy as np
import pyarrow as pa

from ..types import MemoryRecord, Scope
from .changes import Change, _Plan, check_vectors, delete_history, plan_changes, validate_change
from .lance import (
    add_missing_columns,
    check_compatible,
    has_vector_index,
    history_schema,
    lance_search,
    memory_schema,
    present_columns,
    rows_to_arrow,
    schema_meta,
    to_record,
)
from .mirror import _Mirror
from .purge import blank_delete_rows, blank_history
from .sql import _check_scope, _check_text, sql_where
from .versions import VersionsMixin

__all__ = ["Change", "MemoryStore", "sql_where"]


# ---- the store --------------------------------------------------------------------------------------------------
class MemoryStore(VersionsMixin):
    """Memories of many scopes in one LanceDB table, plus the history of every change.

    index_min_rows  build an ANN index (IVF_PQ, cosine) once the table has this many rows; rebuild it when the table
                    has grown `reindex_growth` times past the rows it was trained on. Below it: exact flat search.
    compact_every   compact (merge fragments, drop old versions, refresh indices) every N apply() calls; 0 = never.
    cache           serve reads from the version-keyed in-process mirror (see the module docstring).
    cache_max_rows  drop the mirror past this many rows (default: index_min_rows).
    keep_versions_seconds, keep_last_versions  compaction keeps versions newer than this many seconds, and the last
                    this many versions (a union; both 0: only the latest). Kept versions are restorable.
    policy_version  stamped on every row this handle writes (memories and history): the policy bundle version.
    history_flush_every  1 (default): every apply() appends its history rows in the same call. N > 1: group commit,
                    history rows are appended once every N applies (and by flush(), history(), compact(),
                    delete_all(), close(), and at interpreter exit); a crash loses at most the last N-1 batches'
                    history, never memories. The ingest loop runs about 1.5x faster with N=20 (one LanceDB commit
                    per apply instead of two).
    """

    def __init__(
        self,
        uri: str | os.PathLike,
        dim: int,
        embedder_id: str,
        table: str = "memories",
        index_min_rows: int = 50_000,
        compact_every: int = 50,
        *,
        cache: bool = True,
        cache_max_rows: int | None = None,
        history_flush_every: int = 1,
        keep_versions_seconds: float = 0.0,
        keep_last_versions: int = 0,
        reindex_growth: float = 2.0,
        nprobes: int = 20,
        refine_factor: int = 10,
        policy_version: str = "",
    ):
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
        if float(keep_versions_seconds) < 0 or int(keep_last_versions) < 0:
            raise ValueError(
                f"keep_versions_seconds and keep_last_versions must be >= 0, got "
                f"{keep_versions_seconds!r} and {keep_last_versions!r}"
            )
        self.keep_versions_seconds, self.keep_last_versions = float(keep_versions_seconds), int(keep_last_versions)
        self.reindex_growth, self.nprobes, self.refine_factor = reindex_growth, nprobes, refine_factor
        self.policy_version = policy_version
        self._db = lancedb.connect(self.uri)
        meta = schema_meta(self.embedder_id, self.dim)
        self._schema, self._history_schema = memory_schema(self.dim, meta), history_schema(meta)
        self._table = self._open_or_create(self.table_name, self._schema, check=True)
        self._history = self._open_or_create(self.history_name, self._history_schema, check=False)
        self._init_state()
        if self.history_flush_every > 1:
            atexit.register(_flush_at_exit, weakref.ref(self))

    def _init_state(self) -> None:
        self._lock = threading.RLock()
        self._mirror: _Mirror | None = None
        self._too_big_at: int | None = None  # table version at which the mirror was found too big
        self._since_compact = 0
        self._last_seq = 0
        self._history_until: int | None = None  # read-only views: history rows with seq <= this
        # The version this handle is at. It only moves when this store writes (lancedb.connect() without a
        # read_consistency_interval does not follow other writers), so reads need not ask LanceDB for it
        # (about 0.2 ms a call); refresh() follows other writers.
        self._version, self._hversion = self._table.version, self._history.version
        self._columns = present_columns(self._table)
        self._vector_indexed = self._has_vector_index()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memtune-history")
        self._pending_history: list[list[dict]] = []  # history rows of applied batches not yet written

    @property
    def policy_version(self) -> str:
        """The bundle version stamped on every row this handle writes ("" for eval runs)."""
        return self._policy_version

    @policy_version.setter
    def policy_version(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"policy_version must be a str, got {type(value).__name__}: {value!r}")
        _check_text(value, "policy_version")
        self._policy_version = value

    # -- opening --------------------------------------------------------------------------------------------------
    def _open_or_create(self, name: str, schema: pa.Schema, check: bool):
        try:
            tbl = self._db.open_table(name)
        except ValueError:  # "Table '...' was not found"
            return self._db.create_table(name, schema=schema)
        if check:
            check_compatible(tbl, self.uri, self.table_name, self.embedder_id, self.dim)
        try:
            add_missing_columns(tbl, schema)
        except ValueError as e:
            raise ValueError(f"memory store {self.uri!r}, table {name!r}: {e}") from None
        return tbl

    # -- validation helpers ---------------------------------------------------------------------------------------
    def _vectors(self, vectors, what: str) -> np.ndarray:
        return check_vectors(vectors, what, self.dim, self.embedder_id)

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
        return q.select(list(self._columns)).to_arrow().to_pylist()

    def _rows_by_id(self, ids: Sequence[str]) -> dict[str, dict]:
        if not ids:
            return {}
        view = self._view()
        if view is not None:
            return {i: r for i in ids if (r := view.get(i)) is not None}
        return {r["id"]: r for r in self._query_rows(sql_where(ids=ids))}

    _record = staticmethod(to_record)

    # -- writes ---------------------------------------------------------------------------------------------------
    def _next_seq(self) -> int:
        self._last_seq = max(self._last_seq + 1, time.time_ns())
        return self._last_seq

    def _plan(self, changes: Sequence[Change]) -> _Plan:
        """Validate the whole batch and work out its effect, in order, without writing anything."""
        vectors = [validate_change(c, i, self.dim, self.embedder_id) for i, c in enumerate(changes)]
        before = self._rows_by_id(sorted({c.memory_id for c in changes if c.op != "ADD"}))
        return plan_changes(changes, vectors, before, self.embedder_id, self._next_seq, self.policy_version)

    def _write_memories(self, plan: _Plan) -> int | None:
        """One LanceDB write for the whole batch; returns the new table version (None: nothing written)."""
        upserts = plan.inserts + plan.updates
        if not upserts and not plan.deletes:
            return None
        if not plan.updates and not plan.deletes:
            return self._table.add(rows_to_arrow(plan.inserts, self._schema, self.dim)).version
        if not upserts:
            return self._table.delete(sql_where(ids=plan.deletes)).version
        merge = self._table.merge_insert("id").when_matched_update_all()
        if plan.inserts:
            merge = merge.when_not_matched_insert_all()
        if plan.deletes:
            merge = merge.when_not_matched_by_source_delete(sql_where(ids=plan.deletes))
        return merge.execute(rows_to_arrow(upserts, self._schema, self.dim)).version

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
                v1 = self._write(
                    lambda: self._write_memories(plan),
                    [r for batch in self._pending_history for r in batch] if flush else [],
                )
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
        hits = lance_search(
            self._table,
            q,
            sql_where(scope),
            top_k,
            self._columns,
            self._vector_indexed,
            self.index_min_rows,
            self.nprobes,
            self.refine_factor,
        )
        return [[self._record(row, score) for row, score in per_query] for per_query in hits]

    def flush(self) -> None:
        """Append history rows still held by group commit (history_flush_every > 1); a no-op otherwise."""
        with self._lock:
            if self._pending_history:
                self._write_history([r for batch in self._pending_history for r in batch])
                self._pending_history.clear()

    def history(self, memory_id: str) -> list[dict]:
        """Every change to `memory_id`, oldest first: {memory_id, op, old_text, new_text, time, seq, provenance,
        old_provenance, user_id, agent_id, run_id, metadata, policy_version}. NOOP rows carry the redundant candidate fact in new_text."""
        where = sql_where(ids=[memory_id], id_column="memory_id")
        if self._history_until is not None:
            where += f" AND seq <= {int(self._history_until)}"
        with self._lock:
            self.flush()
            rows = self._history.search().where(where).to_arrow().to_pylist()
        rows.sort(key=lambda r: r["seq"])
        for r in rows:
            r["metadata"] = json.loads(r["metadata"]) if r["metadata"] else {}
            r["policy_version"] = r.get("policy_version") or ""
            r["old_provenance"] = r.get("old_provenance") or []
        return rows

    def count(self, scope: Scope = Scope()) -> int:
        _check_scope(scope)
        with self._lock:
            view = self._view()
            if view is not None:
                return int(view.mask(scope).sum())
            return self._table.count_rows(sql_where(scope))

    # -- bulk / maintenance ---------------------------------------------------------------------------------------
    def bulk_load(self, rows: list[dict], history: list[dict]) -> None:
        """Write complete memory rows (id, scope, times, metadata, embedder_id, policy_version and vector as given)
        and history rows into an empty store, in one commit each: memtune-migrate copies a store this way (apply()
        would assign new ids and times). Refuses a store that holds anything."""
        with self._lock:
            if self._table.count_rows() or self._history.count_rows() or self._pending_history:
                raise ValueError(f"bulk_load() needs an empty store; {self.uri!r} already holds memories or history")
            if rows:
                vectors = self._vectors(np.stack([np.asarray(r["vector"], np.float32) for r in rows]), "bulk_load")
                rows = [{**r, "vector": v} for r, v in zip(rows, vectors)]
                if len({r["id"] for r in rows}) != len(rows):
                    raise ValueError("bulk_load(): duplicate memory ids")
            self._write(
                lambda: self._table.add(rows_to_arrow(rows, self._schema, self.dim)).version if rows else None, history
            )
            self._mirror, self._too_big_at = None, None

    def delete_all(self, scope: Scope) -> int:
        """Delete every memory in `scope` and blank the text of the scope's history (store_purge.blank_history:
        the rows stay, with op, id, time and scope, as the record of what happened); returns how many memories.
        The DELETE rows it writes carry no text either. An all-empty scope is refused. The text stays on disk in
        older versions until purge_versions()."""
        _check_scope(scope)
        where = sql_where(scope)
        if where is None:
            raise ValueError(
                "delete_all() got an empty scope, which would delete every memory: "
                "pass a user_id/agent_id/run_id, or call reset() to wipe the store"
            )
        with self._lock:
            view = self._view()
            rows = view.select(scope) if view is not None else self._query_rows(where)
            if rows:
                hist = blank_delete_rows(delete_history(rows, "delete_all", self._next_seq, self.policy_version))
                v1 = self._write(
                    lambda: self._table.delete(where).version,
                    [r for batch in self._pending_history for r in batch] + hist,
                )
                self._pending_history.clear()
                if view is not None and self._mirror is view and v1 == view.version + 1:
                    view.remove(r["id"] for r in rows)
                    view.version = v1
                else:
                    self._mirror = None
            else:
                self.flush()
            # after the memories are gone: a failure here leaves text in the history, and calling delete_all again
            # (which then finds no memories) finishes the job
            self._hversion = blank_history(self._history, where) or self._hversion
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
            self._columns, self._vector_indexed = present_columns(self._table), False
            self._pending_history.clear()

    def refresh(self) -> None:
        """Follow writes made by other processes or handles (the mirror reloads if the table moved)."""
        with self._lock:
            self._table.checkout_latest()
            self._history.checkout_latest()
            self._version, self._hversion = self._table.version, self._history.version
            self._columns = present_columns(self._table)
            self._vector_indexed = self._has_vector_index()

    def _has_vector_index(self) -> bool:
        return has_vector_index(self._table)

    @property
    def version(self) -> int:
        """The LanceDB version of the memories table (every write makes one)."""
        return self._table.version

    def close(self) -> None:
        """Write pending history (group commit) and stop the history writer thread."""
        self.flush()
        self._writer.shutdown(wait=True)

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"MemoryStore(uri={self.uri!r}, table={self.table_name!r}, embedder_id={self.embedder_id!r}, "
            f"dim={self.dim})"
        )


def _flush_at_exit(ref: weakref.ref[MemoryStore]) -> None:
    store = ref()
    if store is not None:
        store.flush()


def _quiet_result(future) -> None:
    try:
        future.result()
    except BaseException:
        pass
