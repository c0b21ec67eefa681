"""A read-only MemoryStore at one past version (MemoryStore.as_of): what the memories were at that point.

It opens its own LanceDB handles (the memories table checked out at the version, the history table at its
latest) and shares every read path with MemoryStore (the mirror, LanceDB search, scope filters), so a
point-in-time read answers exactly as the store did then. History is cut at the version's commit time: history
seqs are wall-clock ns taken before the commit of their batch (versions.commit_ns). Writes raise
PermissionError: roll the store back with MemoryStore.restore(version) instead.
"""

from __future__ import annotations

import lancedb

from .store import MemoryStore
from .versions import commit_ns

_KNOBS = (
    "uri",
    "dim",
    "embedder_id",
    "table_name",
    "history_name",
    "index_min_rows",
    "compact_every",
    "cache",
    "cache_max_rows",
    "history_flush_every",
    "keep_versions_seconds",
    "keep_last_versions",
    "reindex_growth",
    "nprobes",
    "refine_factor",
    "index_type",
    "index_partition_rows",
    "ef",
    "fts_index",
    "_policy_version",
    "_schema",
    "_history_schema",
)


class StoreView(MemoryStore):
    """`store` as it was at `version` (a version still on disk); read-only."""

    def __init__(self, store: MemoryStore, version: int):  # no super().__init__(): would open/create tables
        for name in _KNOBS:
            setattr(self, name, getattr(store, name))
        self._db = lancedb.connect(self.uri)
        self._table = self._db.open_table(self.table_name)
        self._table.checkout(version)
        self._history = self._db.open_table(self.history_name)
        self._init_state()
        self._history_until = commit_ns(self._table, version)
        self.as_of_version = version

    def _refuse(self, *args, **kwargs):
        raise PermissionError(
            f"memory store {self.uri!r} as of version {self.as_of_version} is read-only: write to the store "
            f"itself, or roll it back with restore({self.as_of_version})"
        )

    apply = delete_all = reset = compact = restore = refresh = purge_versions = _refuse

    def flush(self) -> None:
        """Nothing to flush: a view never writes."""

    def close(self) -> None:
        self._writer.shutdown(wait=False)

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, as_of_version={self.as_of_version})"
