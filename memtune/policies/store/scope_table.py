"""The rolling context of each write scope, kept in the store: a small LanceDB table `<table>_scope_state` beside
the memories, one row per scope (user_id, agent_id, run_id): its recent messages, the messages not yet folded into
the summary, and the summary.

Why in the store and not in process memory: a server restart would otherwise forget every user's context (the next
extraction would see no recent messages and no summary), and a process holding every scope it ever saw grows
without bound. How much is kept is the runtime's choice (runtime/scope_state.py bounds it by the policy's knobs);
this table stores what it is given.

One row is replaced per write (merge_insert on the scope key), under this table's own lock; the table keeps no old
versions (it is compacted with cleanup every `compact_every` writes and after every delete: nothing restores it).
Scope deletes take wildcard scopes like the memories (delete_all of a user clears all its agents' rows);
`MemoryStore.purge_versions` and `memtune-purge` rewrite it with the other tables.
"""

from __future__ import annotations

import json
import threading
import warnings
from datetime import timedelta
from typing import TYPE_CHECKING

import pyarrow as pa

from ..types import Message, Scope
from .changes import _now
from .sql import _check_scope, _sql_literal, sql_where
from .store import MemoryStore

if TYPE_CHECKING:
    from lancedb.table import Table

SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("user_id", pa.string()),
        ("agent_id", pa.string()),
        ("run_id", pa.string()),
        ("recent", pa.string()),  # JSON list of {speaker, text, dia_id, timestamp}, oldest first
        ("pending", pa.string()),
        ("summary", pa.string()),
        ("updated_at", pa.string()),
        ("policy_version", pa.string()),
    ]
)


def scope_key(scope: Scope) -> str:
    return json.dumps([scope.user_id, scope.agent_id, scope.run_id])


def _dump(messages: list[Message]) -> str:
    return json.dumps([[m.speaker, m.text, m.dia_id, m.timestamp] for m in messages], ensure_ascii=False)


def _load(text: str) -> list[Message]:
    return [Message(*row) for row in json.loads(text or "[]")]


class ScopeStateTable:
    """get / put / delete of per-scope rolling context in the store at `store.uri` (created on the first put)."""

    def __init__(self, store: MemoryStore, compact_every: int = 50):
        import lancedb

        self.store, self.name, self.compact_every = store, f"{store.table_name}_scope_state", int(compact_every)
        self._db = lancedb.connect(store.uri)
        self._lock = threading.Lock()
        self._writes = 0
        self._tbl: Table | None
        try:
            self._tbl = self._db.open_table(self.name)
        except ValueError:  # not created yet: nothing was ever kept
            self._tbl = None

    def get(self, scope: Scope) -> tuple[list[Message], list[Message], str] | None:
        """(recent, pending, summary) kept for exactly this scope, or None."""
        _check_scope(scope)
        with self._lock:
            if self._tbl is None:
                return None
            rows = self._tbl.search().where(f"key = {_sql_literal(scope_key(scope), 'scope')}").to_arrow().to_pylist()
        if not rows:
            return None
        row = rows[0]
        return _load(row["recent"]), _load(row["pending"]), row["summary"] or ""

    def put(self, scope: Scope, recent: list[Message], pending: list[Message], summary: str) -> None:
        _check_scope(scope)
        self.store._check_writable("saving the scope's rolling context")
        row = {
            "key": scope_key(scope),
            "user_id": scope.user_id,
            "agent_id": scope.agent_id,
            "run_id": scope.run_id,
            "recent": _dump(recent),
            "pending": _dump(pending),
            "summary": summary,
            "updated_at": _now(),
            "policy_version": self.store.policy_version,
        }
        data = pa.Table.from_pylist([row], schema=SCHEMA)
        with self._lock:
            if self._tbl is None:
                self._tbl = self._db.create_table(self.name, schema=SCHEMA, exist_ok=True)
            self._tbl.merge_insert("key").when_matched_update_all().when_not_matched_insert_all().execute(data)
            self._writes += 1
            if self.compact_every and self._writes % self.compact_every == 0:
                self._compact()

    def delete(self, scope: Scope) -> int:
        """Forget every scope inside `scope` (empty fields are wildcards; the empty scope: all). Returns how many."""
        _check_scope(scope)
        self.store._check_writable("deleting the scope's rolling context")
        where = sql_where(scope)
        with self._lock:
            if self._tbl is None:
                return 0
            n = self._tbl.count_rows(where)
            if n:
                self._tbl.delete(where or "true")
                self._compact()  # drop the versions that still hold the deleted text
            return n

    def reset(self) -> None:
        self.store._check_writable("reset")
        with self._lock:
            self._db.drop_table(self.name, ignore_missing=True)  # type: ignore[call-arg]  # LanceDBConnection takes it
            self._tbl = None

    def purge(self) -> dict | None:
        """purge.purge_table of this table (None when it was never created)."""
        from .purge import purge_table

        with self._lock:
            return None if self._tbl is None else purge_table(self._tbl)

    def count(self) -> int:
        with self._lock:
            return 0 if self._tbl is None else self._tbl.count_rows()

    def _compact(self) -> None:
        assert self._tbl is not None
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*removes every version.*")
            self._tbl.optimize(cleanup_older_than=timedelta(0))
