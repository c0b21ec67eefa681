"""A thread pool for LM-bound work that runs the most urgent task first.

`TaskPool(workers)` runs at most `workers` tasks at once (so at most that many LM requests are in flight: the
`lm.max_concurrency` knob). Unlike `concurrent.futures.ThreadPoolExecutor` (first in, first out) it takes the
queued task with the lowest `priority` tuple first, in submission order among equals: the ingestion pipeline
(policies/pipeline.py) gives a scope's next decision precedence over extractions that are already far ahead, so
the sequential decision chains, which bound the wall time, never wait behind a queue of extractions.

Each task runs inside a copy of a `contextvars.Context` (the submitter's by default): DSPy keeps its
`dspy.context(...)` overrides (the LM, callbacks, a usage tracker) in a ContextVar, and so does the cost meter
(policies/metering.py), so a task sees the settings of the code that submitted it, as a DSPy ParallelExecutor
worker does. Threads start on demand and stop at `close()`.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class TaskPool:
    def __init__(self, workers: int, name: str = "memtune-lm"):
        if int(workers) < 1:
            raise ValueError(f"a TaskPool needs at least 1 worker, got {workers!r} (lm.max_concurrency >= 1)")
        self.workers, self.name = int(workers), name
        self._queue: list[tuple[tuple, int, Future, Callable[[], Any], contextvars.Context]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closed = False

    def submit(self, priority: tuple, fn: Callable[[], Any], context: contextvars.Context | None = None) -> Future[Any]:
        """Queue `fn()`; it runs in a copy of `context` (default: the caller's context). Lower priority runs first."""
        future: Future[Any] = Future()
        ctx = context.copy() if context is not None else contextvars.copy_context()
        with self._cond:
            if self._closed:
                raise RuntimeError(f"TaskPool {self.name!r} is closed")
            heapq.heappush(self._queue, (priority, next(self._order), future, fn, ctx))
            if len(self._queue) > self._idle and len(self._threads) < self.workers:  # no idle worker for it
                thread = threading.Thread(target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
            self._cond.notify()
        return future

    def _work(self) -> None:
        while True:
            with self._cond:
                self._idle += 1
                while not self._queue and not self._closed:
                    self._cond.wait()
                self._idle -= 1
                if not self._queue:
                    return
                _, _, future, fn, ctx = heapq.heappop(self._queue)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = ctx.run(fn)
            except BaseException as exc:  # handed to whoever waits on the future
                future.set_exception(exc)
            else:
                future.set_result(result)

    def close(self, cancel: bool = False) -> None:
        """Stop the workers once the queue is empty (`cancel`: drop the queued tasks first) and join them."""
        with self._cond:
            self._closed = True
            if cancel:
                for _, _, future, _, _ in self._queue:
                    future.cancel()
                self._queue.clear()
            self._cond.notify_all()
            threads = list(self._threads)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join()

    def __enter__(self) -> TaskPool:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(cancel=exc_type is not None)
