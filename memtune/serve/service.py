"""What both servers (REST and MCP) put between a request and the Memory API, and the facts /healthz reports.

Concurrency lives in the Memory API itself (policies/runtime/scope_locks.py): a write locks only its scope, so
adds of different users run at once (their extraction and decision LM calls overlap) while one scope's adds run
one at a time, in arrival order (two adds in one scope interleaving between the search for similar memories and
the write would both decide ADD for the same fact, or UPDATE a memory the other just deleted). The store
serialises its commits. Reads (search, get, list, history) take no lock: they see the store before or after a
write, never half of it. This class adds no lock of its own.
"""

from __future__ import annotations

from typing import Any


class MemoryService:
    def __init__(self, memory):
        self.memory = memory

    # ---- writes (Memory locks the scope) ------------------------------------------------------------------------
    def add(self, messages, **kwargs) -> list[dict]:
        return self.memory.add(messages, **kwargs)

    def update(self, memory_id: str, text: str, metadata: dict | None = None, **scope) -> dict:
        return self.memory.update(memory_id, text, metadata, **scope)

    def delete(self, memory_id: str, **scope) -> dict:
        return self.memory.delete(memory_id, **scope)

    def delete_all(self, **scope) -> int:
        return self.memory.delete_all(**scope)

    def reset(self) -> None:
        self.memory.reset()

    # ---- reads --------------------------------------------------------------------------------------------------
    def search(self, query: str, **kwargs) -> dict:
        """{"results": memories, "relations": graph triplets ([] without graph memory)}."""
        return self.memory.search_with_relations(query, **kwargs)

    def get(self, memory_id: str, **scope) -> dict:
        return self.memory.get(memory_id, **scope)

    def get_all(self, **kwargs) -> list[dict]:
        return self.memory.get_all(**kwargs)

    def history(self, memory_id: str, **scope) -> list[dict]:
        """A deleted memory keeps its history; an id with none (never written, or outside the caller's scope):
        404 like any unknown id, in the same words."""
        from ..policies.runtime.reads import MemoryNotFound, not_found
        from ..policies.types import Scope

        changes = self.memory.history(memory_id, **scope)  # validates the id and the scope
        if not changes:
            owner = Scope(*(scope.get(f, "") for f in ("user_id", "agent_id", "run_id")))
            raise MemoryNotFound(not_found(memory_id, owner if owner != Scope() else None))
        return changes

    def info(self) -> dict[str, Any]:
        """Bundle version, embedder and memory count: enough for a health check to tell which policy is live."""
        policy = self.memory.policy
        return {
            "status": "ok",
            "bundle_version": self.memory.bundle_version,
            "embedder_id": getattr(policy.embedder, "id", ""),
            "memories": policy.store.count(),
        }
