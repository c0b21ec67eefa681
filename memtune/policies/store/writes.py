"""The write half of MemoryStore: validate and plan a batch of changes, write it (one memories commit and one
history append, in parallel, both rolled back if either fails), group-commit the history, bulk loads, scope
deletes and reset. See store.py for the tables and why writes are shaped this way."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from ..types import Op, Scope
from .changes import Change, _Plan, delete_history, plan_changes, validate_change
from .fts import ensure_fts_index
from .lance import present_columns, rows_to_arrow
from .lease import check_unmoved
from .purge import blank_delete_rows, blank_history
from .sql import _check_scope, ids_where, sql_where
from .state import StoreState


class WritesMixin(StoreState):
    """Writes of MemoryStore; it uses the store's lock, tables, mirror and read helpers."""

    def _next_seq(self) -> int:
        self._last_seq = max(self._last_seq + 1, time.time_ns())
        return self._last_seq

    def _plan(self, changes: Sequence[Change]) -> _Plan:
        """Validate the whole batch and work out its effect, in order, without writing anything."""
        vectors = [validate_change(c, i, self.dim, self.embedder_id) for i, c in enumerate(changes)]
        ended = {i for c in changes for i in ((c.memory_id,) if c.op == "INVALIDATE" else c.supersedes) if i}
        named = {c.memory_id for c in changes if c.op != "ADD" and c.memory_id} | ended
        before = self._rows_by_id(sorted(i for i in named if i))  # validated
        kept = ended
        for memory_id, vector in self._stored_vectors(sorted(kept & set(before))).items():
            before[memory_id] = {**before[memory_id], "vector": vector}  # an invalidated row keeps its vector
        return plan_changes(changes, vectors, before, self.embedder_id, self._next_seq, self.policy_version)

    def _write_memories(self, plan: _Plan) -> int | None:
        """One LanceDB write for the whole batch; returns the new table version (None: nothing written)."""
        upserts = plan.inserts + plan.updates
        if not upserts and not plan.deletes:
            return None
        if not plan.updates and not plan.deletes:
            return self._table.add(rows_to_arrow(plan.inserts, self._schema, self.dim)).version
        if not upserts:
            return self._table.delete(ids_where(plan.deletes)).version
        merge = self._table.merge_insert("id").when_matched_update_all()
        if plan.inserts:
            merge = merge.when_not_matched_insert_all()
        if plan.deletes:
            merge = merge.when_not_matched_by_source_delete(ids_where(plan.deletes))
        return merge.execute(rows_to_arrow(upserts, self._schema, self.dim)).version

    def _write_history(self, rows: list[dict]) -> None:
        if rows:
            self._hversion = self._history.add(pa.Table.from_pylist(rows, schema=self._history_schema)).version

    def _write(self, write_memories, history_rows: list[dict]) -> int | None:
        """Run one memories write and the history append (in parallel: two tables, two commits); if either
        fails, restore both tables to where they were. Returns the memories version after the write."""
        self._check_writable("write")
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
                check_unmoved(tbl, tbl.version, "rolling back a failed write")  # never over another's commit
                tbl.restore(version)
        self._version, self._hversion = self._table.version, self._history.version

    def apply(self, changes: Sequence[Change]) -> list[tuple[Op, str, str]]:
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
                live = [r for r in plan.after.values() if r is not None]
                self._publish(
                    view,
                    [i for i, r in plan.after.items() if r is None],
                    live,
                    np.stack([r["vector"] for r in live]) if live else None,
                    v1,
                )
            self._since_compact += 1
            if self.compact_every and self._since_compact >= self.compact_every:
                self.compact()
            return plan.results

    def _publish(self, view, removed: list[str], rows: list[dict], vectors, v1: int | None) -> None:
        """Publish the mirror after a commit that made `v1` from `view`'s version: searches (reads.py, no lock) see
        the write from here on, before the writing call returns. Anything else (someone else wrote in between, a
        failure here, too many rows) leaves no mirror: the next read reloads it under the lock."""
        try:
            new = view.changed(removed, rows, vectors, v1) if v1 == view.version + 1 else None
        except BaseException:
            self._mirror = None
            raise
        self._mirror = new if new is not None and len(new) < self.cache_max_rows else None

    def flush(self) -> None:
        """Append history rows still held by group commit (history_flush_every > 1); a no-op otherwise."""
        with self._lock:
            if self._pending_history:
                self._write_history([r for batch in self._pending_history for r in batch])
                self._pending_history.clear()

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
        """Delete every memory in `scope` and blank the text of the scope's history (purge.blank_history:
        the rows stay, with op, id, time and scope, as the record of what happened); returns how many memories.
        The DELETE rows it writes carry no text either. An all-empty scope is refused. The text stays on disk in
        older versions until purge_versions()."""
        _check_scope(scope)
        self._check_writable("delete_all")
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
                if view is not None and self._mirror is view:
                    self._publish(view, [r["id"] for r in rows], [], None, v1)
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
        self._check_writable("reset")
        with self._lock:
            for name in (self.table_name, self.history_name):
                self._db.drop_table(name, ignore_missing=True)  # type: ignore[call-arg]  # LanceDBConnection takes it
            self._table = self._db.create_table(self.table_name, schema=self._schema)
            if self.fts_index:
                ensure_fts_index(self._table)
            self._history = self._db.create_table(self.history_name, schema=self._history_schema)
            self._mirror, self._too_big_at, self._since_compact = None, None, 0
            self._version, self._hversion = self._table.version, self._history.version
            self._columns, self._vector_indexed = present_columns(self._table), False
            self._pending_history.clear()


def _quiet_result(future) -> None:
    try:
        future.result()
    except BaseException:
        pass
