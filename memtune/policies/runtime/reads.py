"""The read half of the Memory API (policies/runtime/memory.py): search (with a Mem0g policy's graph relations), get,
get_all, history, and the scope checks every id-addressed call shares (get / update / delete / history).

An id-addressed call with a scope answers MemoryNotFound for a memory outside it, in the same words as for an
unknown id, so a caller learns nothing about other scopes; a call without user_id needs the cross-user opt-in
(input.check_cross_user).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ..graph.retrieve import is_graph_record
from ..types import MemoryRecord, Scope
from .input import check_cross_user, check_filters, check_id, check_scope, check_text
from .output import describe, inside, meta_equal, relation
from .output import memory as memory_dict

if TYPE_CHECKING:
    from ..policy import MemoryPolicy
    from ..store.store import MemoryStore

MAX_TOP_K = 1000


class MemoryNotFound(KeyError):
    """No memory with this id (servers map it to 404)."""

    def __str__(self) -> str:  # KeyError's str() is the repr of its argument
        return str(self.args[0]) if self.args else "memory not found"


class MemoryReads:
    """Mixed into Memory: needs self.policy, self.store, self.default_top_k, self.max_text_chars and
    self.allow_cross_user."""

    policy: MemoryPolicy
    store: MemoryStore
    default_top_k: int | None
    max_text_chars: int
    allow_cross_user: bool

    def search(
        self,
        query: str,
        *,
        user_id: str = "",
        agent_id: str = "",
        run_id: str = "",
        top_k: int | None = None,
        filters: dict | None = None,
        threshold: float | None = None,
        cross_user: bool = False,
        include_history: bool | None = None,
    ) -> list[dict]:
        """The stored memories most relevant to `query` in the scope (empty fields: wildcards), best first, with
        "score" (cosine similarity), at most top_k. filters: metadata key -> value, all must be equal (applied after
        the scope); threshold: drop memories scored below it. include_history: true also returns memories that no
        longer hold (soft invalidation), marked "valid": false with "invalid_at" and "superseded_by"; false only
        those that hold; null (default) as the policy's retriever says (`include_history`: never, always,
        when_asked). A Mem0g policy's graph triplets are not memories: search_with_relations() returns them too."""
        return self._search(
            query, user_id, agent_id, run_id, top_k, filters, threshold, cross_user, False, include_history
        )[0]

    def search_with_relations(
        self,
        query: str,
        *,
        user_id: str = "",
        agent_id: str = "",
        run_id: str = "",
        top_k: int | None = None,
        filters: dict | None = None,
        threshold: float | None = None,
        cross_user: bool = False,
        include_history: bool | None = None,
    ) -> dict:
        """Mem0's search answer: {"results": search(...), "relations": [relation, ...]}. "relations" are the graph
        triplets the policy retrieves for the query (Mem0g; [] without graph memory), best first, each with its
        source, relationship, destination, sentence and validity (output.relation). top_k and filters
        apply to the stored memories (triplets have their own knobs, policy.graph.retrieval, and no metadata);
        threshold to both; include_history as in search(). A graph-only policy (policy.graph=only) answers from
        triplets alone: no "results"."""
        memories, relations = self._search(
            query, user_id, agent_id, run_id, top_k, filters, threshold, cross_user, True, include_history
        )
        return {"results": memories, "relations": relations}

    def _search(
        self, query, user_id, agent_id, run_id, top_k, filters, threshold, cross_user, with_relations, history=None
    ):
        query = check_text(query, "query", self.max_text_chars)
        if history is not None and not isinstance(history, bool):
            raise ValueError(f"include_history must be true, false or null, got {history!r}")
        scope = check_scope(user_id, agent_id, run_id, write=False)
        check_cross_user(scope, cross_user, self.allow_cross_user, "search")
        if top_k is None:
            top_k = self.default_top_k or self.policy.retriever.knobs.top_k
        if not is_int(top_k, 1, MAX_TOP_K):
            raise ValueError(f"top_k must be an int in 1..{MAX_TOP_K}, got {top_k!r}")
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not -1.0 <= threshold <= 1.0
        ):
            raise ValueError(f"threshold must be a number in [-1, 1] (cosine similarity) or null, got {threshold!r}")
        filters = check_filters(filters)
        fetch, relations = (top_k if not filters else max(4 * top_k, 50)), None
        early = self.policy.start_keyword(query, scope, self._retriever_for(fetch, threshold, history))
        vector = self.policy.embedder.embed([query])[0]  # hybrid: while the keyword search runs
        while True:  # with filters: over-fetch, filter, and fetch more while the scope has more to give
            hits = self._retrieve(query, vector, scope, fetch, threshold, history, early)
            early = None
            memories = [h for h in hits if not is_graph_record(h)]
            if relations is None:  # the graph's answer does not depend on how many memories are fetched
                relations = [h for h in hits if is_graph_record(h) and (threshold is None or h.score >= threshold)]
            kept = [h for h in memories if all(meta_equal(h.metadata, k, v) for k, v in filters.items())]
            if len(kept) >= top_k or len(memories) < fetch:
                break
            fetch *= 4
        results = [memory_dict(h, self.store.embedder_id) for h in kept[:top_k]]
        return results, ([relation(h) for h in relations] if with_relations else [])

    def _retrieve(
        self, query: str, vector, scope: Scope, k: int, threshold: float | None, history=None, prefetched=None
    ) -> list[MemoryRecord]:
        """MemoryPolicy.search() with this call's top_k (and threshold and include_history, when given) instead of
        the retriever's own knobs: the vector memories, and the graph's triplets when the policy has graph memory
        (Mem0g). `prefetched`: policy.start_keyword()'s keyword search for this query, or None."""
        retriever = self._retriever_for(k, threshold, history)
        return self.policy.search(
            query,
            scope,
            vector=vector,
            retriever=None if retriever is self.policy.retriever else retriever,
            prefetched=prefetched,
        )

    def _retriever_for(self, k: int, threshold: float | None, history: bool | None):
        """The policy's retriever with this call's top_k (threshold, include_history), or itself when they match."""
        retriever = self.policy.retriever
        given: dict = {"threshold": threshold} if threshold is not None else {}
        if history is not None and hasattr(retriever.knobs, "include_history"):
            given["include_history"] = "always" if history else "never"
        knobs = dataclasses.replace(retriever.knobs, top_k=k, **given)
        return _with_knobs(retriever, knobs) if knobs != retriever.knobs else retriever

    def get(
        self, memory_id: str, *, user_id: str = "", agent_id: str = "", run_id: str = "", cross_user: bool = False
    ) -> dict:
        """One memory by id; raises MemoryNotFound for an unknown id or one outside the given scope."""
        memory_id, scope = self._addressed(memory_id, user_id, agent_id, run_id, cross_user, "get")
        return memory_dict(self._record(memory_id, scope), self.store.embedder_id)

    def _addressed(self, memory_id, user_id, agent_id, run_id, cross_user, call: str) -> tuple[str, Scope | None]:
        """The checked id and the caller's scope (None: no scope given, the owner's unchecked look-up)."""
        memory_id = check_id(memory_id)
        scope = check_scope(user_id, agent_id, run_id, write=False)
        if scope == Scope():
            check_cross_user(scope, cross_user, True, call)  # only checks that cross_user is a bool
            return memory_id, None
        check_cross_user(scope, cross_user, self.allow_cross_user, call)
        return memory_id, scope

    def _record(self, memory_id: str, scope: Scope | None = None) -> MemoryRecord:
        rec = self.store.get(memory_id)
        if rec is None or (scope is not None and not inside(rec.scope, scope)):
            raise MemoryNotFound(not_found(memory_id, scope))
        return rec

    def get_all(
        self,
        *,
        user_id: str = "",
        agent_id: str = "",
        run_id: str = "",
        limit: int | None = None,
        cross_user: bool = False,
        include_history: bool = False,
    ) -> list[dict]:
        """The memories of a scope (empty fields: wildcards), oldest first, at most `limit`; with include_history
        also those that no longer hold (soft invalidation), marked "valid": false."""
        scope = check_scope(user_id, agent_id, run_id, write=False)
        check_cross_user(scope, cross_user, self.allow_cross_user, "get_all")
        if limit is not None and not is_int(limit, 0, None):
            raise ValueError(f"limit must be an int >= 0 or null, got {limit!r}")
        if not isinstance(include_history, bool):
            raise ValueError(f"include_history must be true or false, got {include_history!r}")
        records = self.store.get_all(scope, limit, include_invalid=include_history)
        return [memory_dict(r, self.store.embedder_id) for r in records]

    def history(
        self, memory_id: str, *, user_id: str = "", agent_id: str = "", run_id: str = "", cross_user: bool = False
    ) -> list[dict]:
        """Every change to a memory, oldest first ([] for an id never written, or one outside the given scope):
        {"memory_id", "op", "old_text", "new_text", "time", "seq", "provenance", "user_id", "agent_id", "run_id",
        "metadata", "policy_version"}. A deleted memory keeps its history; delete_all blanks its texts."""
        memory_id, scope = self._addressed(memory_id, user_id, agent_id, run_id, cross_user, "history")
        rows = self.store.history(memory_id)
        if (
            scope is not None
            and rows
            and not inside(Scope(rows[0]["user_id"], rows[0]["agent_id"], rows[0]["run_id"]), scope)
        ):
            return []
        return rows


def not_found(memory_id: str | None, scope: Scope | None) -> str:
    """The same words for an unknown id and for one outside the caller's scope."""
    return f"no memory with id {memory_id!r}" + (f" in {describe(scope)}" if scope is not None else "")


def _with_knobs(retriever, knobs):
    clone = object.__new__(type(retriever))
    clone.__dict__.update(retriever.__dict__)
    clone.knobs = knobs
    return clone


def is_int(value: Any, lo: int, hi: int | None) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= lo and (hi is None or value <= hi)
