"""The read half of MemoryStore: id look-ups, scope listings, cosine top-k and the history, served from the
version-keyed in-process mirror or from LanceDB (see store.py for when each answers).

Reads from the mirror take no lock: they read the mirror the store published last (`_published()`), which never
changes (mirror.py), so a search does not wait for a write's commit or a compaction, and it sees one committed
version whole: the one before a concurrent write, or the one after it once the writer has published it (before its
apply() returns, so a thread reads its own writes and no search finds a row after its delete returned). Only a
store without a mirror (too big, cache=False, or one being reloaded) reads under the lock."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from ..types import MemoryRecord, Scope
from .lance import lance_search, to_record
from .mirror import _Mirror
from .sql import _check_scope, _check_text, ids_where, sql_where, valid_where
from .state import StoreState


class ReadsMixin(StoreState):
    """Reads of MemoryStore; it uses the store's lock, tables and mirror."""

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

    def _published(self) -> _Mirror | None:
        """The mirror last published, read without the lock (None: read under the lock through _view())."""
        return self._mirror if self.cache else None

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

    def _stored_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored (unit) vectors of `ids` that exist."""
        if not ids:
            return {}
        view = self._view()
        if view is not None:
            return {i: view.vectors[view.slot[i]].copy() for i in ids if i in view.slot}
        data = self._table.search().where(ids_where(ids)).select(["id", "vector"]).to_arrow().to_pylist()
        return {r["id"]: np.asarray(r["vector"], np.float32) for r in data}

    _record = staticmethod(to_record)

    def get(self, memory_id: str) -> MemoryRecord | None:
        _check_text(memory_id, "memory_id")
        view = self._published()
        if view is not None:
            row = view.get(memory_id)
            return None if row is None else self._record(row)
        with self._lock:
            row = self._rows_by_id([memory_id]).get(memory_id)
        return None if row is None else self._record(row)

    def get_all(
        self, scope: Scope = Scope(), limit: int | None = None, *, include_invalid: bool = False
    ) -> list[MemoryRecord]:
        """Memories in `scope` (empty fields are wildcards), oldest first; the valid ones only unless
        include_invalid (soft-invalidated memories, marked by invalid_at / superseded_by)."""
        _check_scope(scope)
        view = self._published()
        if view is not None:
            rows = view.select(scope, include_invalid)
        else:
            with self._lock:
                view = self._view()
                rows = (
                    view.select(scope, include_invalid)
                    if view is not None
                    else self._query_rows(valid_where(sql_where(scope), include_invalid, self._columns))
                )
        rows = sorted(rows, key=lambda r: (r["created_at"], r["id"]))
        return [self._record(r) for r in (rows if limit is None else rows[: max(limit, 0)])]

    def get_all_with_vectors(
        self, scope: Scope = Scope(), *, include_invalid: bool = False
    ) -> tuple[list[MemoryRecord], np.ndarray]:
        """get_all() (oldest first) and the memories' stored unit vectors, row i for record i (health metrics,
        memtune-audit)."""
        view = self._published()
        if view is not None:  # one mirror: one consistent read of both
            rows_ = sorted(view.select(scope, include_invalid), key=lambda r: (r["created_at"], r["id"]))
            records = [self._record(r) for r in rows_]
            rows = [view.vector(r.id) for r in records]
        else:
            with self._lock:  # re-entrant: one consistent read of both
                records = self.get_all(scope, include_invalid=include_invalid)
                vectors = self._stored_vectors([r.id for r in records])
            rows = [vectors[r.id] for r in records]
        return records, (np.stack(rows) if rows else np.zeros((0, self.dim), np.float32))

    def search(
        self, vector, scope: Scope, top_k: int, threshold: float | None = None, *, include_invalid: bool = False
    ) -> list[MemoryRecord]:
        """The top_k memories in `scope` by cosine similarity (in `.score`, descending), >= threshold if given;
        valid memories only unless include_invalid."""
        hits = self.search_many(self._vectors(vector, "search")[:1], scope, top_k, include_invalid=include_invalid)[0]
        return hits if threshold is None else [h for h in hits if h.score is not None and h.score >= threshold]

    def search_many(
        self, vectors: np.ndarray, scope: Scope, top_k: int, *, include_invalid: bool = False
    ) -> list[list[MemoryRecord]]:
        """search() for each row of `vectors` (one pass over the scope)."""
        _check_scope(scope)
        q = np.zeros((0, self.dim), np.float32) if len(vectors) == 0 else self._vectors(vectors, "search_many")
        if top_k <= 0 or len(q) == 0:
            return [[] for _ in range(len(q))]
        view = self._published()
        if view is not None:
            hits = view.top_k(q, scope, top_k, include_invalid)
            return [[self._record(r, s) for r, s in per_query] for per_query in hits]
        with self._lock:
            view = self._view()
            if view is not None:
                hits = view.top_k(q, scope, top_k, include_invalid)
                return [[self._record(r, s) for r, s in per_query] for per_query in hits]
            return self._lance_search(q, scope, top_k, include_invalid)

    def _lance_search(
        self, q: np.ndarray, scope: Scope, top_k: int, include_invalid: bool = False
    ) -> list[list[MemoryRecord]]:
        hits = lance_search(
            self._table,
            q,
            valid_where(sql_where(scope), include_invalid, self._columns),
            top_k,
            self._columns,
            self._vector_indexed,
            self.index_min_rows,
            self.nprobes,
            self.refine_factor,
            self.index_type,
            self.ef,
        )
        return [[self._record(row, score) for row, score in per_query] for per_query in hits]

    def history(self, memory_id: str) -> list[dict]:
        """Every change to `memory_id`, oldest first: {memory_id, op, old_text, new_text, time, seq, provenance,
        old_provenance, user_id, agent_id, run_id, metadata, policy_version}. NOOP rows carry the redundant candidate fact in new_text."""
        where = ids_where([memory_id], id_column="memory_id")
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

    def count(self, scope: Scope = Scope(), *, include_invalid: bool = False) -> int:
        """How many memories `scope` holds: the valid ones, or every stored row with include_invalid."""
        _check_scope(scope)
        view = self._published()
        if view is not None:
            return int(view.mask(scope, include_invalid).sum())
        with self._lock:
            view = self._view()
            if view is not None:
                return int(view.mask(scope, include_invalid).sum())
            return self._table.count_rows(valid_where(sql_where(scope), include_invalid, self._columns))
