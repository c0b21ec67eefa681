"""Per-scope write locks of the Memory API: adds of one scope run one at a time and in arrival order, adds of
scopes that cannot touch each other's memories run at once (their extraction and decision LM calls overlap).

Why scopes "overlap" and not "are equal": an add in scope S reads the memories *inside* S (empty fields are
wildcards) and may update or delete any of them, so an add for user u1 alone (agent_id "") decides against the
memories of u1's planner too. Two scopes conflict when some memory could lie inside both: no field is set in both
with different values. (u1) conflicts with (u1, planner); (u1, planner) does not with (u1, coach) nor with (u2);
the empty scope (reset, purge) conflicts with everything.

Fair and ordered: a waiter goes ahead only when no held scope and no *earlier* waiter conflicts with it, so one
scope's writes keep their arrival order and a stream of small scopes cannot starve a wide one (delete_all of a
user). Reads take no lock: the store serves each read from one committed version.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ..types import Scope

_FIELDS = ("user_id", "agent_id", "run_id")


def overlap(a: Scope, b: Scope) -> bool:
    """Whether some memory could lie inside both scopes (empty fields are wildcards)."""
    return all(not getattr(a, f) or not getattr(b, f) or getattr(a, f) == getattr(b, f) for f in _FIELDS)


class ScopeLocks:
    """`with locks.hold(scope):` blocks while a conflicting scope is held or was asked for earlier."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held: dict[int, Scope] = {}  # ticket -> scope, for the holders
        self._waiting: dict[int, Scope] = {}  # ticket -> scope, in arrival order (dicts keep insertion order)
        self._tickets = itertools.count()
        self._owner: dict[int, int] = {}  # ticket -> thread id (re-entry by the holding thread)

    def _blocked(self, ticket: int, scope: Scope) -> bool:
        me = threading.get_ident()
        mine = False
        for t, held in self._held.items():
            if overlap(held, scope):
                if self._owner[t] != me:
                    return True
                mine = True
        if mine:  # re-entry by a thread that holds an overlapping scope: earlier waiters wait for it anyway
            return False
        for t, waiting in self._waiting.items():
            if t >= ticket:
                break
            if overlap(waiting, scope):
                return True
        return False

    @contextmanager
    def hold(self, scope: Scope) -> Iterator[None]:
        with self._cond:
            ticket = next(self._tickets)
            self._waiting[ticket] = scope
            try:
                while self._blocked(ticket, scope):
                    self._cond.wait()
            except BaseException:  # interrupted while waiting: those queued behind this one may go now
                del self._waiting[ticket]
                self._cond.notify_all()
                raise
            del self._waiting[ticket]
            self._held[ticket] = scope
            self._owner[ticket] = threading.get_ident()
        try:
            yield
        finally:
            with self._cond:
                del self._held[ticket], self._owner[ticket]
                self._cond.notify_all()

    def held(self) -> list[Scope]:
        """The scopes held right now (for tests and diagnostics)."""
        with self._cond:
            return list(self._held.values())
