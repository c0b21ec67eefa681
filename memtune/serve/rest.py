"""REST server over the runtime Memory API (mem0-like routes): `create_app(memory, token)`.

Routes (all but /healthz and the docs need `Authorization: Bearer <token>`; SCOPE is the caller's
`user_id` / `agent_id` / `run_id`, at least one, plus `cross_user=true` to allow a scope without user_id):

    POST   /v1/memories                 add messages to a scope       -> {"results": [event, ...]}
    POST   /v1/memories/search          top-k memories for a query    -> {"results": [memory, ...], "relations": [...]}
    GET    /v1/memories?SCOPE           list a scope (limit, include_history) -> {"results": [memory, ...]}
    DELETE /v1/memories?SCOPE           forget a scope (never empty)  -> {"deleted": n}
    GET    /v1/memories/{id}?SCOPE      one memory                    -> memory
    PUT    /v1/memories/{id}?SCOPE      replace its text              -> event
    DELETE /v1/memories/{id}?SCOPE      delete it                     -> event
    GET    /v1/memories/{id}/history?SCOPE   its changes, oldest first -> {"results": [change, ...]}
    POST   /v1/reset                    wipe the store (allow_reset=true and a confirm phrase)
    GET    /healthz                     bundle version, embedder, memory count (no auth)
    GET    /docs                        OpenAPI UI (no auth)

Search answers the stored memories under "results" and, for a Mem0g bundle, the graph's triplets under
"relations" ([] otherwise), as Mem0's API does. Memories that no longer hold (soft invalidation) are left out of
search and list unless the request says include_history=true; then they come marked "valid": false, with
"invalid_at" and "superseded_by" (search's null default follows the policy's retriever knob). A memory outside the caller's SCOPE answers 404 exactly like an
unknown id. A SCOPE without user_id reaches every user's memories: 400 unless the request says cross_user=true or
the server runs with allow_cross_user=true.

Errors are JSON `{"error": <kind>, "detail": <what and how to fix>}`: 401 missing/wrong token, 403 reset
disabled, 404 unknown id (or outside the scope), 413 body over the limit, 415 a body that is not JSON, 422 invalid
request (the detail names the field), 400 input the Memory API refused (ValueError). Endpoints are sync `def`s:
FastAPI runs them in its thread pool, and `MemoryService` lets one write run at a time.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, FastAPI, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..policies.runtime.reads import MemoryNotFound
from . import schemas as s
from .middleware import BearerAuth, BodyLimit
from .service import MemoryService

MemoryId = Annotated[str, Path(min_length=1, max_length=s.MAX_ID_CHARS, description="memory id")]


ScopeQuery = s.ScopeQuery


class ListQuery(ScopeQuery):
    limit: int = Field(100, ge=1, le=s.MAX_LIMIT)
    include_history: bool = Field(False, description="true: also memories that no longer hold (valid=false)")


class MemoryOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    memory: str
    user_id: str = ""
    agent_id: str = ""
    run_id: str = ""
    score: float | None = None


class EventOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    event: str = Field(description="ADD | UPDATE | DELETE | NOOP")
    id: str | None
    memory: str = ""
    previous_memory: str = ""


class RelationOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    source: str
    relationship: str
    destination: str
    memory: str = Field("", description="the triplet as the sentence that was embedded")
    score: float | None = None


class SearchOut(BaseModel):
    results: list[MemoryOut]
    relations: list[RelationOut] = Field(description="graph triplets (Mem0g bundles); [] without graph memory")


class Results(BaseModel):
    results: list[dict[str, Any]]


class MemoryList(BaseModel):
    results: list[MemoryOut]


class EventList(BaseModel):
    results: list[EventOut]


def _error(status: int, kind: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": kind, "detail": detail}, status_code=status)


def _described(error: dict) -> dict:
    """One validation error as {field, message}: the field path without the `body` prefix, pydantic's message
    without its "Value error, " prefix."""
    loc = error.get("loc", ())
    if error.get("type") == "json_invalid":
        where = f" at character {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
        return {"field": "body", "message": f"invalid JSON{where}: {error.get('ctx', {}).get('error', '')}".strip()}
    field = ".".join(str(p) for p in loc if p != "body") or "body"
    return {"field": field, "message": str(error.get("msg", "")).removeprefix("Value error, ")}


def create_app(
    memory, token: str | None, *, allow_reset: bool = False, max_body_bytes: int = s.MAX_BODY_BYTES
) -> FastAPI:
    """The REST app over `memory` (a `memtune.policies.runtime.memory.Memory`).

    token None means no auth: callers decide that (see `memtune.serve.middleware.resolve_token`, which only allows it on
    loopback). allow_reset enables POST /v1/reset (off by default: it deletes every scope's memories).
    """
    service = MemoryService(memory)
    app = FastAPI(
        title="memtune memory server",
        version=str(getattr(memory, "bundle_version", "") or "0"),
        description="Mem0-style memory of an exported memtune policy. Authorize with the bearer token.",
    )
    app.state.service = service
    bearer = [Security(HTTPBearer(auto_error=False, description="the server's MEMTUNE_API_TOKEN"))]

    @app.exception_handler(MemoryNotFound)
    def _not_found(request: Request, exc: MemoryNotFound):
        detail = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
        return _error(404, "not_found", detail)

    @app.exception_handler(ValueError)
    def _bad_input(request: Request, exc: ValueError):
        return _error(400, "bad_request", str(exc))

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError):
        # Field names and messages only: echoing the rejected input back could return megabytes of it.
        content_type = request.headers.get("content-type", "")
        if request.method in ("POST", "PUT") and content_type and "json" not in content_type:
            return _error(
                415,
                "unsupported_media_type",
                f"the body was sent as {content_type!r}: send JSON with "
                "`Content-Type: application/json` (curl: -H 'Content-Type: application/json')",
            )
        errors = [_described(e) for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return JSONResponse({"error": "validation_error", "detail": detail, "errors": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    def _http(request: Request, exc: StarletteHTTPException):
        kind = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(exc.status_code, "error")
        return JSONResponse(
            {"error": kind, "detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict:
        """Liveness plus which policy is live: bundle version, embedder id, number of stored memories."""
        return service.info()

    @app.post("/v1/memories", response_model=EventList, tags=["memories"], dependencies=bearer)
    def add(req: s.AddRequest):
        """Add messages (call after each turn); returns what changed: ADD / UPDATE / DELETE / NOOP events."""
        return {"results": service.add(req.payload(), metadata=req.metadata, infer=req.infer, **req.scope())}

    @app.post("/v1/memories/search", response_model=SearchOut, tags=["memories"], dependencies=bearer)
    def search(req: s.SearchRequest):
        """Top-k memories of a scope for a query (call before each answer), best first; a Mem0g bundle's graph
        triplets under "relations"."""
        return service.search(
            req.query,
            top_k=req.top_k,
            filters=req.filters,
            threshold=req.threshold,
            include_history=req.include_history,
            **req.call_scope(),
        )

    @app.get("/v1/memories", response_model=MemoryList, tags=["memories"], dependencies=bearer)
    def list_memories(q: Annotated[ListQuery, Query()]):
        """Memories of a scope, oldest first, at most `limit`."""
        return {"results": service.get_all(limit=q.limit, include_history=q.include_history, **q.call_scope())}

    @app.delete("/v1/memories", tags=["memories"], dependencies=bearer)
    def delete_scope(q: Annotated[ScopeQuery, Query()]) -> dict:
        """Forget a scope (at least one of user_id, agent_id, run_id): its memories, its graph, and the text of
        its history."""
        return {"deleted": service.delete_all(**q.call_scope())}

    @app.get("/v1/memories/{memory_id}", response_model=MemoryOut, tags=["memories"], dependencies=bearer)
    def get(memory_id: MemoryId, q: Annotated[ScopeQuery, Query()]):
        """One memory of the caller's scope (404 outside it)."""
        return service.get(memory_id, **q.call_scope())

    @app.put("/v1/memories/{memory_id}", response_model=EventOut, tags=["memories"], dependencies=bearer)
    def update(memory_id: MemoryId, req: s.UpdateRequest, q: Annotated[ScopeQuery, Query()]):
        """Replace a memory's text (re-embedded); the old text stays in its history."""
        return service.update(memory_id, req.text, req.metadata, **q.call_scope())

    @app.delete("/v1/memories/{memory_id}", response_model=EventOut, tags=["memories"], dependencies=bearer)
    def delete(memory_id: MemoryId, q: Annotated[ScopeQuery, Query()]):
        return service.delete(memory_id, **q.call_scope())

    @app.get("/v1/memories/{memory_id}/history", response_model=Results, tags=["memories"], dependencies=bearer)
    def history(memory_id: MemoryId, q: Annotated[ScopeQuery, Query()]):
        """Every change to a memory (ADD, UPDATE, DELETE, NOOP), oldest first."""
        return {"results": service.history(memory_id, **q.call_scope())}

    @app.post("/v1/reset", response_model=dict, tags=["ops"], dependencies=bearer)
    def reset(req: Annotated[s.ResetRequest, Body()]):
        """Delete every memory of every scope. Disabled unless the server runs with allow_reset=true."""
        if not allow_reset:
            return _error(403, "forbidden", "reset is disabled on this server: restart it with allow_reset=true")
        service.reset()
        return {"reset": True}

    # add_middleware puts the newest outermost: auth runs first, then the body limit.
    app.add_middleware(
        BodyLimit, max_bytes=max_body_bytes, on_overflow=lambda detail: StarletteHTTPException(413, detail)
    )
    if token:
        app.add_middleware(BearerAuth, token=token)
    return app
