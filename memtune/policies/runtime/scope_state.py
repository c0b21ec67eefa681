"""Each scope's rolling context (recent messages, messages pending for the summary, the summary) lives in the store
(store/scope_table.py), so a restarted server extracts with the same context as one that never stopped, and a
server that has seen many users holds only the ones it is busy with.

Bounds, from the policy's own knobs, so that keeping less changes nothing the policy reads:
* recent: the last `recent_messages` (m) messages the LLM extractor reads (the chunk extractor reads
  `chunk_turns` - 1, the heuristic and oracle extractors none; one this module does not know keeps the policy's
  RECENT_KEPT). The extractor never sees more than these, so a prompt built from the stored context is
  byte-identical to one built from the longer in-process list (tests/test_scope_state.py);
* pending: fewer than `summarizer.window` messages (the add that fills the window folds them into the summary);
  none when the policy has no summarizer (nothing would ever read them);
* summary: as the summarizer wrote it.

`Memory` wraps every add of a scope in `using(scope)`, inside that scope's lock (scope_locks.py): load the stored
context if this process does not hold it, run the add, save what changed (one row written). An add that fails
drops the in-process context, so the next add starts from the last saved one. At most `max_scopes` scopes are
held in process memory (least recently used go; the store still has them).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict

from ..policy import RECENT_KEPT, MemoryPolicy
from ..stages.extract import ChunkExtractor, HeuristicExtractor, LLMExtractor, ObservationExtractor
from ..store.scope_table import ScopeStateTable
from ..store.sql import in_scope
from ..types import Scope

MAX_SCOPES = 4096  # scopes whose context a process holds at once (each <= m + window messages: ~6 KB)


def recent_kept(extractor) -> int:
    """How many recent messages the extractor can read (see the module docstring); never more than the policy
    keeps in process (RECENT_KEPT), so a restart changes nothing."""
    if isinstance(extractor, LLMExtractor):  # the last m of them (extract.py)
        return min(RECENT_KEPT, max(int(extractor.knobs.recent_messages), 0))
    if isinstance(extractor, ChunkExtractor):  # (recent + new)[-chunk_turns:], at least one new message
        return min(RECENT_KEPT, max(int(extractor.knobs.chunk_turns) - 1, 0))
    if isinstance(extractor, (HeuristicExtractor, ObservationExtractor)):
        return 0  # they read the new messages only: nothing to keep (and no write per add)
    return RECENT_KEPT  # an extractor this module does not know: what the policy itself keeps


class ScopeStates:
    """Loads, bounds and saves the policy's per-scope context (see the module docstring)."""

    def __init__(self, policy: MemoryPolicy, max_scopes: int = MAX_SCOPES):
        self.policy, self.max_scopes = policy, int(max_scopes)
        self.table = ScopeStateTable(policy.store)
        self.keep_recent = recent_kept(policy.extractor)
        self._saved: OrderedDict[Scope, tuple] = OrderedDict()  # scopes held in process, with what was saved
        self._busy: dict[Scope, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def using(self, scope: Scope) -> Iterator[None]:
        """Around one add of `scope` (the caller holds the scope's lock)."""
        with self._lock:
            self._busy[scope] = self._busy.get(scope, 0) + 1
            held = scope in self._saved
        try:
            if not held:
                self._load(scope)
            yield
            self._save(scope)
        except BaseException:
            with self._lock:
                self._saved.pop(scope, None)
            self.policy.drop_scope_state(scope)  # the next add reloads the last saved context
            raise
        finally:
            with self._lock:
                self._busy[scope] -= 1
                if not self._busy[scope]:
                    del self._busy[scope]
                self._evict()

    def _load(self, scope: Scope) -> None:
        stored = self.table.get(scope)
        state = self.policy.scope_state(scope)
        if stored is not None:
            state.recent, state.pending, state.summary = stored
        with self._lock:
            self._saved[scope] = _snapshot(state)

    def _save(self, scope: Scope) -> None:
        state = self.policy.scope_state(scope)
        state.recent = state.recent[-self.keep_recent :] if self.keep_recent else []
        if not self.policy.summarizer.enabled:
            state.pending = []  # no summarizer: nothing reads them (and in process they would only grow)
        snap = _snapshot(state)
        with self._lock:
            unchanged = self._saved.get(scope) == snap
        if not unchanged:
            self.table.put(scope, list(state.recent), list(state.pending), state.summary)
        with self._lock:
            self._saved[scope] = snap
            self._saved.move_to_end(scope)

    def _evict(self) -> None:
        """Drop the least recently used idle scopes past max_scopes (called with self._lock held)."""
        excess = len(self._saved) - self.max_scopes
        for scope in list(self._saved):
            if excess <= 0:
                break
            if scope not in self._busy:
                del self._saved[scope]
                self.policy.drop_scope_state(scope)
                excess -= 1

    def forget(self, scope: Scope | None) -> None:
        """Delete the stored context of every scope inside `scope` (None: all) and the in-process copies."""
        if scope is None:
            self.table.reset()
        else:
            self.table.delete(scope)
        with self._lock:
            for held in [s for s in self._saved if scope is None or in_scope(asdict(s), scope)]:
                del self._saved[held]
        self.policy.reset_state(scope)

    def held(self) -> int:
        with self._lock:
            return len(self._saved)


def _snapshot(state) -> tuple:
    return tuple(state.recent), tuple(state.pending), state.summary
