"""A thread pool for LM-bound work that runs the most urgent task first.

`TaskPool(workers)` runs at most `workers` tasks at once (so at most that many LM requests are in flight: the
`lm.max_concurrency` knob). Unlike `concurrent.futures.ThreadPoolExecutor` (first in, first out) it takes the
queued task with the lowest `priority` tuple first, in submission order among equals: the ingestion pipeline
(policies/pipeline.py) gives a scope's next decision precedence over extractions that are already far ahead, so
the sequential decision chains, which bound the wall time, never wait behind a queue of extractions.

Urgent tasks (priority[0] == 0) also get reserved workers: while `reserve` is n, other tasks occupy at most
`workers - n` of them, so an urgent task that becomes ready finds a worker at once instead of waiting for an
extraction to return (a decision chain would otherwise lose up to one LM latency per step). `reserving(n)` raises
the reserve for a block (one worker per decision chain; capped at workers - 1).

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
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
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
        self._reserve = 0  # workers kept for urgent tasks (priority[0] == 0)
        self._running_other = 0  # non-urgent tasks running now

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

    def _startable(self) -> bool:
        if not self._queue:
            return False
        urgent = self._queue[0][0][:1] == (0,)
        return urgent or self._running_other < self.workers - min(self._reserve, self.workers - 1)

    def _work(self) -> None:
        while True:
            with self._cond:
                self._idle += 1
                while not self._startable() and not (self._closed and not self._queue):
                    self._cond.wait()
                self._idle -= 1
                if not self._queue:
                    return
                priority, _, future, fn, ctx = heapq.heappop(self._queue)
                other = priority[:1] != (0,)
                self._running_other += other
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        result = ctx.run(fn)
                    except BaseException as exc:  # handed to whoever waits on the future
                        future.set_exception(exc)
                    else:
                        future.set_result(result)
            finally:
                with self._cond:
                    self._running_other -= other
                    self._cond.notify_all()  # a reserved slot may have freed up for a waiting task

    @contextmanager
    def reserving(self, n: int) -> Iterator[None]:
        """Keep `n` more workers for urgent tasks during the block."""
        with self._cond:
            self._reserve += n
        try:
            yield
        finally:
            with self._cond:
                self._reserve -= n
                self._cond.notify_all()

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
