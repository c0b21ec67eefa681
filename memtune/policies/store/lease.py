"""One writer process per memory store: the writer lease.

Why: LanceDB lets any number of processes commit to a table, but the store is not made for it. Each handle keeps
an in-process mirror, its own history sequence and compaction schedule, and rolls a failed write back with
`restore()`, which would discard whatever another process committed in between. So a store opened for writing
with `lease=True` (what `Memory.from_bundle` and memtune-serve do) first takes the lease, and a second process gets
`StoreLocked` naming the holder (host, pid, since) and what to do. Read-only opens (`read_only=True`) take no lease.

Two parts, because one is not enough everywhere:

* an exclusive `flock` on `<store>/.memtune-writer.lock`: the kernel releases it when the holder dies (kill -9,
  OOM, a crash), so a dead writer never keeps the store; on one machine this is the whole answer;
* a lease record `<store>/.memtune-writer.json` (host, pid, since, heartbeat, lease id), rewritten every
  `heartbeat_s` by a daemon thread: on a network filesystem whose locks do not reach other machines, a writer on
  another host whose heartbeat is younger than `ttl_s` still refuses the store. A record left by a dead holder
  is taken over: on this host as soon as the OS lock is free, from another host once its heartbeat is older than
  `ttl_s`. A holder whose heartbeat finds someone else's record (it stalled past the TTL and was taken over)
  marks the lease lost, and its store refuses every further write (`LeaseLost`).

Inside one process the lease is shared (counted): handles of the same store in one process do not refuse each
other (tests and tools open a store twice); the lease goes when the last of them closes. Remote URIs (s3://...)
have no directory to lock: no lease (LanceDB's own commit protocol is all there is there).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_FILE = ".memtune-writer.lock"
RECORD_FILE = ".memtune-writer.json"
HEARTBEAT_S = 10.0  # the holder rewrites its record this often
TTL_S = 60.0  # a record whose heartbeat is older than this belongs to a dead (or cut-off) holder


class StoreLocked(ValueError):
    """Another process holds the store's writer lease (a ValueError: the CLIs print it as one line, exit 2)."""


class LeaseLost(RuntimeError):
    """This process held the writer lease and lost it (its heartbeat stalled past the TTL); it may not write."""


def _now() -> float:
    return time.time()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


@dataclass
class _Held:
    """The lease of one store, as held by this process."""

    uri: str
    fd: int
    record: dict
    ttl_s: float
    heartbeat_s: float
    users: int = 1
    lost: str = ""  # why the lease was lost ("" while held)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


_HELD: dict[str, _Held] = {}
_REGISTRY = threading.Lock()


def read_record(directory: Path) -> dict | None:
    """The lease record in `directory` (None: none, or unreadable)."""
    try:
        record = json.loads((directory / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _write_record(directory: Path, record: dict) -> None:
    tmp = directory / f"{RECORD_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record, sort_keys=True))
    os.replace(tmp, directory / RECORD_FILE)  # readers see the old record or the new one, never half


def describe_holder(record: dict | None, ttl_s: float) -> str:
    if not record:
        return "another process (its lease record is missing or unreadable)"
    age = _now() - float(record.get("heartbeat", 0) or 0)
    return (
        f"pid {record.get('pid')} on host {record.get('host')!r} since {record.get('since')} "
        f"(last heartbeat {age:.0f} s ago, lease expires {ttl_s:.0f} s after it)"
    )


def _refusal(uri: str, record: dict | None, ttl_s: float) -> StoreLocked:
    return StoreLocked(
        f"memory store {uri!r} is open for writing by {describe_holder(record, ttl_s)}. One process writes a "
        "store: stop that process first (a second memtune-serve over one store is refused), or open the store "
        "read-only beside it (MemoryStore(..., read_only=True)). A crashed holder keeps nothing: the OS releases "
        "its lock when it dies, and on a filesystem without working locks its lease expires after the TTL"
    )


def _live_elsewhere(record: dict | None, ttl_s: float) -> bool:
    """Whether a record we found after taking the OS lock belongs to a live holder on another machine (whose lock
    this filesystem does not show us). A record of this host is stale: the OS lock is authoritative here."""
    if not record or record.get("host") == socket.gethostname():
        return False
    return _now() - float(record.get("heartbeat", 0) or 0) < ttl_s


class StoreLease:
    """A counted handle on the writer lease of the store at `uri` (see the module docstring)."""

    def __init__(self, uri: str, *, ttl_s: float = TTL_S, heartbeat_s: float = HEARTBEAT_S):
        if not 0 < heartbeat_s < ttl_s:
            raise ValueError(f"lease heartbeat_s must be > 0 and < ttl_s, got {heartbeat_s} and {ttl_s}")
        self.uri, self._released = uri, False
        directory = Path(uri)
        directory.mkdir(parents=True, exist_ok=True)
        self.key = str(directory.resolve())
        with _REGISTRY:
            held = _HELD.get(self.key)
            if held is not None:
                held.users += 1
                self._held = held
                return
            self._held = _acquire(uri, directory, ttl_s, heartbeat_s)
            _HELD[self.key] = self._held

    @property
    def record(self) -> dict:
        return dict(self._held.record)

    def check(self, what: str) -> None:
        """Raise LeaseLost if this process lost the lease (call before every commit)."""
        if self._held.lost:
            raise LeaseLost(
                f"{what}: this process lost the writer lease of memory store {self.uri!r} ({self._held.lost}); "
                "it writes nothing more: restart it (the new holder keeps writing)"
            )

    def beat(self) -> None:
        """Rewrite the lease record now (the heartbeat thread calls this every heartbeat_s)."""
        _beat(self._held)

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        with _REGISTRY:
            held = self._held
            held.users -= 1
            if held.users > 0:
                return
            _HELD.pop(self.key, None)
        held.stop.set()
        if held.thread is not None and held.thread is not threading.current_thread():
            held.thread.join(timeout=5)
        directory = Path(held.uri)
        try:
            mine = read_record(directory)
            if mine is not None and mine.get("lease_id") == held.record["lease_id"]:
                (directory / RECORD_FILE).unlink(missing_ok=True)
        finally:
            fcntl.flock(held.fd, fcntl.LOCK_UN)
            os.close(held.fd)


def _acquire(uri: str, directory: Path, ttl_s: float, heartbeat_s: float) -> _Held:
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise _refusal(uri, read_record(directory), ttl_s) from None
    try:
        found = read_record(directory)
        if _live_elsewhere(found, ttl_s):
            raise _refusal(uri, found, ttl_s)
        now = _now()
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": _iso(now),
            "heartbeat": now,
            "lease_id": uuid.uuid4().hex,
            "ttl_s": ttl_s,
        }
        if found:
            log.warning("memory store %s: taking over the stale writer lease of %s", uri, describe_holder(found, ttl_s))
        _write_record(directory, record)
    except BaseException:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        raise
    held = _Held(uri, fd, record, ttl_s, heartbeat_s)
    held.thread = threading.Thread(target=_heartbeat, args=(held,), name="memtune-lease", daemon=True)
    held.thread.start()
    return held


def _beat(held: _Held) -> None:
    directory = Path(held.uri)
    found = read_record(directory)
    if found is not None and found.get("lease_id") != held.record["lease_id"]:
        held.lost = f"taken over by {describe_holder(found, held.ttl_s)}"
        log.error("memory store %s: writer lease lost, %s; no more writes", held.uri, held.lost)
        held.stop.set()
        return
    held.record["heartbeat"] = _now()
    _write_record(directory, held.record)


def _heartbeat(held: _Held) -> None:
    while not held.stop.wait(held.heartbeat_s):
        try:
            _beat(held)
        except OSError as err:  # a full disk or a vanished mount: keep trying; the TTL decides
            log.warning("memory store %s: lease heartbeat failed: %s", held.uri, err)


def is_local(uri: str) -> bool:
    """A directory the lease can lock (not s3://, gs://, az://, db://...)."""
    return "://" not in uri


def check_unmoved(table, version: int, what: str) -> None:
    """Refuse to roll `table` back over a version this handle did not write or open.

    `version` is the version the handle is at (it moves only with its own writes, or refresh()). If the table's
    latest version on disk is newer, another writer committed since, and restoring would discard that commit: raise
    instead. With the lease there is one writer, so this only fires without it (or after a lost lease)."""
    latest = max((int(v["version"]) for v in table.list_versions()), default=version)
    if latest != version:
        raise RuntimeError(
            f"{what}: table {table.name!r} is at version {latest} on disk, but this handle last wrote or opened "
            f"version {version}: another writer committed since, and a rollback would discard that commit. "
            "Nothing was rolled back; stop the other writer (open stores with lease=True), refresh(), then retry"
        )
