"""Versions of the memory store: which old LanceDB versions compaction keeps, and the history rows a rollback
writes.

Every LanceDB commit makes a version of the memories table; a version stays restorable (and readable through
`MemoryStore.as_of`) until compaction drops it. The keep policy is a union: a version survives compaction when it
is newer than `keep_versions_seconds`, or among the `keep_last_versions` newest versions that existed when the
compaction started (the compaction's own versions, which hold the same rows as the one before them, come on top).
LanceDB cleans up by age only, so "the last N" is turned into an age whose cut-off falls midway between the N-th
and the (N+1)-th newest version's commit times.

Rollback (`MemoryStore.restore(v)`) restores the memories table to version v as a new version and *appends* to
the history what that did to each memory (DELETE for memories v did not have, ADD for memories it brings back,
UPDATE for memories whose content differs), with metadata {"reason": "restore", "restored_version": v}. Why not
roll the history table back too: history is the audit log (a rollback is itself a change someone made and must be
explainable later); history versions do not line up one-to-one with memories versions (history appends are
grouped with `history_flush_every` > 1, run in parallel with the memories commit, and are compacted); and
restoring a version made before an earlier restore ("undo the undo") would need history rows the first rollback
had deleted. With appended rows the history replayed in `seq` order always ends in the live table.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, cast

from .changes import _now
from .fts import ensure_fts_index
from .lance import add_missing_columns, disk_bytes, maybe_index, present_columns
from .lease import check_unmoved
from .state import StoreState

if TYPE_CHECKING:
    from .store import MemoryStore

_NEVER = timedelta(days=365 * 100)
_KEEP_ALL = _NEVER  # optimize() without dropping versions (its default drops versions older than 7 days)


def version_list(table) -> list[dict]:
    """[{"version": int, "timestamp": ISO-8601 UTC}] of every version on disk, oldest first."""
    return [
        {"version": int(v["version"]), "timestamp": _utc(v["timestamp"]).isoformat(timespec="microseconds")}
        for v in sorted(table.list_versions(), key=lambda v: v["version"])
    ]


def commit_ns(table, version: int) -> int:
    """The commit time of `version` in ns since the epoch (history seqs are wall-clock ns taken before the commit
    of the batch they belong to, so the history as of a version is the rows with seq <= this)."""
    for v in table.list_versions():
        if int(v["version"]) == version:
            return int(_utc(v["timestamp"]).timestamp() * 1e6) * 1000 + 999
    raise ValueError(f"version {version} is not on disk")


def _utc(ts: datetime) -> datetime:
    # LanceDB reports naive local wall-clock times; astimezone() reads a naive datetime as local time.
    return ts.astimezone(UTC)


def check_version(table, version, what: str) -> int:
    """`version` as an int if it is still on disk, else a ValueError that lists the kept versions."""
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"{what}: version must be an int from versions_list(), got {version!r}")
    kept = [v["version"] for v in table.list_versions()]
    if version not in kept:
        shown = kept if len(kept) <= 20 else [*kept[:5], "...", *kept[-10:]]
        raise ValueError(
            f"{what}: version {version} is not on disk (kept: {shown}). Compaction drops old "
            "versions: raise keep_versions_seconds / keep_last_versions to keep more"
        )
    return version


def cleanup_age(table, keep_seconds: float, keep_last: int, before_version: int) -> timedelta:
    """The `cleanup_older_than` age that keeps versions newer than keep_seconds plus the keep_last newest versions
    <= before_version (the last version before this compaction). Call it right before the cleanup."""
    age = timedelta(seconds=max(float(keep_seconds), 0.0))
    if keep_last <= 0:
        return age
    older = sorted(
        (v for v in table.list_versions() if int(v["version"]) <= before_version),
        key=lambda v: v["version"],
        reverse=True,
    )
    if len(older) <= keep_last:
        return _NEVER  # nothing past the last N yet
    oldest_kept, first_dropped = older[keep_last - 1]["timestamp"], older[keep_last]["timestamp"]
    # An age whose cut-off lands midway between the two commit times: LanceDB drops versions older than (its own
    # now - age), rounds the age to ms, and its clock reads a little differently from ours; half the gap between
    # two commits (each takes a few ms) absorbs that.
    now = datetime.now()  # naive local time, like LanceDB's version timestamps
    return max(age, now - oldest_kept + (oldest_kept - first_dropped) / 2)


def restore_history(
    current: dict[str, dict],
    target: dict[str, dict],
    version: int,
    now: str,
    next_seq: Callable[[], int],
    policy_version: str,
) -> list[dict]:
    """History rows that explain a rollback from `current` to `target` rows (id -> row, without vectors)."""
    meta = json.dumps({"reason": "restore", "restored_version": version}, sort_keys=True)
    rows = []

    def record(op: str, row: dict, old_text: str, new_text: str, old: dict | None = None) -> None:
        rows.append(
            {
                "memory_id": row["id"],
                "op": op,
                "old_text": old_text,
                "new_text": new_text,
                "time": now,
                "seq": next_seq(),
                "provenance": list(row.get("provenance") or []),
                "old_provenance": list((old or {}).get("provenance") or []),
                "user_id": row["user_id"] or "",
                "agent_id": row["agent_id"] or "",
                "run_id": row["run_id"] or "",
                "metadata": meta,
                "policy_version": policy_version,
            }
        )

    for mid, row in current.items():
        if mid not in target:
            record("DELETE", row, row["text"], "", row)
    for mid, row in target.items():
        old = current.get(mid)
        if old is None:
            record("ADD", row, "", row["text"])
        elif _content(old) != _content(row):
            record("UPDATE", row, old["text"], row["text"], old)
    return rows


def _content(row: dict) -> tuple:
    return (
        row["text"],
        row["updated_at"],
        row["metadata"],
        tuple(row.get("provenance") or ()),
        row["user_id"],
        row["agent_id"],
        row["run_id"],
    )


class VersionsMixin(StoreState):
    """The version-keeping half of MemoryStore (compaction, versions, point-in-time reads, rollback, disk stats);
    it uses the store's lock, tables and write path."""

    def compact(self) -> None:
        """Merge small fragments, drop old versions and refresh indices (both tables); build or rebuild the ANN index
        when the table has passed index_min_rows. Versions survive by the keep policy (versions.py)."""
        self._check_writable("compact")
        with self._lock:
            self.flush()
            in_sync = self._mirror if self._mirror is not None and self._mirror.version == self._version else None
            # searches read the published mirror meanwhile, without the lock (reads.py)
            before = self._table.version
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r".*removes every version.*")
                if not self.keep_versions_seconds and not self.keep_last_versions:
                    for tbl in (self._table, self._history):  # one call each: compact and keep only the latest
                        tbl.optimize(cleanup_older_than=timedelta(0))
                    self._maybe_index()
                else:
                    self._table.optimize(cleanup_older_than=_KEEP_ALL)
                    self._maybe_index()
                    # the age is computed right before the cleanup it drives (see cleanup_age)
                    self._table.optimize(
                        cleanup_older_than=cleanup_age(
                            self._table, self.keep_versions_seconds, self.keep_last_versions, before
                        )
                    )
                    # history versions are never restored (restore() appends to the history): keep them only
                    # as long as readers of old versions may need them
                    self._history.optimize(cleanup_older_than=timedelta(seconds=self.keep_versions_seconds))
            if self.fts_index:
                ensure_fts_index(self._table)  # a table written before the index, or after restore() / reset()
            self._vector_indexed = self._has_vector_index()
            self._version, self._hversion = self._table.version, self._history.version
            if in_sync is not None and self._mirror is in_sync:
                self._mirror = in_sync.at(self._version)  # compaction and indexing keep the rows as they were
            self._since_compact = 0

    def _maybe_index(self) -> None:
        """Build or rebuild the ANN index when the table has passed index_min_rows (lance.maybe_index)."""
        maybe_index(
            self._table, self.index_min_rows, self.reindex_growth, self.dim, self.index_type, self.index_partition_rows
        )

    # -- versions -------------------------------------------------------------------------------------------------
    def versions_list(self) -> list[dict]:
        """The restorable versions of the memories table, oldest first: [{"version": int, "timestamp": ISO UTC}]."""
        return version_list(self._table)

    def as_of(self, version: int) -> MemoryStore:
        """A read-only store at `version` (get / get_all / search / count / history as they were then; writes raise
        PermissionError). It reads the version's files, so keep it only while compaction keeps the version."""
        from .view import StoreView  # it subclasses MemoryStore

        with self._lock:
            self.flush()
            return StoreView(cast("MemoryStore", self), check_version(self._table, version, "as_of"))  # mixed into it

    def restore(self, version: int) -> int:
        """Roll the memories back to `version` (as a new version; later versions stay restorable until compaction
        drops them) and append to the history what that did to each memory (restore_history).
        Returns the new version. Refuses (RuntimeError) when another writer committed since this handle last wrote
        or opened the table (lease.check_unmoved): a rollback never discards another writer's commit."""
        self._check_writable("restore")
        with self._lock:
            version = check_version(self._table, version, "restore")
            check_unmoved(self._table, self._version, "restore")
            self.flush()
            if version == self._table.version:
                return version
            old = self._db.open_table(self.table_name)
            old.checkout(version)
            target = {r["id"]: r for r in old.search().select(list(present_columns(old))).to_arrow().to_pylist()}
            current = {r["id"]: r for r in self._query_rows(None)}
            hist = restore_history(current, target, version, _now(), self._next_seq, self.policy_version)

            def write() -> int:
                self._table.restore(version)
                return self._table.version

            self._write(write, hist)
            add_missing_columns(self._table, self._schema)  # a version from before the upgrade
            self._mirror, self._too_big_at = None, None
            self._version, self._columns = self._table.version, present_columns(self._table)
            self._vector_indexed = self._has_vector_index()
            return self._version

    def purge_versions(self) -> dict:
        """Rewrite both tables with their live rows and drop every older version (purge.purge_table), so
        text deleted from the store (delete, delete_all, updates) is gone from disk as well; nothing before now
        can be restored or read with as_of() afterwards. One writer only: no other process may use the store
        meanwhile. Returns per table: rows, versions and bytes before and after."""
        from .purge import purge_table

        self._check_writable("purge_versions")
        with self._lock:
            self.flush()
            in_sync = self._mirror if self._mirror is not None and self._mirror.version == self._version else None
            report = {
                name: purge_table(tbl)
                for name, tbl in ((self.table_name, self._table), (self.history_name, self._history))
            }
            self._vector_indexed = self._has_vector_index()
            self._version, self._hversion = self._table.version, self._history.version
            self._columns = present_columns(self._table)
            if in_sync is not None and self._mirror is in_sync:
                self._mirror = in_sync.at(self._version)  # the same rows, rewritten
            self._since_compact = 0
            return report

    def versions(self) -> int:
        """How many versions of the memories table are kept on disk (compact() drops old ones)."""
        return len(self._table.list_versions())

    def disk_bytes(self) -> int:
        """Bytes on disk of both tables, old versions included (local stores only)."""
        return disk_bytes(self.uri, (self.table_name, self.history_name))

    def stats(self) -> dict:
        """Rows, versions, fragments and indices of the memories table (for logging)."""
        s = cast(dict, self._table.stats())  # a dict at run time, though lancedb annotates TableStatistics
        return {
            "rows": s["num_rows"],
            "version": self.version,
            "versions_kept": self.versions(),
            "fragments": s["fragment_stats"]["num_fragments"],
            "indices": s["num_indices"],
            "disk_bytes": self.disk_bytes(),
        }
