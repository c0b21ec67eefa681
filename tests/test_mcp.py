"""MCP server (serve/mcp_server.py) with the official SDK's client: in-process, and over real streamable HTTP on
localhost; the tools return what the in-process Memory API returns, and refused calls change nothing."""

from __future__ import annotations

import anyio
import httpx
import pytest
from mcp import Client
from serve_support import (  # noqa: F401 (memory, graph_memory: fixtures)
    AUTH,
    FIXTURE_USER,
    GRAPH_QUERY,
    GRAPH_USER,
    TOKEN,
    fixture_conversation,
    graph_memory,
    make_memory,
    memory,
    ranked,
    snapshot,
    uvicorn_thread,
    versions,
)

from memtune.serve.mcp_server import create_mcp_server, mcp_http_app

TOOLS = {"add_memory", "search_memories", "list_memories", "get_memory", "memory_history", "delete_memory"}
PAIR = [
    {"role": "Caroline", "content": "I adopted a grey cat called Pixel from the shelter on Friday."},
    {"role": "Melanie", "content": "Pixel is a lovely name, my kids would love to meet her."},
]


async def call(client, tool, **args):
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content[0].text
    out = result.structured_content  # lists come wrapped as {"result": [...]}, dicts as they are
    return out["result"] if set(out) == {"result"} else out


async def refused(client, tool, **args) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error, (tool, args)
    return result.content[0].text


def test_tools_in_process_match_memory_api(memory):
    questions = [q.question for q in fixture_conversation().questions]

    async def main():
        async with Client(create_mcp_server(memory)) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            assert TOOLS <= tools
            for question in questions:
                found = await call(client, "search_memories", query=question, user_id=FIXTURE_USER, top_k=5)
                assert found["relations"] == []  # no graph memory in this bundle
                assert ranked(found["result"]) == ranked(memory.search(question, user_id=FIXTURE_USER, top_k=5))
                assert found["result"] == memory.search(question, user_id=FIXTURE_USER, top_k=5)
            events = await call(client, "add_memory", messages=PAIR, user_id=FIXTURE_USER)
            added = [e["id"] for e in events if e["event"] == "ADD"]
            got = await call(client, "get_memory", memory_id=added[0], user_id=FIXTURE_USER)
            assert added and got == memory.get(added[0])
            query = "which grey cat Caroline adopted from the shelter"
            hits = (await call(client, "search_memories", query=query, user_id=FIXTURE_USER))["result"]
            assert ranked(hits) == ranked(memory.search(query, user_id=FIXTURE_USER))
            assert "Pixel" in hits[0]["memory"]
            listed = await call(client, "list_memories", user_id=FIXTURE_USER, limit=1000)
            assert [m["id"] for m in listed] == [m["id"] for m in memory.get_all(user_id=FIXTURE_USER, limit=1000)]
            history = await call(client, "memory_history", memory_id=added[0], user_id=FIXTURE_USER)
            assert history == memory.history(added[0])
            deleted = await call(client, "delete_memory", memory_id=added[0], user_id=FIXTURE_USER)
            assert deleted["event"] == "DELETE"
            assert added[0] not in dict(snapshot(memory))

    anyio.run(main)


def test_refused_tool_calls_name_the_problem_and_change_nothing(memory):
    before, version = snapshot(memory), versions(memory)
    known = before[0][0]

    async def main():
        async with Client(create_mcp_server(memory)) as client:
            assert "messages" in await refused(client, "add_memory", messages=[], user_id=FIXTURE_USER)
            assert "user_id" in await refused(client, "add_memory", messages="I like green tea a lot")
            assert "content" in await refused(
                client, "add_memory", messages=[{"role": "u", "content": "x" * 20_001}], user_id=FIXTURE_USER
            )
            assert "user_id" in await refused(client, "add_memory", messages=PAIR, user_id="a\x00b")
            assert "top_k" in await refused(client, "search_memories", query="tea", user_id=FIXTURE_USER, top_k=0)
            assert "user_id" in await refused(client, "list_memories")
            for tool in ("get_memory", "memory_history", "delete_memory"):
                assert "no-such-id" in await refused(client, tool, memory_id="no-such-id", user_id=FIXTURE_USER)
                # the caller's scope is required; outside it the memory is "not found", in an unknown id's words
                assert "at least one of user_id" in await refused(client, tool, memory_id=known)
                outside = await refused(client, tool, memory_id=known, user_id="mallory")
                unknown = await refused(client, tool, memory_id="no-such-id", user_id="mallory")
                assert outside.replace(known, "X") == unknown.replace("no-such-id", "X")
                assert "cross_user=true" in await refused(client, tool, memory_id=known, agent_id="planner")
            assert "cross_user=true" in await refused(client, "list_memories", agent_id="planner")
            assert "cross_user=true" in await refused(client, "search_memories", query="tea", run_id="r1")
            assert versions(memory) == version  # no refused call wrote anything
            hostile = "x' OR '1'='1"
            await call(client, "add_memory", messages=PAIR, user_id=hostile)
            mine = await call(client, "list_memories", user_id=hostile)
            assert mine and {m["user_id"] for m in mine} == {hostile}
            assert "no memory" in await refused(client, "get_memory", memory_id=mine[0]["id"], user_id=FIXTURE_USER)

    anyio.run(main)
    assert snapshot(memory) == before


def test_streamable_http_with_auth(memory):
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    count = memory.policy.store.count()
    with uvicorn_thread(mcp_http_app(memory, TOKEN)) as base:
        # Without the token: 401 before the MCP layer, nothing stored.
        r = httpx.post(
            f"{base}/mcp",
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "add_memory", "arguments": {"messages": PAIR, "user_id": "u"}},
            },
        )
        assert r.status_code == 401 and memory.policy.store.count() == count
        health = httpx.get(f"{base}/healthz").json()
        assert health["memories"] == count and health["bundle_version"] == "test-v1"

        async def session():
            # The SDK's HTTP transport takes a pre-configured (httpx2) client for headers such as the token.
            transport = streamable_http_client(f"{base}/mcp", http_client=create_mcp_http_client(headers=AUTH))
            async with Client(transport) as client:
                events = await call(client, "add_memory", messages=PAIR, user_id=FIXTURE_USER)
                assert any(e["event"] == "ADD" for e in events)
                for question in [
                    "which grey cat Caroline adopted from the shelter",
                    *[q.question for q in fixture_conversation().questions[:5]],
                ]:
                    found = await call(client, "search_memories", query=question, user_id=FIXTURE_USER, top_k=5)
                    assert ranked(found["result"]) == ranked(memory.search(question, user_id=FIXTURE_USER, top_k=5))

        anyio.run(session)
    assert memory.policy.store.count() > count


@pytest.mark.slow
def test_export_then_memtune_serve_mcp_stdio(tmp_path):
    """memtune-export an offline policy, then let the SDK's stdio client start `memtune-serve transport=mcp-stdio`
    (as an MCP client config does) and add + search through it."""
    import os
    import sys

    from mcp import StdioServerParameters

    from memtune.optimize.export.app import export_from_overrides

    bundle = export_from_overrides(["policy=mem0_offline", f"out={tmp_path / 'bundle'}"])
    params = StdioServerParameters(
        command=sys.executable,
        env=dict(os.environ),
        args=[
            "-m",
            "memtune.serve.cli",
            f"bundle={bundle['bundle']}",
            f"store_uri={tmp_path / 'store'}",
            "transport=mcp-stdio",
            "log_level=warning",
        ],
    )

    async def main():
        async with Client(params) as client:
            assert TOOLS <= {t.name for t in (await client.list_tools()).tools}
            events = await call(client, "add_memory", messages=PAIR, user_id="u1")
            assert any(e["event"] == "ADD" for e in events)
            found = await call(client, "search_memories", query="What is the name of the cat?", user_id="u1", top_k=3)
            hits = found["result"]
            assert "Pixel" in hits[0]["memory"] and hits[0]["policy_version"] == bundle["version"]

    anyio.run(main)


def test_mem0g_relations_and_scoped_ids_over_mcp(graph_memory):
    expected = graph_memory.search_with_relations(GRAPH_QUERY, user_id=GRAPH_USER, top_k=1)
    assert len(expected["results"]) == 1 and expected["relations"]
    mid = expected["results"][0]["id"]
    before = versions(graph_memory)

    async def main():
        async with Client(create_mcp_server(graph_memory)) as client:
            found = await call(client, "search_memories", query=GRAPH_QUERY, user_id=GRAPH_USER, top_k=1)
            assert found == {"result": expected["results"], "relations": expected["relations"]}
            assert any(r["source"] == "Caroline" and r["destination"] == "Denver" for r in found["relations"])
            other = await call(client, "search_memories", query=GRAPH_QUERY, user_id="u2")
            assert other == {"result": [], "relations": []}
            assert (await call(client, "get_memory", memory_id=mid, user_id=GRAPH_USER))["id"] == mid
            assert "no memory" in await refused(client, "delete_memory", memory_id=mid, user_id="u2")
            both = await call(client, "get_memory", memory_id=mid, agent_id="", run_id="", user_id=GRAPH_USER)
            assert both["user_id"] == GRAPH_USER

    anyio.run(main)
    assert versions(graph_memory) == before and graph_memory.get(mid)["id"] == mid


def test_cross_user_opt_in_over_mcp(tmp_path, embedder):
    # both users hold the same text: on mem0_offline the near-duplicate collapse (0.95) would keep one of them
    memory = make_memory(tmp_path / "store", embedder, "test-v1", "policy=mem0_offline_v0")
    for user in ("alice", "bob"):
        memory.add(PAIR, user_id=user, agent_id="planner")

    async def main():
        async with Client(create_mcp_server(memory)) as client:
            everyone = await call(client, "list_memories", agent_id="planner", cross_user=True)
            assert {m["user_id"] for m in everyone} == {"alice", "bob"}
            found = await call(client, "search_memories", query="grey cat", agent_id="planner", cross_user=True)
            assert {m["user_id"] for m in found["result"]} == {"alice", "bob"}
            mid = everyone[0]["id"]
            got = await call(client, "get_memory", memory_id=mid, agent_id="planner", cross_user=True)
            assert got["id"] == mid

    anyio.run(main)
    memory.close()
