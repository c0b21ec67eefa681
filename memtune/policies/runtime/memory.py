"""Memory: the runtime API an agent (or the REST / MCP servers) calls, over one MemoryPolicy and its store.

Everything in and out is plain JSON-able dicts and lists, named like Mem0's API:

    m = Memory.from_bundle("bundles/mem0-offline-1a2b3c4d", "data/memories")
    m.add([{"role": "user", "content": "I moved to Lisbon"}], user_id="u1", agent_id="planner")
    m.search("where does the user live?", user_id="u1")      # every agent of u1: shared memories
    m.search("where does the user live?", user_id="u1", agent_id="coach")   # only the coach's own

Scopes: a memory belongs to (user_id, agent_id, run_id). On reads an empty field is a wildcard, so memories are
shared between the agents of one user by searching with user_id alone, and private to one agent by passing its
agent_id too. Writes need at least one of the three (a memory nobody owns could never be found or deleted).

Tenancy: user_id keeps users apart. A call that names no user_id (agent_id or run_id alone, or nothing) would reach
every user's memories, so search / get_all / delete_all and scoped id calls refuse it with a ValueError unless the
call passes cross_user=True or the Memory was built with allow_cross_user=True (a deployment without users).
get / update / delete / history take the caller's scope too: a memory outside it raises MemoryNotFound, exactly
like an unknown id (a caller learns nothing about other scopes). Without any scope they look the id up unchecked:
that is the in-process owner of the store; the REST / MCP servers and the pyfunc model always require a scope.

    m.search_with_relations("where does the user live?", user_id="u1")   # Mem0g: {"results": [...], "relations": [...]}
    m.get(memory_id, user_id="u1")                                       # MemoryNotFound if it is not u1's

Graph memory (Mem0g): search() returns the stored memories only (top_k of them); search_with_relations() adds the
graph's triplets under "relations" (output.py), as Mem0's API does.

Forgetting: delete_all(scope) deletes the scope's memories and graph and blanks the text (and metadata) of every
history row of the scope; older LanceDB versions and not yet compacted data files still hold the text until
purge_versions() (or `memtune-purge STORE`) rewrites the tables and drops every old version.

Bad input raises ValueError (servers: 422/400) naming the field and the fix; an unknown memory id raises
MemoryNotFound (a KeyError; servers: 404). Every call validates all of its input before it writes anything, so
a bad call never changes stored memories.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from ..policy import MemoryPolicy
from ..provenance import keeps_content
from ..store.changes import Change
from ..types import Message, Scope
from .input import (
    check_cross_user,
    check_metadata,
    check_scope,
    check_text,
    to_messages,
    to_records,
)
from .output import event
from .reads import MAX_TOP_K, MemoryNotFound, MemoryReads, is_int, not_found


class Memory(MemoryReads):
    """The runtime memory API over one policy (see the module docstring).

    bundle_version  stamped on every memory this instance writes (the store's policy_version); "" keeps the
                    store's own.
    default_top_k   search() results when top_k is not given; None: the policy's retriever top_k.
    max_text_chars  the longest message, record, query or memory text accepted (mem0 has no limit; an agent that
                    pastes a whole file into add() should get an error, not a 30-second extraction call).
    allow_cross_user  calls without user_id may reach every user's memories without cross_user=True (a
                    single-tenant deployment; see "Tenancy" in the module docstring).
    """

    def __init__(
        self,
        policy: MemoryPolicy,
        *,
        bundle_version: str = "",
        default_top_k: int | None = None,
        max_text_chars: int = 32_000,
        allow_cross_user: bool = False,
    ):
        if not isinstance(policy, MemoryPolicy):
            raise TypeError(f"policy must be a MemoryPolicy, got {type(policy).__name__}")
        if default_top_k is not None and not is_int(default_top_k, 1, MAX_TOP_K):
            raise ValueError(f"default_top_k must be an int in 1..{MAX_TOP_K} or None, got {default_top_k!r}")
        self.policy, self.store = policy, policy.store
        self._graph = getattr(policy, "graph", None)  # Mem0g: entities and relations kept beside the memories
        if bundle_version:
            self.store.policy_version = bundle_version
        self.bundle_version = self.store.policy_version
        self.default_top_k, self.max_text_chars = default_top_k, int(max_text_chars)
        if not isinstance(allow_cross_user, bool):
            raise ValueError(f"allow_cross_user must be true or false, got {allow_cross_user!r}")
        self.allow_cross_user = allow_cross_user
        self._write_lock = threading.RLock()  # the policy's per-scope state (recent messages, summary) is shared

    @classmethod
    def from_bundle(cls, bundle_dir, store_uri, *, lm=None, cache_dir=None, embedder=None, **kwargs) -> Memory:
        """The policy of an exported bundle (memtune-export) over the store at `store_uri`; every memory it writes
        is stamped with the bundle version. A store written with another embedder is refused (ValueError).
        embedder: a ready embedder with the bundle's id and dim (shared between processes' objects, tests);
        kwargs: default_top_k, max_text_chars, allow_cross_user."""
        from .bundle import load_policy

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
            events = [
                event(e.op, e.memory_id, e.text, e.old_text, e.superseded_by)
                for e in self.policy.add(msgs, scope, metadata)
            ]
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
        return [event(op, mid, c.text, old) for c, (op, mid, old) in zip(changes, self.store.apply(changes))]

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
                    events.append(event(e.op, e.memory_id, e.text, e.old_text, e.superseded_by) | {"record_id": rec.id})
            if self._graph is not None:
                self._graph.flush()
        return events

    def update(
        self,
        memory_id: str,
        text: str,
        metadata: dict | None = None,
        *,
        user_id: str = "",
        agent_id: str = "",
        run_id: str = "",
        cross_user: bool = False,
    ) -> dict:
        """Replace a memory's text (re-embedded; metadata merged over the old). Recorded in its history.
        Raises MemoryNotFound for an unknown id or one outside the given scope.

        Provenance (the turns whose content the memory holds): an edit that keeps every content word of the old
        text (a correction, an addition) keeps it; one that rewrites the content drops it, as the new text comes
        from the caller and no turn (policies/provenance.py). The history row keeps the old provenance either way."""
        memory_id, scope = self._addressed(memory_id, user_id, agent_id, run_id, cross_user, "update")
        text = check_text(text, "text", self.max_text_chars)
        metadata = check_metadata(metadata)
        with self._write_lock:
            merge = keeps_content(self._record(memory_id, scope).text, text)
            vector = self.policy.embedder.embed([text])[0]
            change = Change("UPDATE", text, vector, memory_id, scope=scope or Scope(), metadata=metadata, merge=merge)
            ((op, mid, old),) = self._apply(change, scope)
        return event(op, mid, text, old)

    def delete(
        self, memory_id: str, *, user_id: str = "", agent_id: str = "", run_id: str = "", cross_user: bool = False
    ) -> dict:
        """Delete one memory (its history stays). Raises MemoryNotFound for an unknown id or one outside the
        given scope."""
        memory_id, scope = self._addressed(memory_id, user_id, agent_id, run_id, cross_user, "delete")
        with self._write_lock:
            self._record(memory_id, scope)
            ((op, mid, old),) = self._apply(Change("DELETE", memory_id=memory_id, scope=scope or Scope()), scope)
        return event(op, mid, "", old)

    def _apply(self, change: Change, scope: Scope | None):
        try:
            return self.store.apply([change])
        except KeyError as e:  # deleted (or moved out of the scope) between the look-up and the write
            raise MemoryNotFound(not_found(change.memory_id, scope)) from e

    def delete_all(self, *, user_id: str = "", agent_id: str = "", run_id: str = "", cross_user: bool = False) -> int:
        """Forget a scope: delete every memory in it (at least one id is required; reset() wipes everything), its
        graph entities and relations, the policy's rolling context (recent messages, summary) of the scopes inside
        it, and the text of its history (MemoryStore.delete_all blanks it). Old LanceDB versions keep the text
        until purge_versions(). Returns how many memories were deleted."""
        scope = check_scope(user_id, agent_id, run_id, write=True)
        check_cross_user(scope, cross_user, self.allow_cross_user, "delete_all")
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

    def purge_versions(self) -> dict:
        """Rewrite every table of the store (memories, history, graph) with its live rows and drop every older
        LanceDB version, so text that was deleted or blanked (delete_all) is gone from disk too. Afterwards nothing
        before now can be restored (restore / as_of). Returns per table: rows, versions and bytes before/after."""
        from ..store.purge import purge_table

        with self._write_lock:
            report = self.store.purge_versions()
            if self._graph is not None:  # the graph's tables live in the same directory
                self._graph.flush()
                for table in (self._graph.store.nodes, self._graph.store.edges):
                    report[table.name] = purge_table(table.tbl)
        return report

    def close(self) -> None:
        """Write pending history (and pending graph writes) and release the store."""
        if self._graph is not None:
            self._graph.close()
        self.store.close()

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
