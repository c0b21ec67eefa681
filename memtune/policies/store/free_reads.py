"""Searches that do not wait for a compaction.

`compact()` holds the store lock for the whole LanceDB optimize (merge fragments, rebuild indices, clean versions):
seconds at 100k rows on a small machine, and every search used to wait behind it (benchmarks/serve_load.py: search
p95 1.4 s at half the saturation load, p50 28 ms). A compaction changes no row, and while it holds the lock no writer
can change the in-process mirror either, so a search may read the mirror without the lock for exactly that span:
`compact()` opens the span with the mirror it checked is in sync, and closes it (waiting for the searches inside it
to finish) before it lets go of the lock, so a write never runs under a lock-free reader."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class FreeReads:
    """The span in which searches read `mirror` without the store lock (a compaction's)."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._mirror: Any = None
        self._readers = 0

    @contextmanager
    def during_compaction(self, mirror: Any) -> Iterator[None]:
        """Open the span for `mirror` (None: a store without an in-sync mirror keeps locked reads) while the caller,
        holding the store lock, compacts; closed, and its readers waited for, before the caller releases the lock."""
        with self._cv:
            self._mirror = mirror
        try:
            yield
        finally:
            with self._cv:
                self._mirror = None
                while self._readers:
                    self._cv.wait()

    @contextmanager
    def mirror(self) -> Iterator[Any]:
        """The mirror to read without the lock while a compaction runs, else None (take the lock)."""
        with self._cv:
            mirror = self._mirror
            if mirror is not None:
                self._readers += 1
        try:
            yield mirror
        finally:
            if mirror is not None:
                with self._cv:
                    self._readers -= 1
                    self._cv.notify_all()


def free_reads(store: Any) -> FreeReads:
    """The store's FreeReads, made on first use (dict.setdefault is atomic under the GIL)."""
    return store.__dict__.setdefault("_free_reads", FreeReads())
