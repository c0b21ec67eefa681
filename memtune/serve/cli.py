"""memtune-serve: load an exported policy bundle and serve its Memory API over REST or MCP (a Hydra app).

    memtune-serve bundle=path/to/bundle                        REST, 127.0.0.1:8000, token from MEMTUNE_API_TOKEN
    memtune-serve bundle=path/to/bundle transport=mcp-stdio    MCP over stdio (the MCP client starts this process)
    memtune-serve bundle=path/to/bundle transport=mcp-http host=0.0.0.0 port=8001
    memtune-serve bundle=path/to/bundle tenants_file=tenants.yaml       tokens bound to user-id prefixes

Config: conf/serve.yaml. Start-up problems (no bundle, a bad bundle, no token, a bad tenants file, a store another
process writes) end the process with exit code 2 and one line saying what to fix, before anything listens.
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from .middleware import resolve_token
from .tenants import Tenant, load_tenants

TRANSPORTS = ("rest", "mcp-stdio", "mcp-http")
log = logging.getLogger("memtune.serve")


class ServeConfigError(ValueError):
    """memtune-serve cannot start with this config; the message says what to change."""


def check_config(cfg: DictConfig) -> str | None:
    """Validate the config before loading anything; returns the token to require (None: no auth, or tenants'
    tokens only)."""
    if cfg.transport not in TRANSPORTS:
        raise ServeConfigError(f"transport={cfg.transport!r} is not one of {', '.join(TRANSPORTS)}")
    if not cfg.get("bundle"):
        raise ServeConfigError(
            "no bundle given: run `memtune-serve bundle=path/to/bundle` (memtune-export writes "
            "one; see README 'Using a tuned policy in production')"
        )
    if cfg.transport == "mcp-stdio":
        return None  # the client owns the process: nothing listens on a port
    try:
        return resolve_token(None, bool(cfg.allow_no_auth), str(cfg.host), tenants=bool(cfg.get("tenants_file")))
    except ValueError as err:
        raise ServeConfigError(str(err)) from None


def tenants_of(cfg: DictConfig, token: str | None) -> list[Tenant] | None:
    """The tenants of `tenants_file` (None: single-token mode); a bad file ends start-up (TenantsError)."""
    if not cfg.get("tenants_file"):
        return None
    if cfg.transport == "mcp-stdio":
        raise ServeConfigError("tenants_file needs transport=rest or mcp-http: over stdio there is no token")
    return load_tenants(str(cfg.tenants_file), operator_token=token)


def load_memory(cfg: DictConfig):
    from ..policies.runtime.memory import Memory

    top_k = cfg.get("default_top_k")
    return Memory.from_bundle(
        cfg.bundle,
        cfg.store_uri,
        cache_dir=cfg.get("cache_dir") or None,
        default_top_k=int(top_k) if top_k is not None else None,
        allow_cross_user=bool(cfg.get("allow_cross_user", False)),
    )


def build_app(cfg: DictConfig, memory, token: str | None, tenants: list[Tenant] | None = None):
    """The ASGI app for transport rest or mcp-http (what `serve` hands to uvicorn)."""
    limit = int(cfg.max_body_bytes)
    if cfg.transport == "rest":
        from .rest import create_app

        return create_app(memory, token, allow_reset=bool(cfg.allow_reset), max_body_bytes=limit, tenants=tenants)
    from .mcp_server import mcp_http_app

    return mcp_http_app(memory, token, host=str(cfg.host), max_body_bytes=limit, tenants=tenants)


def serve(cfg: DictConfig) -> None:
    token = check_config(cfg)
    tenants = tenants_of(cfg, token)
    memory = load_memory(cfg)
    log.info("bundle %s (%s) over store %s", memory.bundle_version, cfg.bundle, cfg.store_uri)
    recovered = getattr(memory.store, "recovered", 0)  # the last writer died mid-write (store/recover.py)
    if recovered:
        log.warning("store %s: %d history rows appended to match the memories", cfg.store_uri, recovered)
    try:
        if cfg.transport == "mcp-stdio":
            from .mcp_server import create_mcp_server

            create_mcp_server(memory).run("stdio")
            return
        import uvicorn

        if tenants:
            log.info("%d tenants from %s%s", len(tenants), cfg.tenants_file, " and the operator token" if token else "")
        elif token is None:
            log.warning("serving WITHOUT auth on %s (allow_no_auth=true)", cfg.host)
        uvicorn.run(
            build_app(cfg, memory, token, tenants),
            host=str(cfg.host),
            port=int(cfg.port),
            log_level=str(cfg.log_level).lower(),
            server_header=False,
        )
    finally:
        memory.close()


@hydra.main(config_path="pkg://memtune.conf", config_name="serve", version_base="1.3")
def main(cfg: DictConfig) -> None:
    logging.basicConfig(
        stream=sys.stderr, level=str(cfg.log_level).upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        serve(cfg)
    except ValueError as err:  # ServeConfigError, BundleError (a ValueError), bad store: one clear line, exit 2
        print(f"memtune-serve: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
