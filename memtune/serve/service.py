"""What both servers (REST and MCP) put between a request and the Memory API: one writer at a time, and the
facts /healthz reports.

Why a write lock on top of the store's own lock: `Memory.add` is extract -> search similar -> decide -> write.
The store serialises each read and write, but two adds in the same scope interleaving between the search and the
write would both decide ADD for the same fact, or UPDATE a memory the other just deleted. `Memory` serialises its
own writes too; this lock keeps the servers' one-writer guarantee whatever Memory does. Reads (search, get, list,
history) take no lock here: they see the store before or after a write, never half of it.
"""

from __future__ import annotations

import threading
from typing import Any


class MemoryService:
    def __init__(self, memory):
        self.memory = memory
        self._write = threading.Lock()

    # ---- writes: one at a time ---------------------------------------------------------------------------------
    def add(self, messages, **kwargs) -> list[dict]:
        with self._write:
            return self.memory.add(messages, **kwargs)

    def update(self, memory_id: str, text: str, metadata: dict | None = None, **scope) -> dict:
        with self._write:
            return self.memory.update(memory_id, text, metadata, **scope)

    def delete(self, memory_id: str, **scope) -> dict:
        with self._write:
            return self.memory.delete(memory_id, **scope)

    def delete_all(self, **scope) -> int:
        with self._write:
            return self.memory.delete_all(**scope)

    def reset(self) -> None:
        with self._write:
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
