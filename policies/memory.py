"""Memory: the runtime API an agent (or the REST / MCP servers) calls, over one MemoryPolicy and its store.

Everything in and out is plain JSON-able dicts and lists, named like Mem0's API:

    m = Memory.from_bundle("bundles/mem0-offline-1a2b3c4d", "data/memories")
    m.add([{"role": "user", "content": "I moved to Lisbon"}], user_id="u1", agent_id="planner")
    m.search("where does the user live?", user_id="u1")      # every agent of u1: shared memories
    m.search("where does the user live?", user_id="u1", agent_id="coach")   # only the coach's own

Scopes: a memory belongs to (user_id, agent_id, run_id). On reads an empty field is a wildcard, so memories are
shared between the agents of one user by searching with user_id alone, and private to one agent by passing its
agent_id too. Writes need at least one of the three (a memory nobody owns could never be found or deleted).

Bad input raises ValueError (servers: 422/400) naming the field and the fix; an unknown memory id raises
MemoryNotFound (a KeyError; servers: 404). Every call validates all of its input before it writes anything, so
a bad call never changes stored memories.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from memtune.policies.memory_input import (
    check_filters,
    check_id,
    check_metadata,
    check_scope,
    check_text,
    to_messages,
    to_records,
)
from memtune.policies.policy import MemoryPolicy
from memtune.policies.provenance import keeps_content
from memtune.policies.store import Change
from memtune.policies.types import MemoryRecord, Message, Scope

MAX_TOP_K = 1000


class MemoryNotFound(KeyError):
    """No memory with this id (servers map it to 404)."""

    def __str__(self) -> str:  # KeyError's str() is the repr of its argument
        return str(self.args[0]) if self.args else "memory not found"


class Memory:
    """The runtime memory API over one policy (see the module docstring).

    bundle_version  stamped on every memory this instance writes (the store's policy_version); "" keeps the
                    store's own.
    default_top_k   search() results when top_k is not given; None: the policy's retriever top_k.
    max_text_chars  the longest message, record, query or memory text accepted (mem0 has no limit; an agent that
                    pastes a whole file into add() should get an error, not a 30-second extraction call).
    """

    def __init__(
        self,
        policy: MemoryPolicy,
        *,
        bundle_version: str = "",
        default_top_k: int | None = None,
        max_text_chars: int = 32_000,
    ):
        if not isinstance(policy, MemoryPolicy):
            raise TypeError(f"policy must be a MemoryPolicy, got {type(policy).__name__}")
        if default_top_k is not None and not _is_int(default_top_k, 1, MAX_TOP_K):
            raise ValueError(f"default_top_k must be an int in 1..{MAX_TOP_K} or None, got {default_top_k!r}")
        self.policy, self.store = policy, policy.store
        self._graph = getattr(policy, "graph", None)  # Mem0g: entities and relations kept beside the memories
        if bundle_version:
            self.store.policy_version = bundle_version
        self.bundle_version = self.store.policy_version
        self.default_top_k, self.max_text_chars = default_top_k, int(max_text_chars)
        self._write_lock = threading.RLock()  # the policy's per-scope state (recent messages, summary) is shared

    @classmethod
    def from_bundle(cls, bundle_dir, store_uri, *, lm=None, cache_dir=None, embedder=None, **kwargs) -> Memory:
        """The policy of an exported bundle (memtune-export) over the store at `store_uri`; every memory it writes
        is stamped with the bundle version. A store written with another embedder is refused (ValueError).
        embedder: a ready embedder with the bundle's id and dim (shared between processes' objects, tests);
        kwargs: default_top_k, max_text_chars."""
        from memtune.policies.bundle import load_policy

        try:
            policy, info = load_policy(bundle_dir, store_uri, lm=lm, cache_dir=cache_dir, embedder=embedder)
        except Exception as e:  # Hydra wraps the store's ValueError (e.g. another embedder's store): unwrap it
            cause = e.__cause__
            if type(e).__name__ == "InstantiationException" and isinstance(cause, ValueError):
                raise cause from None
            raise
        return cls(policy, bundle_version=info.version, **kwargs)

    # ---- writes -------------------------------------------------------------------------------------------------
    def add(
        self,
        messages: str | list[dict | Message],
        *,
        user_id: str = "",
        agent_id: str = "",
        run_id: str = "",
        metadata: dict | None = None,
        infer: bool = True,
    ) -> list[dict]:
        """Remember what matters in `messages` (a string is one user message). infer=True runs the policy
        (extraction, then ADD/UPDATE/DELETE/NOOP against similar memories); infer=False stores each message's text
        verbatim as a new memory, with no LM call. Returns one event per operation."""
        scope = check_scope(user_id, agent_id, run_id, write=True)
        msgs = to_messages(messages, self.max_text_chars)
        metadata = check_metadata(metadata)
        if not isinstance(infer, bool):
            raise ValueError(f"infer must be true or false, got {infer!r}")
        with self._write_lock:
            if not infer:
                return self._add_verbatim(msgs, scope, metadata)
            events = [_event(e.op, e.memory_id, e.text, e.old_text) for e in self.policy.add(msgs, scope, metadata)]
            if self._graph is not None:  # a served add is durable: do not hold graph writes for a batch (eval does)
                self._graph.flush()
            return events

    def _add_verbatim(self, msgs: list[Message], scope: Scope, metadata: dict | None) -> list[dict]:
        vectors = self.policy.embedder.embed([m.text for m in msgs])
        changes = [
            Change(
                "ADD",
                m.text,
                v,
                scope=scope,
                provenance=(m.dia_id,) if m.dia_id else (),
                timestamp=m.timestamp,
                metadata=metadata,
            )
            for m, v in zip(msgs, vectors)
        ]
        return [_event(op, mid, c.text, old) for c, (op, mid, old) in zip(changes, self.store.apply(changes))]

    def import_records(
        self,
        records: Iterable[str | Mapping],
        *,
        user_id: str = "",
        agent_id: str = "",
        run_id: str = "",
        metadata: dict | None = None,
    ) -> list[dict]:
        """Bring existing documents or database rows into memory through the policy's own extraction and update
        path (one message per record; the record id becomes the provenance of what is extracted from it), so
        imported knowledge is deduplicated and updated like anything an agent is told. A record is a string or
        {"text", optional "id", "timestamp", "metadata"}. All records are checked before the first is imported.
        Returns the events, each with the "record_id" it came from."""
        scope = check_scope(user_id, agent_id, run_id, write=True)
        metadata = check_metadata(metadata)
        recs = to_records(records, self.max_text_chars)
        events = []
        with self._write_lock:
            for rec in recs:
                meta = {**(metadata or {}), **(rec.metadata or {})} or None
                message = Message(speaker="", text=rec.text, dia_id=rec.id, timestamp=rec.timestamp)
                for e in self.policy.add([message], scope, meta):
                    events.append(_event(e.op, e.memory_id, e.text, e.old_text) | {"record_id": rec.id})
            if self._graph is not None:
                self._graph.flush()
        return events

    def update(self, memory_id: str, text: str, metadata: dict | None = None) -> dict:
        """Replace a memory's text (re-embedded; metadata merged over the old). Recorded in its history.

        Provenance (the turns whose content the memory holds): an edit that keeps every content word of the old
        text (a correction, an addition) keeps it; one that rewrites the content drops it, as the new text comes
        from the caller and no turn (policies/provenance.py). The history row keeps the old provenance either way."""
        memory_id = check_id(memory_id)
        text = check_text(text, "text", self.max_text_chars)
        metadata = check_metadata(metadata)
        with self._write_lock:
            merge = keeps_content(self._record(memory_id).text, text)
            vector = self.policy.embedder.embed([text])[0]
            ((op, mid, old),) = self._apply(Change("UPDATE", text, vector, memory_id, metadata=metadata, merge=merge))
        return _event(op, mid, text, old)

    def delete(self, memory_id: str) -> dict:
        """Delete one memory (its history stays). Raises MemoryNotFound for an unknown id."""
        memory_id = check_id(memory_id)
        with self._write_lock:
            self._record(memory_id)
            ((op, mid, old),) = self._apply(Change("DELETE", memory_id=memory_id))
        return _event(op, mid, "", old)

    def _apply(self, change: Change):
        try:
            return self.store.apply([change])
        except KeyError as e:  # deleted between the look-up and the write
            raise MemoryNotFound(f"no memory with id {change.memory_id!r}") from e

    def delete_all(self, *, user_id: str = "", agent_id: str = "", run_id: str = "") -> int:
        """Delete every memory in the scope (at least one id is required; reset() wipes everything) and forget the
        policy's rolling context (recent messages, summary) of the scopes inside it. Returns how many."""
        scope = check_scope(user_id, agent_id, run_id, write=True)
        with self._write_lock:
            n = self.store.delete_all(scope)
            if self._graph is not None:  # a deleted user's entities and relations go too
                self._graph.delete_all(scope)
            self.policy.reset_state(scope)
        return n

    def reset(self) -> None:
        """Delete every memory, the whole history and all stored versions, and forget all rolling context."""
        with self._write_lock:
            self.store.reset()
            if self._graph is not None:
                self._graph.reset()
            self.policy.reset_state()

    # ---- reads --------------------------------------------------------------------------------------------------
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
    ) -> list[dict]:
        """The memories most relevant to `query` in the scope (empty fields: wildcards), best first, with "score"
        (cosine similarity). filters: metadata key -> value, all must be equal (applied after the scope);
        threshold: drop memories scored below it."""
        query = check_text(query, "query", self.max_text_chars)
        scope = check_scope(user_id, agent_id, run_id, write=False)
        if top_k is None:
            top_k = self.default_top_k or self.policy.retriever.knobs.top_k
        if not _is_int(top_k, 1, MAX_TOP_K):
            raise ValueError(f"top_k must be an int in 1..{MAX_TOP_K}, got {top_k!r}")
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not -1.0 <= threshold <= 1.0
        ):
            raise ValueError(f"threshold must be a number in [-1, 1] (cosine similarity) or null, got {threshold!r}")
        filters = check_filters(filters)
        vector = self.policy.embedder.embed([query])[0]
        fetch = top_k if not filters else max(4 * top_k, 50)
        while True:  # with filters: over-fetch, filter, and fetch more while the scope has more to give
            hits = self._retrieve(query, vector, scope, fetch, threshold)
            kept = [h for h in hits if all(_meta_equal(h.metadata, k, v) for k, v in filters.items())]
            if len(kept) >= top_k or len(hits) < fetch:
                break
            fetch *= 4
        return [_memory(h, self.store.embedder_id) for h in kept[:top_k]]

    def _retrieve(self, query: str, vector, scope: Scope, k: int, threshold: float | None) -> list[MemoryRecord]:
        """MemoryPolicy.search() with this call's top_k (and threshold, when given) instead of the retriever's own
        knobs: the vector memories, and the graph's triplets when the policy has graph memory (Mem0g)."""
        retriever = self.policy.retriever
        knobs = dataclasses.replace(
            retriever.knobs, top_k=k, **({"threshold": threshold} if threshold is not None else {})
        )
        return self.policy.search(
            query, scope, vector=vector, retriever=_with_knobs(retriever, knobs) if knobs != retriever.knobs else None
        )

    def get(self, memory_id: str) -> dict:
        """One memory by id; raises MemoryNotFound."""
        return _memory(self._record(check_id(memory_id)), self.store.embedder_id)

    def _record(self, memory_id: str) -> MemoryRecord:
        rec = self.store.get(memory_id)
        if rec is None:
            raise MemoryNotFound(f"no memory with id {memory_id!r}")
        return rec

    def get_all(
        self, *, user_id: str = "", agent_id: str = "", run_id: str = "", limit: int | None = None
    ) -> list[dict]:
        """The memories of a scope (empty fields: wildcards), oldest first, at most `limit`."""
        scope = check_scope(user_id, agent_id, run_id, write=False)
        if limit is not None and not _is_int(limit, 0, None):
            raise ValueError(f"limit must be an int >= 0 or null, got {limit!r}")
        return [_memory(r, self.store.embedder_id) for r in self.store.get_all(scope, limit)]

    def history(self, memory_id: str) -> list[dict]:
        """Every change to a memory, oldest first ([] for an id never written): {"memory_id", "op", "old_text",
        "new_text", "time", "seq", "provenance", "user_id", "agent_id", "run_id", "metadata", "policy_version"}."""
        return self.store.history(check_id(memory_id))

    def close(self) -> None:
        """Write pending history (and pending graph writes) and release the store."""
        if self._graph is not None:
            self._graph.close()
        self.store.close()

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _with_knobs(retriever, knobs):
    clone = object.__new__(type(retriever))
    clone.__dict__.update(retriever.__dict__)
    clone.knobs = knobs
    return clone


def _is_int(value: Any, lo: int, hi: int | None) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= lo and (hi is None or value <= hi)


def _meta_equal(meta: dict, key: str, value: Any) -> bool:
    """JSON equality: 1 == 1.0, but true is not 1 and "1" is not 1."""
    if key not in meta:
        return False
    stored = meta[key]
    return (
        stored == value
        and isinstance(stored, bool) == isinstance(value, bool)
        and isinstance(stored, str) == isinstance(value, str)
    )


def _event(op: str, memory_id: str | None, text: str, old_text: str) -> dict:
    """mem0's event shape. "memory" is the text after the event: the new text for ADD / UPDATE, the redundant
    candidate for NOOP, and (as mem0 does) the deleted text for DELETE."""
    return {"event": op, "id": memory_id, "memory": text if op != "DELETE" else old_text, "previous_memory": old_text}


def _memory(r: MemoryRecord, embedder_id: str) -> dict:
    return {
        "id": r.id,
        "memory": r.text,
        "user_id": r.scope.user_id,
        "agent_id": r.scope.agent_id,
        "run_id": r.scope.run_id,
        "provenance": list(r.provenance),
        "timestamp": r.timestamp,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "metadata": json.loads(json.dumps(r.metadata)),
        "score": r.score,
        "policy_version": r.policy_version,
        "embedder_id": r.embedder_id or embedder_id,
    }
