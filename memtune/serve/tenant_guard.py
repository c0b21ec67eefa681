"""What a tenant's token may do (serve/tenants.py): the MemoryService calls of the REST and MCP servers, each checked
against the tenant's user-id prefix before anything is read or written.

Decisions (README "Tenants"):
* scope routes (add, search, list, forget a scope) naming a user_id outside the prefix: 403 `forbidden`, naming
  the prefix; an add must name a user_id (a memory without one belongs to no tenant);
* id routes (get, update, delete, history) of a memory outside the prefix, or with a scope whose user_id is outside
  it: 404 in the same words as an unknown id, so a tenant learns nothing of other tenants' memories;
* cross_user reads (a scope without user_id, with cross_user=true) answer only the tenant's users: list filters the
  scope's memories by prefix; search ranks as the Memory API does and keeps the tenant's memories, fetching more
  while others' fill the top (up to FETCH_CAP), then, if still short, searches each of the tenant's users of the
  scope and merges by score: the same memories an exact prefix filter would give. Graph relations are filtered the
  same way. Forgetting a scope across users is refused (403): a tenant forgets one user at a time;
* reset spans every tenant: 403 (only the operator token, MEMTUNE_API_TOKEN beside tenants_file, may reset).
"""

from __future__ import annotations

from typing import Any

from ..policies.runtime.reads import MAX_TOP_K, MemoryNotFound, not_found
from ..policies.types import Scope
from .service import MemoryService
from .tenants import Tenant

FETCH_CAP = MAX_TOP_K  # the most a cross-user search asks the Memory API for before it searches user by user


class TenantForbidden(PermissionError):
    """A tenant's token asked for a scope outside its user-id prefix (servers: 403)."""


class TenantService:
    """MemoryService's methods for one tenant (see the module docstring)."""

    def __init__(self, service: MemoryService, tenant: Tenant):
        self.service, self.memory, self.tenant = service, service.memory, tenant

    # ---- checks -------------------------------------------------------------------------------------------------
    def _forbid(self, what: str, user_id: str) -> TenantForbidden:
        prefix = self.tenant.user_id_prefix
        got = f"user_id {user_id!r}" if user_id else "no user_id"
        return TenantForbidden(
            f"{what}: this token (tenant {self.tenant.name!r}) may only use user_ids starting with {prefix!r}; "
            f"the request gave {got}"
        )

    def _scope_route(self, what: str, user_id: str) -> None:
        if user_id and not self.tenant.owns(user_id):
            raise self._forbid(what, user_id)

    def _mine(self, item: dict) -> bool:
        return self.tenant.owns(item.get("user_id") or "")

    def _owner(self, memory_id: str, scope: dict) -> dict:
        """The caller's scope for an id route, pinned to the memory's own user; MemoryNotFound (the words of an
        unknown id) when it lies outside the tenant."""
        user_id = scope.get("user_id", "")
        if user_id:
            if not self.tenant.owns(user_id):
                raise MemoryNotFound(not_found(memory_id, _scope(scope)))
            return scope
        found = self.memory.get(memory_id, **scope)  # cross_user: validates the scope; 404 if outside it
        if not self._mine(found):
            raise MemoryNotFound(not_found(memory_id, _scope(scope)))
        return {**scope, "user_id": found["user_id"]}  # the call below can reach this user's memory only

    # ---- writes -------------------------------------------------------------------------------------------------
    def add(self, messages, **kwargs) -> list[dict]:
        user_id = kwargs.get("user_id", "")
        if not self.tenant.owns(user_id):
            raise self._forbid("add", user_id)
        return self.service.add(messages, **kwargs)

    def update(self, memory_id: str, text: str, metadata: dict | None = None, **scope) -> dict:
        return self.service.update(memory_id, text, metadata, **self._owner(memory_id, scope))

    def delete(self, memory_id: str, **scope) -> dict:
        return self.service.delete(memory_id, **self._owner(memory_id, scope))

    def delete_all(self, **scope) -> int:
        if not scope.get("user_id"):
            raise self._forbid("forgetting a scope across users", "")
        self._scope_route("forgetting a scope", scope["user_id"])
        return self.service.delete_all(**scope)

    def reset(self) -> None:
        raise TenantForbidden(
            f"reset: it deletes every tenant's memories; this token (tenant {self.tenant.name!r}) may not: use the "
            "operator's MEMTUNE_API_TOKEN"
        )

    # ---- reads --------------------------------------------------------------------------------------------------
    def search(self, query: str, **kwargs) -> dict:
        self._scope_route("search", kwargs.get("user_id", ""))
        if kwargs.get("user_id"):
            return self.service.search(query, **kwargs)
        top_k = kwargs.pop("top_k", None) or self.memory.default_top_k or self.memory.policy.retriever.knobs.top_k
        fetch = top_k
        while True:
            found = self.service.search(query, top_k=fetch, **kwargs)
            kept = [m for m in found["results"] if self._mine(m)]
            if len(kept) >= top_k or len(found["results"]) < fetch or fetch >= FETCH_CAP:
                break
            fetch = min(4 * fetch, FETCH_CAP)
        relations = [r for r in found["relations"] if self._mine(r)]
        if len(kept) < top_k and len(found["results"]) >= fetch:  # others' memories filled every fetched place
            kept, relations = self._search_by_user(query, top_k, kwargs)
        return {"results": kept[:top_k], "relations": relations}

    def _search_by_user(self, query: str, top_k: int, kwargs: dict) -> tuple[list[dict], list[dict]]:
        scope = {k: kwargs[k] for k in ("agent_id", "run_id", "cross_user") if k in kwargs}
        users = sorted({m["user_id"] for m in self.memory.get_all(**scope) if self._mine(m)})
        results: list[dict] = []
        relations: dict[Any, dict] = {}
        for user in users:
            found = self.service.search(query, top_k=top_k, **{**kwargs, "user_id": user})
            results += found["results"]
            relations.update((r.get("id"), r) for r in found["relations"])
        results.sort(key=lambda m: -(m.get("score") or 0.0))
        return results[:top_k], sorted(relations.values(), key=lambda r: -(r.get("score") or 0.0))

    def get_all(self, **kwargs) -> list[dict]:
        self._scope_route("list", kwargs.get("user_id", ""))
        if kwargs.get("user_id"):
            return self.service.get_all(**kwargs)
        limit = kwargs.pop("limit", None)
        mine = [m for m in self.service.get_all(limit=None, **kwargs) if self._mine(m)]
        return mine if limit is None else mine[:limit]

    def get(self, memory_id: str, **scope) -> dict:
        return self.service.get(memory_id, **self._owner(memory_id, scope))

    def history(self, memory_id: str, **scope) -> list[dict]:
        if scope.get("user_id"):
            return self.service.history(memory_id, **self._owner(memory_id, scope))
        rows = self.service.history(memory_id, **scope)  # cross_user (a deleted memory keeps its history)
        if not self._mine(rows[0]):
            raise MemoryNotFound(not_found(memory_id, _scope(scope)))
        return rows

    def info(self) -> dict[str, Any]:
        return self.service.info()


def _scope(scope: dict) -> Scope | None:
    owner = Scope(*(scope.get(f, "") for f in ("user_id", "agent_id", "run_id")))
    return owner if owner != Scope() else None


def for_caller(service: MemoryService, tenant: Tenant | None) -> MemoryService | TenantService:
    """The service as the caller may use it: all of it (the operator, or the single-token mode) or a tenant's part."""
    return service if tenant is None else TenantService(service, tenant)
