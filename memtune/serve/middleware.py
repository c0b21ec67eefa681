"""The two guards in front of the REST and MCP-over-HTTP apps: bearer-token auth (and the rule for running without
a token), and a request-body size limit; both answer in the servers' JSON error format.

Why plain ASGI middleware and not FastAPI dependencies: they run before the body is read or parsed, so a caller
without the token learns nothing (not even whether their JSON was valid) and can make the server do no work, and
an oversized body is refused before it is buffered; and the same classes guard the MCP app, which is not FastAPI.
"""

from __future__ import annotations

import json
import os

from .tenants import TENANT_KEY, Tenant, TokenTable

TOKEN_ENV = "MEMTUNE_API_TOKEN"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
OPEN_PATHS = frozenset({"/healthz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


def resolve_token(token: str | None, allow_no_auth: bool, host: str, tenants: bool = False) -> str | None:
    """The token to require, or None when running open is allowed (or when `tenants` carry the tokens: then the
    token, if set, is the operator's).

    No token is a deliberate choice: it needs allow_no_auth=true, and then the server may listen on loopback only,
    so an unauthenticated memory store is never reachable from another machine by accident.
    """
    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    if token:
        if len(token) < 16:
            raise ValueError(
                f"the API token is {len(token)} characters; use at least 16 (e.g. "
                f"`export {TOKEN_ENV}=$(openssl rand -hex 32)`)"
            )
        return token
    if tenants:
        return None
    if not allow_no_auth:
        raise ValueError(
            f"no API token: set {TOKEN_ENV} (e.g. `export {TOKEN_ENV}=$(openssl rand -hex 32)`), "
            "or pass allow_no_auth=true to serve without auth on 127.0.0.1 only"
        )
    if host not in LOOPBACK:
        raise ValueError(
            f"allow_no_auth=true serves without auth, which is only allowed on loopback "
            f"(127.0.0.1), not host={host}: set {TOKEN_ENV} to listen on {host}"
        )
    return None


class BearerAuth:
    """ASGI middleware: HTTP requests outside `open_paths` need `Authorization: Bearer <token>`, else 401.

    The token is the server's one token, or (`tenants`, serve/tenants.py) a tenant's, whose Tenant the app finds
    under scope[TENANT_KEY] (None: the one token, no prefix). It fails closed: a WebSocket connection needs the
    same header (every path; without it the handshake is refused with close code 1008, policy violation, before the
    app sees it), lifespan events (start-up and shutdown, no caller) pass, and any other ASGI scope type is refused
    without reaching the app."""

    def __init__(self, app, token: str | None, open_paths=OPEN_PATHS, *, tenants: list[Tenant] | None = None):
        self.tokens = TokenTable(token, tenants)
        if not self.tokens:
            raise ValueError("BearerAuth needs a non-empty token (or tenants)")
        self.app, self.open_paths = app, frozenset(open_paths)

    def _caller(self, scope) -> tuple[bool, Tenant | None]:
        given = dict(scope.get("headers") or []).get(b"authorization", b"")
        if not given.startswith(b"Bearer "):
            return False, None
        return self.tokens.lookup(given[len(b"Bearer ") :])

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind == "lifespan":
            return await self.app(scope, receive, send)
        if kind == "websocket":
            ok, tenant = self._caller(scope)
            if ok:
                return await self.app({**scope, TENANT_KEY: tenant}, receive, send)
            if (await receive())["type"] == "websocket.connect":  # answer the handshake: refused
                await send({"type": "websocket.close", "code": 1008, "reason": "unauthorized"})
            return
        if kind != "http":
            raise RuntimeError(f"BearerAuth refuses ASGI scope type {kind!r}: only http and websocket are served")
        if scope["path"] in self.open_paths:
            return await self.app(scope, receive, send)
        ok, tenant = self._caller(scope)
        if ok:
            return await self.app({**scope, TENANT_KEY: tenant}, receive, send)
        given = dict(scope["headers"]).get(b"authorization", b"")
        reason = "missing Authorization header" if not given else "wrong token"
        await send_error(
            send,
            401,
            "unauthorized",
            f"{reason}: send `Authorization: Bearer <token>` with the server's {TOKEN_ENV}",
            [(b"www-authenticate", b'Bearer realm="memtune"')],
        )


class BodyTooLarge(Exception):
    """Raised from `receive` when a body without (or lying about) Content-Length passes the limit."""


class BodyLimit:
    """ASGI middleware: request bodies over `max_bytes` get 413 (by Content-Length up front, else while reading).

    A body that grows past the limit while the app reads it raises `on_overflow()` inside the app: the REST app
    passes a 413 HTTPException that its own handler renders, so the app never sees a truncated body."""

    def __init__(self, app, max_bytes: int, on_overflow=BodyTooLarge):
        self.app, self.max_bytes, self.on_overflow = app, int(max_bytes), on_overflow

    def detail(self) -> str:
        return f"request body over the limit of {self.max_bytes} bytes: send less per request"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await send_error(send, 413, "payload_too_large", self.detail())
        seen = 0

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise self.on_overflow(self.detail())
            return message

        await self.app(scope, counting_receive, send)


async def send_error(send, status: int, kind: str, detail: str, headers=()) -> None:
    body = json.dumps({"error": kind, "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})
