"""Ingest the message pairs of several scopes with their LM calls in parallel, with exactly the result of calling
`MemoryPolicy.add` pair by pair, scope by scope.

What depends on what, for one scope (MemoryPolicy.add):

* extraction of pair i reads the pair, the messages before it (the last RECENT_KEPT) and the rolling summary as it
  was before pair i, never the store: it may run as soon as that summary is known;
* a summary refresh folds a window of messages into the previous summary: the refreshes of a scope form a chain
  that depends on the messages only (where they fall is fixed by the message counts);
* embedding the facts of pair i needs only the facts (the vectors do not depend on what else is embedded with
  them), so it runs in the extraction's task;
* the commit of pair i (graph update, fetch the s similar memories, decide, write) reads the store the commits
  before it wrote: a scope's commits run one at a time, in message order.

Scopes share nothing but the store (whose writes are serialised by its lock) and the policy's counters (locked),
so several scopes ingest at once. `ingest_scopes` plans every scope's pairs up front (the recent messages and the
summary version each extraction reads), then runs the three kinds of step as tasks on a `TaskPool`: a scope's
next commit first (the longest remaining chain first, since the decision chains bound the wall time), then
summary refreshes, then extractions in pair order. At the end each scope's rolling state (recent, pending,
summary) is what the sequential calls would have left, so later `add` calls carry on from it.
"""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .taskpool import TaskPool
from .types import Event, Fact, Message, Scope

if TYPE_CHECKING:
    from .policy import MemoryPolicy


# The (scope, batch index) a pipeline task works on: the dry run (optimize/evaluation/dry_run.py) files each LM
# call under the message pair it was made for (a refresh under the pair that filled its window).
CURRENT_PAIR: contextvars.ContextVar[tuple[Scope, int] | None] = contextvars.ContextVar("memtune_pair", default=None)


class _Run:
    """What the scopes of one ingest_scopes call share: the first error, which stops every scope."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.errors: list[BaseException] = []

    @property
    def aborted(self) -> bool:
        return bool(self.errors)


class ScopeIngest:
    """The planned ingestion of one scope's message batches (each a pair, as `MemoryPolicy.add` takes them).

    `on_commit(i, events)` runs after the commit of batch i, in batch order (progress, per-session hooks)."""

    def __init__(
        self,
        policy: MemoryPolicy,
        batches: Sequence[Sequence[Message]],
        scope: Scope,
        metadata: dict | None = None,
        on_commit: Callable[[int, list[Event]], None] | None = None,
    ):
        from .policy import _ScopeState  # the same state object add() keeps, so both agree on what it holds

        for i, batch in enumerate(batches):
            if not batch:
                raise ValueError(f"ingest of scope {scope}: batch {i} has no messages (add() needs at least one)")
        self.policy, self.scope, self.metadata, self.on_commit = policy, scope, metadata, on_commit
        self.batches = [list(b) for b in batches]
        held = policy._state.get(scope) or _ScopeState()
        sim = _ScopeState(list(held.recent), list(held.pending), held.summary)
        self.recent: list[list[Message]] = []  # what extraction i reads as the recent messages
        self.slot: list[int] = []  # which summary version extraction i reads (0: the summary held before)
        self.folds: list[list[Message]] = []  # refresh r (1-based) folds folds[r - 1] into summary r - 1
        self.fold_at: list[int] = []  # the batch whose messages filled the window of refresh r (1-based: [r - 1])
        for i, batch in enumerate(self.batches):
            self.recent.append(sim.recent)
            self.slot.append(len(self.folds))
            due = sim.push(batch, policy.summarizer)
            if due is not None:
                self.folds.append(due)
                self.fold_at.append(i)
        self._final = sim
        self.summaries: list[str | None] = [held.summary] + [None] * len(self.folds)
        self.facts: dict[int, list[Fact]] = {}
        self.vectors: dict[int, Any] = {}  # the facts' embeddings, computed with the extraction
        self.next_commit, self.committing, self.refreshed = 0, False, 0
        self.outstanding, self.done = 0, False
        self._lock = threading.Lock()
        self._run: _Run | None = None
        self._pool: TaskPool | None = None
        self._context: contextvars.Context | None = None

    # ---- scheduling (self._lock held) ---------------------------------------------------------------------
    def start(self, pool: TaskPool, context: contextvars.Context, run: _Run) -> None:
        self._pool, self._context, self._run = pool, context, run
        with self._lock:
            if self.folds:
                self._spawn((1, 1), lambda: self._refresh(1))
            self._spawn_extractions(0)
            self._check_done()

    def _spawn(self, priority: tuple, fn: Callable[[], None]) -> None:
        assert self._pool is not None and self._run is not None
        if self._run.aborted:
            return
        self.outstanding += 1
        self._pool.submit(priority, lambda: self._guarded(fn), self._context)

    def _spawn_extractions(self, slot: int) -> None:
        for i, s in enumerate(self.slot):
            if s == slot:
                self._spawn((2, i), functools.partial(self._extract, i))

    def _pump(self) -> None:
        if not self.committing and self.next_commit in self.facts:
            self.committing = True
            i = self.next_commit
            self._spawn((0, i - len(self.batches)), lambda: self._commit(i))  # the longest remaining chain first

    def _check_done(self) -> None:
        assert self._run is not None
        complete = self.next_commit == len(self.batches) and self.refreshed == len(self.folds)
        if self.done or self.outstanding or not (complete or self._run.aborted):
            return
        if complete:  # the rolling state the sequential add() calls would have left
            final = self._final
            final.summary = self.summaries[-1] or ""
            self.policy._state[self.scope] = final
        self.done = True
        with self._run.cond:
            self._run.cond.notify_all()

    def _guarded(self, fn: Callable[[], None]) -> None:
        assert self._run is not None
        try:
            fn()
        except BaseException as exc:
            with self._run.cond:
                self._run.errors.append(exc)
        finally:
            with self._lock:
                self.outstanding -= 1
                self._check_done()

    # ---- the three steps (run in pool threads) ------------------------------------------------------------
    def _refresh(self, r: int) -> None:
        policy = self.policy
        CURRENT_PAIR.set((self.scope, self.fold_at[r - 1]))  # each task runs in its own copy of the context
        with policy._running():
            summary = policy.summarizer.refresh(self.summaries[r - 1] or "", self.folds[r - 1])
        with self._lock:
            self.summaries[r] = summary
            self.refreshed += 1
            if r < len(self.folds):
                self._spawn((1, r + 1), lambda: self._refresh(r + 1))
            self._spawn_extractions(r)

    def _extract(self, i: int) -> None:
        policy = self.policy
        CURRENT_PAIR.set((self.scope, i))
        with policy._running():
            facts = policy.extractor.extract(self.batches[i], self.recent[i], self.summaries[self.slot[i]] or "")
        vectors = policy._embed([f.text for f in facts]) if facts else None  # needs no store either
        with self._lock:
            self.facts[i] = facts
            self.vectors[i] = vectors
            self._pump()

    def _commit(self, i: int) -> None:
        policy = self.policy
        CURRENT_PAIR.set((self.scope, i))
        with self._lock:
            facts, vectors = self.facts.pop(i), self.vectors.pop(i)
        if policy.graph is not None:
            with policy._running():
                policy.graph.add(list(self.batches[i]), self.scope)
        events = policy.commit(facts, self.scope, self.metadata, vectors)
        if self.on_commit is not None:
            self.on_commit(i, events)
        with self._lock:
            self.next_commit, self.committing = i + 1, False
            self._pump()


def ingest_scopes(jobs: Sequence[ScopeIngest], pool: TaskPool, context: contextvars.Context | None = None) -> None:
    """Run the planned ingestion of every job (one per scope) on `pool`; returns when all are done. The first error
    stops every scope (tasks already running finish) and is raised here. Tasks run in copies of `context` (default:
    the caller's: its DSPy settings and metering)."""
    scopes = [job.scope for job in jobs]
    if len(set(scopes)) != len(scopes):
        raise ValueError("ingest_scopes: a scope appears twice; its batches must be one job, in order")
    run, context = _Run(), context or contextvars.copy_context()
    with pool.reserving(len(jobs)):  # a worker for each scope's next commit, so its chain never waits for one
        for job in jobs:
            job.start(pool, context, run)
        try:
            with run.cond:
                while not all(job.done for job in jobs):
                    run.cond.wait(timeout=1.0)
        except BaseException as exc:  # e.g. KeyboardInterrupt: stop scheduling, let the running tasks end
            with run.cond:
                run.errors.append(exc)
            raise
    if run.errors:
        raise run.errors[0]


def ingest_pairs(
    policy: MemoryPolicy,
    batches: Sequence[Sequence[Message]],
    scope: Scope,
    max_concurrency: int,
    metadata: dict | None = None,
) -> None:
    """`policy.add(batch, scope, metadata)` for every batch, with the scope's extractions running ahead of its
    commits on `max_concurrency` threads (1: exactly the add() loop, no threads)."""
    if max_concurrency <= 1:
        for batch in batches:
            policy.add(list(batch), scope, metadata)
        return
    with TaskPool(max_concurrency) as pool:
        ingest_scopes([ScopeIngest(policy, batches, scope, metadata)], pool)
