"""Tenants (serve/tenants.py, serve/tenant_guard.py): a tenant's token reaches only the user_ids with its prefix,
through every REST route and MCP tool (403 for a scope outside it, 404 for an id outside it, cross-user reads
within the prefix only), and the tenants file is checked at start-up."""

from __future__ import annotations

import json

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient
from omegaconf import OmegaConf
from serve_support import TOKEN, make_memory, uvicorn_thread, versions

from memtune.serve import tenant_guard
from memtune.serve.mcp_server import create_mcp_server, mcp_http_app
from memtune.serve.rest import create_app
from memtune.serve.tenants import Tenant, TenantsError, load_tenants, token_sha256

A_TOKEN, B_TOKEN = "acme-token-0123456789abcdef", "globex-token-0123456789abcdef"
TENANTS = [Tenant("acme", token_sha256(A_TOKEN), "acme:"), Tenant("globex", token_sha256(B_TOKEN), "globex:")]
A, B, OP = ({"Authorization": f"Bearer {t}"} for t in (A_TOKEN, B_TOKEN, TOKEN))
TEA = [{"role": "user", "content": "I drink green tea with honey every single morning."}]


def said(user: str, text: str) -> list[dict]:
    return [{"role": "user", "content": text, "dia_id": user}]


@pytest.fixture
def memory(tmp_path, embedder):
    """acme:alice, acme:bob (planner) and globex:carol (planner, six memories), stored verbatim. Over the offline
    defaults before issue 14 (dense cosine ranking): the guard's user-by-user search is exact for a score-ordered
    retriever; the set-dependent levers of today's default (MMR, near-duplicate collapse, the lexical reranker's idf)
    rank within each user's candidates, so a cross-user search through the guard diversifies per user."""
    memory = make_memory(tmp_path / "store", embedder, "test-v1", "policy=mem0_offline_v0")
    memory.add(said("a", "Alice drinks green tea with honey every morning."), user_id="acme:alice", infer=False)
    memory.add(
        said("b", "Bob drinks green tea in the planner's morning meeting."),
        user_id="acme:bob",
        agent_id="planner",
        infer=False,
    )
    for i in range(6):
        text = f"Carol drinks green tea with honey every morning, cup {i}."
        memory.add(said("c", text), user_id="globex:carol", agent_id="planner", infer=False)
    yield memory
    memory.close()


def theirs(memory) -> list[dict]:
    return memory.get_all(user_id="globex:carol")


def test_a_tenant_cannot_reach_another_tenants_memories_over_rest(memory):
    carol = theirs(memory)
    cid = carol[0]["id"]
    before = versions(memory)
    app = create_app(memory, TOKEN, allow_reset=True, tenants=TENANTS)
    with TestClient(app) as c:
        # scope routes outside the prefix: 403, naming the prefix
        for method, path, kw in (
            ("post", "/v1/memories", {"json": {"messages": TEA, "user_id": "globex:carol"}}),
            ("post", "/v1/memories", {"json": {"messages": TEA, "agent_id": "planner"}}),  # no user: nobody's
            ("post", "/v1/memories/search", {"json": {"query": "green tea", "user_id": "globex:carol"}}),
            ("get", "/v1/memories", {"params": {"user_id": "globex:carol"}}),
            ("delete", "/v1/memories", {"params": {"user_id": "globex:carol"}}),
            ("delete", "/v1/memories", {"params": {"agent_id": "planner", "cross_user": True}}),
            ("post", "/v1/reset", {"json": {"confirm": "delete all memories"}}),
        ):
            r = getattr(c, method)(path, headers=A, **kw)
            assert r.status_code == 403 and r.json()["error"] == "forbidden", (path, kw, r.text)
            assert "acme" in r.json()["detail"]
        # id routes: 404 in the words of an unknown id, whatever scope the caller names
        for scope in (
            {"user_id": "acme:alice"},
            {"user_id": "globex:carol"},
            {"agent_id": "planner", "cross_user": True},
        ):
            for method, path, kw in (
                ("get", f"/v1/memories/{cid}", {}),
                ("put", f"/v1/memories/{cid}", {"json": {"text": "hijacked"}}),
                ("delete", f"/v1/memories/{cid}", {}),
                ("get", f"/v1/memories/{cid}/history", {}),
            ):
                outside = getattr(c, method)(path, params=scope, headers=A, **kw)
                unknown = getattr(c, method)(path.replace(cid, "no-such-id"), params=scope, headers=A, **kw)
                assert outside.status_code == unknown.status_code == 404, (scope, path, outside.text)
                assert outside.json()["detail"].replace(cid, "X") == unknown.json()["detail"].replace("no-such-id", "X")
        # cross-user reads answer the tenant's users only
        hits = c.post(
            "/v1/memories/search",
            json={"query": "green tea honey morning", "agent_id": "planner", "cross_user": True, "top_k": 5},
            headers=A,
        ).json()["results"]
        assert [m["user_id"] for m in hits] == ["acme:bob"]
        listed = c.get("/v1/memories", params={"agent_id": "planner", "cross_user": True}, headers=A).json()["results"]
        assert [m["user_id"] for m in listed] == ["acme:bob"]
        # nothing of globex's changed, not even a version
        assert theirs(memory) == carol and versions(memory) == before
        # within its prefix the tenant does everything
        added = c.post("/v1/memories", json={"messages": TEA, "user_id": "acme:zoe"}, headers=A).json()["results"]
        zid = next(e["id"] for e in added if e["event"] == "ADD")
        mine = {"user_id": "acme:zoe"}
        assert c.get(f"/v1/memories/{zid}", params=mine, headers=A).json()["user_id"] == "acme:zoe"
        assert c.put(f"/v1/memories/{zid}", json={"text": "Zoe likes tea"}, params=mine, headers=A).status_code == 200
        bob = listed[0]["id"]  # cross_user id routes reach the tenant's own memories
        assert (
            c.get(f"/v1/memories/{bob}", params={"agent_id": "planner", "cross_user": True}, headers=A).status_code
            == 200
        )
        assert len(c.get(f"/v1/memories/{zid}/history", params=mine, headers=A).json()["results"]) == 2
        assert c.delete(f"/v1/memories/{zid}", params=mine, headers=A).json()["event"] == "DELETE"
        hist = c.get(
            f"/v1/memories/{zid}/history", params={"agent_id": "", "run_id": "", "user_id": "acme:zoe"}, headers=A
        )
        assert hist.status_code == 200
        assert c.delete("/v1/memories", params={"user_id": "acme:alice"}, headers=A).json() == {"deleted": 1}
        # the other tenant and the operator see their own worlds
        assert len(c.get("/v1/memories", params={"user_id": "globex:carol"}, headers=B).json()["results"]) == 6
        assert c.get("/v1/memories", params={"user_id": "acme:bob"}, headers=B).status_code == 403
        everyone = c.get("/v1/memories", params={"agent_id": "planner", "cross_user": True}, headers=OP).json()
        assert {m["user_id"] for m in everyone["results"]} == {"acme:bob", "globex:carol"}
        assert (
            c.get("/v1/memories", params={"user_id": "acme:bob"}, headers={"Authorization": "Bearer nope"}).status_code
            == 401
        )
        assert c.post("/v1/reset", json={"confirm": "delete all memories"}, headers=OP).status_code == 200
    assert memory.get_all(user_id="globex:carol") == []


def test_cross_user_search_is_exact_when_other_tenants_fill_the_top(memory, monkeypatch):
    """Carol's six memories outrank Bob's for this query: with a fetch cap of 2 the guard must search user by user."""
    monkeypatch.setattr(tenant_guard, "FETCH_CAP", 2)
    query = "Carol drinks green tea with honey every morning"
    everyone = memory.search(query, agent_id="planner", cross_user=True, top_k=100)
    assert [m["user_id"] for m in everyone[:2]] == ["globex:carol"] * 2  # the others fill the top
    exact = [m for m in everyone if m["user_id"].startswith("acme:")][:3]
    with TestClient(create_app(memory, None, tenants=TENANTS)) as c:
        body = {"query": query, "agent_id": "planner", "cross_user": True, "top_k": 3}
        got = c.post("/v1/memories/search", json=body, headers=A).json()
    assert got["results"] == exact and [m["user_id"] for m in exact] == ["acme:bob"]


def test_a_tenant_cannot_reach_another_tenants_memories_over_mcp_http(memory):
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    carol = theirs(memory)
    cid, before = carol[0]["id"], versions(memory)

    async def session(headers, body):
        transport = streamable_http_client(f"{base}/mcp", http_client=create_mcp_http_client(headers=headers))
        async with Client(transport) as client:
            await body(client)

    async def call(client, tool, **args):
        result = await client.call_tool(tool, args)
        if result.is_error:
            return True, result.content[0].text
        out = result.structured_content  # lists come wrapped as {"result": [...]}, dicts as they are
        return False, (out["result"] if set(out) == {"result"} else out)

    async def as_acme(client):
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert "ctx" not in json.dumps(tools["search_memories"].input_schema)  # the SDK injects it
        for tool, args in (
            ("add_memory", {"messages": TEA, "user_id": "globex:carol"}),
            ("search_memories", {"query": "tea", "user_id": "globex:carol"}),
            ("list_memories", {"user_id": "globex:carol"}),
        ):
            err, text = await call(client, tool, **args)
            assert err and "forbidden:" in text and "acme" in text, (tool, text)
        for tool in ("get_memory", "memory_history", "delete_memory"):
            for scope in (
                {"user_id": "acme:alice"},
                {"user_id": "globex:carol"},
                {"agent_id": "planner", "cross_user": True},
            ):
                err, text = await call(client, tool, memory_id=cid, **scope)
                assert err and "no memory with id" in text, (tool, scope, text)
        err, found = await call(client, "search_memories", query="green tea honey", agent_id="planner", cross_user=True)
        assert not err and [m["user_id"] for m in found["result"]] == ["acme:bob"]
        err, listed = await call(client, "list_memories", agent_id="planner", cross_user=True)
        assert not err and [m["user_id"] for m in listed] == ["acme:bob"]
        err, events = await call(client, "add_memory", messages=TEA, user_id="acme:zoe")
        assert not err and any(e["event"] == "ADD" for e in events)

    async def as_operator(client):
        err, listed = await call(client, "list_memories", agent_id="planner", cross_user=True)
        assert not err and {m["user_id"] for m in listed} == {"acme:bob", "globex:carol"}

    with uvicorn_thread(mcp_http_app(memory, TOKEN, tenants=TENANTS)) as base:
        anyio.run(session, A, as_acme)
        anyio.run(session, OP, as_operator)
        assert httpx.post(f"{base}/mcp", json={}, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert theirs(memory) == carol and memory.get_all(user_id="acme:zoe")
    assert versions(memory) != before  # acme's add wrote; globex's rows are unchanged (above)


def test_an_authenticated_mcp_server_refuses_calls_without_a_caller(memory):
    from mcp import Client

    async def main():
        async with Client(create_mcp_server(memory, authenticated=True)) as client:  # in process: no HTTP request
            result = await client.call_tool("list_memories", {"user_id": "acme:bob"})
            assert result.is_error and "no authenticated caller" in result.content[0].text

    anyio.run(main)


def write(path, entries, suffix=".yaml"):
    file = path / f"tenants{suffix}"
    file.write_text(json.dumps(entries))  # JSON is YAML too
    return file


def entry(name="acme", token=A_TOKEN, prefix="acme:"):
    return {"name": name, "token_sha256": token_sha256(token), "user_id_prefix": prefix}


def test_the_tenants_file_is_checked(tmp_path):
    ok = load_tenants(write(tmp_path, {"tenants": [entry(), entry("globex", B_TOKEN, "globex:")]}, ".json"))
    assert ok == TENANTS
    for entries, words in (
        ([], "non-empty list"),
        ([{**entry(), "token": A_TOKEN}], "never a plain token"),
        ([{**entry(), "token_sha256": "abc"}], "64 hex digits"),
        ([entry(), entry("acme", B_TOKEN, "b:")], "used twice"),
        ([entry(), entry("globex", A_TOKEN, "globex:")], "same token"),
        ([entry(prefix="acme"), entry("acme2", B_TOKEN, "acme2")], "would reach"),
        ([entry(prefix="")], "non-empty strings"),
        ([entry(prefix="acme:\n")], "control characters"),
    ):
        with pytest.raises(TenantsError, match=words):
            load_tenants(write(tmp_path, entries))
    with pytest.raises(TenantsError, match="operator"):
        load_tenants(write(tmp_path, [entry(token=TOKEN)]), operator_token=TOKEN)
    with pytest.raises(TenantsError, match="cannot be read"):
        load_tenants(tmp_path / "missing.yaml")


def test_memtune_serve_reads_the_tenants_file(tmp_path, monkeypatch):
    from memtune.serve.cli import ServeConfigError, build_app, check_config, tenants_of

    monkeypatch.delenv("MEMTUNE_API_TOKEN", raising=False)
    cfg = OmegaConf.merge(
        OmegaConf.load("conf/serve.yaml"), {"bundle": str(tmp_path), "tenants_file": str(write(tmp_path, [entry()]))}
    )
    assert OmegaConf.load("conf/serve.yaml").tenants_file is None  # single-token mode by default
    token = check_config(cfg)  # no MEMTUNE_API_TOKEN needed: the tenants carry the tokens
    assert token is None and tenants_of(cfg, token) == TENANTS[:1]
    with pytest.raises(ServeConfigError, match="stdio"):
        tenants_of(OmegaConf.merge(cfg, {"transport": "mcp-stdio"}), None)
    monkeypatch.setenv("MEMTUNE_API_TOKEN", A_TOKEN)  # the operator token may not be a tenant's
    with pytest.raises(TenantsError, match="operator"):
        tenants_of(cfg, check_config(cfg))
    memory = make_memory(tmp_path / "store", _Hash())
    with TestClient(build_app(cfg, memory, None, TENANTS[:1])) as c:
        assert c.get("/v1/memories", params={"user_id": "acme:x"}, headers=A).status_code == 200
        assert c.get("/v1/memories", params={"user_id": "x"}, headers=A).status_code == 403
        assert c.get("/v1/memories", params={"user_id": "acme:x"}).status_code == 401
    memory.close()


class _Hash:
    id, dim = "test-hash-64", 64

    def embed(self, texts):
        from conftest import HashEmbedder

        return HashEmbedder().embed(texts)
