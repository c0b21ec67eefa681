"""MCP server over the runtime Memory API (official `mcp` SDK 2.x, `MCPServer`): memory as tools for an agent.

Tools: add_memory (after each turn), search_memories (before each answer), list_memories, get_memory,
memory_history, delete_memory. Arguments go through the REST server's request models, so both servers enforce the
same limits and scope rules; a refused call returns an MCP tool error (is_error) whose text names the field and the
fix, and never touches the store.

Scopes as on the REST server: every tool takes the caller's user_id / agent_id / run_id (at least one); a memory
outside it is "not found", in the same words as an unknown id; a scope without user_id needs cross_user=true (or
the server's allow_cross_user=true). search_memories answers {"result": [memory, ...], "relations": [...]}:
"result" is where the memories always were (the SDK's wrapping of a list), "relations" the graph triplets of a
Mem0g bundle ([] otherwise).

Transports: stdio (`create_mcp_server(memory).run("stdio")`, for a client that launches the server) and
streamable HTTP (`mcp_http_app(...)` -> an ASGI app serving /mcp, behind the same bearer auth and body limit as
the REST server, plus an unauthenticated /healthz).
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import Field, ValidationError

from ..policies.runtime.reads import MemoryNotFound
from . import schemas as s
from .middleware import LOOPBACK, BearerAuth, BodyLimit
from .service import MemoryService

INSTRUCTIONS = (
    "Long-term memory for a conversation agent. After each turn call add_memory with the new messages and the "
    "user's user_id; before answering call search_memories with the question and the same user_id, and use the "
    "returned memories and relations (with their timestamps) as context. Memories of different user_ids never "
    "mix: pass the user_id to every tool."
)

UserId = Annotated[str, Field(description="whose memories (at least one of user_id, agent_id, run_id)")]
CrossUser = Annotated[
    bool, Field(description="true: allow a scope without user_id, which reaches every user's memories")
]
IncludeHistory = Annotated[
    bool | None,
    Field(description="true: also memories that no longer hold (superseded); null: as the policy's retriever says"),
]
MemoryId = Annotated[
    str,
    Field(
        description="a memory id from add_memory, search_memories or list_memories",
        min_length=1,
        max_length=s.MAX_ID_CHARS,
    ),
]


def _checked(model, **values):
    """Validate tool arguments with the REST request model; a refusal becomes a ToolError naming the field."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        parts = []
        for e in exc.errors():
            field = ".".join(str(p) for p in e.get("loc", ())) or "arguments"
            parts.append(f"{field}: {str(e.get('msg', '')).removeprefix('Value error, ')}")
        raise ToolError("; ".join(parts)) from None


def _call(fn, *args, **kwargs):
    """Run a Memory API call; unknown ids and refused input become ToolErrors (the store is unchanged)."""
    try:
        return fn(*args, **kwargs)
    except MemoryNotFound as exc:
        raise ToolError(exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)) from None
    except ValueError as exc:
        raise ToolError(str(exc)) from None


def create_mcp_server(memory, *, name: str = "memtune") -> MCPServer:
    service = MemoryService(memory)
    server = MCPServer(name=name, instructions=INSTRUCTIONS, version=str(getattr(memory, "bundle_version", "")))

    @server.tool()
    def add_memory(
        messages: str | list[dict[str, str]],
        user_id: UserId = "",
        agent_id: str = "",
        run_id: str = "",
        metadata: dict[str, Any] | None = None,
        infer: bool = True,
    ) -> list[dict[str, Any]]:
        """Remember new conversation messages. `messages` is a string (one user message) or a list of
        {"role": "user"|"assistant"|<name>, "content": <text>}. Returns what changed: ADD / UPDATE / DELETE / NOOP
        events with memory ids."""
        req = _checked(
            s.AddRequest,
            messages=messages,
            user_id=user_id,
            agent_id=agent_id,
            run_id=run_id,
            metadata=metadata,
            infer=infer,
        )
        return _call(service.add, req.payload(), metadata=req.metadata, infer=req.infer, **req.scope())

    @server.tool()
    def search_memories(
        query: str,
        user_id: UserId = "",
        agent_id: str = "",
        run_id: str = "",
        top_k: int | None = None,
        threshold: float | None = None,
        cross_user: CrossUser = False,
        include_history: IncludeHistory = None,
    ) -> dict[str, list[dict[str, Any]]]:
        """The memories most relevant to `query` in one scope, best first, each with a similarity score, under
        "result"; for a graph-memory policy also the matching (source, relationship, destination) triplets under
        "relations". include_history=true also returns memories that no longer hold, marked valid=false with
        invalid_at (since when) and superseded_by (the memory that replaced it)."""
        req = _checked(
            s.SearchRequest,
            query=query,
            user_id=user_id,
            agent_id=agent_id,
            run_id=run_id,
            top_k=top_k,
            threshold=threshold,
            cross_user=cross_user,
            include_history=include_history,
        )
        found = _call(
            service.search,
            req.query,
            top_k=req.top_k,
            threshold=req.threshold,
            include_history=req.include_history,
            **req.call_scope(),
        )
        return {"result": found["results"], "relations": found["relations"]}

    @server.tool()
    def list_memories(
        user_id: UserId = "",
        agent_id: str = "",
        run_id: str = "",
        limit: int = 100,
        cross_user: CrossUser = False,
        include_history: bool = False,
    ) -> list[dict[str, Any]]:
        """All memories of one scope, oldest first (at most `limit`); include_history=true also lists those that no
        longer hold (valid=false)."""
        req = _checked(s.ScopeQuery, user_id=user_id, agent_id=agent_id, run_id=run_id, cross_user=cross_user)
        if not 1 <= limit <= s.MAX_LIMIT:
            raise ToolError(f"limit: must be between 1 and {s.MAX_LIMIT}, got {limit}")
        return _call(service.get_all, limit=limit, include_history=include_history, **req.call_scope())

    @server.tool()
    def get_memory(
        memory_id: MemoryId, user_id: UserId = "", agent_id: str = "", run_id: str = "", cross_user: CrossUser = False
    ) -> dict[str, Any]:
        """One memory of the scope by id."""
        req = _checked(s.ScopeQuery, user_id=user_id, agent_id=agent_id, run_id=run_id, cross_user=cross_user)
        return _call(service.get, memory_id, **req.call_scope())

    @server.tool()
    def memory_history(
        memory_id: MemoryId, user_id: UserId = "", agent_id: str = "", run_id: str = "", cross_user: CrossUser = False
    ) -> list[dict[str, Any]]:
        """Every change to one memory of the scope (ADD, UPDATE, DELETE, NOOP), oldest first, with old and new
        text."""
        req = _checked(s.ScopeQuery, user_id=user_id, agent_id=agent_id, run_id=run_id, cross_user=cross_user)
        return _call(service.history, memory_id, **req.call_scope())

    @server.tool()
    def delete_memory(
        memory_id: MemoryId, user_id: UserId = "", agent_id: str = "", run_id: str = "", cross_user: CrossUser = False
    ) -> dict[str, Any]:
        """Delete one memory of the scope by id (its history is kept)."""
        req = _checked(s.ScopeQuery, user_id=user_id, agent_id=agent_id, run_id=run_id, cross_user=cross_user)
        return _call(service.delete, memory_id, **req.call_scope())

    @server.custom_route("/healthz", methods=["GET"])
    async def healthz(request):
        import anyio.to_thread
        from starlette.responses import JSONResponse

        return JSONResponse(await anyio.to_thread.run_sync(service.info))

    return server


def mcp_http_app(
    memory, token: str | None, *, host: str = "127.0.0.1", path: str = "/mcp", max_body_bytes: int = s.MAX_BODY_BYTES
):
    """Streamable-HTTP MCP app at `path`, behind bearer auth (when `token`) and the body limit.

    DNS-rebinding protection (Host/Origin checks) stays on for loopback hosts, as the SDK defaults; on other hosts
    the bearer token is the guard (a browser page cannot attach it)."""
    server = create_mcp_server(memory)
    security = None if host in LOOPBACK else TransportSecuritySettings(enable_dns_rebinding_protection=False)
    app = server.streamable_http_app(
        streamable_http_path=path, host=host, max_request_body_size=max_body_bytes, transport_security=security
    )
    limited = BodyLimit(app, max_body_bytes)
    return BearerAuth(limited, token, open_paths={"/healthz"}) if token else limited
