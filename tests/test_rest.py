"""REST server (serve/rest.py) against a real Memory over the offline policy: same answers as in-process calls,
auth, limits, bad and hostile input that never loses stored data, and memtune-serve end to end."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from fastapi import WebSocket
from fastapi.testclient import TestClient
from omegaconf import OmegaConf
from serve_support import (
    AUTH,
    FIXTURE_USER,
    GRAPH_QUERY,
    GRAPH_USER,
    TOKEN,
    fixture_conversation,
    free_port,
    graph_memory,  # noqa: F401 (fixture)
    ingest_fixture,
    make_memory,
    memory,  # noqa: F401 (memory: fixture)
    ranked,
    snapshot,
    uvicorn_thread,
    versions,
)

from memtune.serve.middleware import resolve_token
from memtune.serve.rest import create_app


@pytest.fixture
def questions():
    return [q.question for q in fixture_conversation().questions]


@pytest.fixture
def client(memory):
    with TestClient(create_app(memory, TOKEN)) as c:
        yield c


MINE = {"user_id": FIXTURE_USER}  # the caller's scope on id-addressed routes
PAIR = [
    {"role": "Caroline", "content": "I adopted a grey cat called Pixel from the shelter on Friday."},
    {"role": "Melanie", "content": "Pixel is a lovely name, my kids would love to meet her."},
]


def test_search_over_http_equals_in_process(client, memory, questions):
    assert len(questions) >= 5 and len(snapshot(memory)) >= 5
    for question in questions:
        for top_k in (None, 3):
            r = client.post(
                "/v1/memories/search", json={"query": question, "user_id": FIXTURE_USER, "top_k": top_k}, headers=AUTH
            )
            assert r.status_code == 200, r.text
            expected = memory.search(question, user_id=FIXTURE_USER, top_k=top_k)
            assert ranked(r.json()["results"]) == ranked(expected)
            assert r.json() == {"results": expected, "relations": []}  # every field; no graph in this bundle


def test_add_over_http_equals_in_process(tmp_path, embedder, client, memory):
    twin = make_memory(tmp_path / "twin", embedder)  # the same history, added in-process
    ingest_fixture(twin)
    r = client.post(
        "/v1/memories", json={"messages": PAIR, "user_id": FIXTURE_USER, "metadata": {"src": "t"}}, headers=AUTH
    )
    assert r.status_code == 200, r.text
    events = r.json()["results"]
    expected = twin.add(PAIR, user_id=FIXTURE_USER, metadata={"src": "t"})
    strip = lambda evs: [(e["event"], e["memory"], e["previous_memory"]) for e in evs]  # noqa: E731 (ids: uuid4)
    assert strip(events) == strip(expected) and any(e["event"] == "ADD" for e in events)
    for e in events:
        if e["event"] == "ADD":
            stored = client.get(f"/v1/memories/{e['id']}", params=MINE, headers=AUTH).json()
            assert stored == memory.get(e["id"]) and stored["memory"] == e["memory"]
            assert stored["metadata"].get("src") == "t" and stored["policy_version"] == "test-v1"
    query = "which grey cat Caroline adopted from the shelter"
    over_http = client.post(
        "/v1/memories/search", json={"query": query, "user_id": FIXTURE_USER, "top_k": 5}, headers=AUTH
    ).json()["results"]
    assert ranked(over_http) == ranked(memory.search(query, user_id=FIXTURE_USER, top_k=5))
    assert "Pixel" in over_http[0]["memory"]
    assert [m["memory"] for m in over_http] == [m["memory"] for m in twin.search(query, user_id=FIXTURE_USER, top_k=5)]
    twin.close()


def test_round_trip_over_real_uvicorn(memory, questions):
    with uvicorn_thread(create_app(memory, TOKEN)) as base, httpx.Client(base_url=base, headers=AUTH) as http:
        health = http.get("/healthz").json()
        assert health["bundle_version"] == "test-v1" and health["memories"] == len(snapshot(memory))
        assert health["embedder_id"] == "test-hash-64"
        events = http.post("/v1/memories", json={"messages": PAIR, "user_id": FIXTURE_USER}).json()["results"]
        added = [e["id"] for e in events if e["event"] == "ADD"]
        assert added and all(memory.get(i)["memory"] for i in added)
        for question in questions[:5] + ["which grey cat Caroline adopted from the shelter"]:
            r = http.post("/v1/memories/search", json={"query": question, "user_id": FIXTURE_USER, "top_k": 5})
            assert ranked(r.json()["results"]) == ranked(memory.search(question, user_id=FIXTURE_USER, top_k=5))
        listed = http.get("/v1/memories", params={"user_id": FIXTURE_USER, "limit": 1000}).json()["results"]
        assert [m["id"] for m in listed] == [m["id"] for m in memory.get_all(user_id=FIXTURE_USER, limit=1000)]


def test_auth_required_and_nothing_changes_without_it(memory):
    app = create_app(memory, TOKEN, allow_reset=True)
    before, count = snapshot(memory), memory.policy.store.count()
    some_id = before[0][0]
    calls = [
        ("post", "/v1/memories", {"json": {"messages": PAIR, "user_id": FIXTURE_USER}}),
        ("post", "/v1/memories/search", {"json": {"query": "cat", "user_id": FIXTURE_USER}}),
        ("get", "/v1/memories", {"params": {"user_id": FIXTURE_USER}}),
        ("delete", "/v1/memories", {"params": {"user_id": FIXTURE_USER}}),
        ("get", f"/v1/memories/{some_id}", {}),
        ("put", f"/v1/memories/{some_id}", {"json": {"text": "hijacked"}}),
        ("delete", f"/v1/memories/{some_id}", {}),
        ("get", f"/v1/memories/{some_id}/history", {}),
        ("post", "/v1/reset", {"json": {"confirm": "delete all memories"}}),
        ("post", "/v1/memories", {"content": b"{not json"}),
    ]
    with TestClient(app) as c:
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token-0123456789"},
            {"Authorization": TOKEN},
            {"Authorization": f"Basic {TOKEN}"},
        ):
            for method, path, kwargs in calls:
                r = getattr(c, method)(path, headers=headers, **kwargs)
                assert r.status_code == 401, (method, path, headers, r.text)
                assert r.json()["error"] == "unauthorized" and r.headers["www-authenticate"].startswith("Bearer")
        assert c.get("/healthz").status_code == 200
        assert c.get("/docs").status_code == 200 and "/v1/memories/search" in c.get("/openapi.json").json()["paths"]
    assert snapshot(memory) == before and memory.policy.store.count() == count


def test_bad_input_is_refused_and_loses_nothing(client, memory):
    before, version = snapshot(memory), versions(memory)
    known = before[0][0]

    def refused(status, method, path, field=None, **kwargs):
        r = getattr(client, method)(path, headers=dict(AUTH, **kwargs.pop("headers", {})), **kwargs)
        assert r.status_code == status, (path, r.text)
        body = r.json()
        assert body["detail"] and body["error"]
        if field:
            assert field in body["detail"], body
        return body

    refused(422, "post", "/v1/memories", "messages", json={"messages": [], "user_id": FIXTURE_USER})
    refused(422, "post", "/v1/memories", "messages", json={"messages": "   ", "user_id": FIXTURE_USER})
    refused(422, "post", "/v1/memories", "messages", json={"user_id": FIXTURE_USER})
    refused(
        422,
        "post",
        "/v1/memories",
        "content",
        json={"messages": [{"role": "u", "content": ""}], "user_id": FIXTURE_USER},
    )
    refused(
        422,
        "post",
        "/v1/memories",
        "messages",
        json={"messages": [{"role": "u", "content": "hi"}] * 101, "user_id": FIXTURE_USER},
    )
    refused(
        422,
        "post",
        "/v1/memories",
        "content",
        json={"messages": [{"role": "u", "content": "x" * 20_001}], "user_id": FIXTURE_USER},
    )
    refused(422, "post", "/v1/memories", "user_id", json={"messages": "I like tea very much"})  # no scope
    refused(422, "post", "/v1/memories", "usr_id", json={"messages": "I like tea", "usr_id": "x"})  # typo
    refused(422, "post", "/v1/memories", "body", content=b'{"messages": ', headers={"content-type": "application/json"})
    refused(
        415,
        "post",
        "/v1/memories",
        "Content-Type: application/json",  # curl -d without -H: a form, not JSON
        content=b'{"messages": "I like tea a lot", "user_id": "u"}',
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    refused(422, "post", "/v1/memories/search", "top_k", json={"query": "tea", "user_id": FIXTURE_USER, "top_k": 0})
    refused(422, "post", "/v1/memories/search", "query", json={"query": "", "user_id": FIXTURE_USER})
    refused(422, "get", "/v1/memories", "user_id")
    refused(422, "get", "/v1/memories", "limit", params={"user_id": FIXTURE_USER, "limit": 0})
    refused(422, "delete", "/v1/memories", "user_id")  # delete_all of everything: refused
    refused(422, "put", f"/v1/memories/{known}", "text", json={"text": ""}, params=MINE)
    # id-addressed routes need the caller's scope
    for method, path, kwargs in (
        ("get", f"/v1/memories/{known}", {}),
        ("put", f"/v1/memories/{known}", {"json": {"text": "new text"}}),
        ("delete", f"/v1/memories/{known}", {}),
        ("get", f"/v1/memories/{known}/history", {}),
    ):
        refused(422, method, path, "at least one of user_id, agent_id, run_id", **kwargs)
        refused(422, method, path, "cross_user", params={**MINE, "cross_user": "maybe"}, **kwargs)
        refused(422, method, path, "colour", params={**MINE, "colour": "red"}, **kwargs)
    # Oversized bodies: 413 by Content-Length, and while streaming a chunked body that has none.
    big = b'{"messages": "' + b"x" * 1_100_000 + b'", "user_id": "' + FIXTURE_USER.encode() + b'"}'
    refused(413, "post", "/v1/memories", content=big, headers={"content-type": "application/json"})
    chunks = (big[i : i + 65536] for i in range(0, len(big), 65536))
    refused(413, "post", "/v1/memories", content=chunks, headers={"content-type": "application/json"})
    # Unknown ids: 404 everywhere, and a control character in an id is a clear 4xx, not a 500.
    for method, path, kwargs in (
        ("get", "/v1/memories/no-such-id", {}),
        ("put", "/v1/memories/no-such-id", {"json": {"text": "new text"}}),
        ("delete", "/v1/memories/no-such-id", {}),
        ("get", "/v1/memories/no-such-id/history", {}),
    ):
        assert "no-such-id" in refused(404, method, path, params=MINE, **kwargs)["detail"]
    assert client.get("/v1/memories/a%00b", params=MINE, headers=AUTH).status_code in (400, 404, 422)
    assert snapshot(memory) == before and versions(memory) == version


@pytest.mark.parametrize("hostile", ["x' OR '1'='1", 'a"b', "a\\b", "Zoë 🙂 用户", "%' --", "*", "user_id = ''"])
def test_hostile_user_ids_are_isolated(client, memory, hostile):
    before = snapshot(memory)
    r = client.post("/v1/memories", json={"messages": PAIR, "user_id": hostile}, headers=AUTH)
    assert r.status_code == 200, r.text
    mine = client.get("/v1/memories", params={"user_id": hostile}, headers=AUTH).json()["results"]
    assert mine and {m["user_id"] for m in mine} == {hostile}
    hits = client.post("/v1/memories/search", json={"query": "Pixel the cat", "user_id": hostile}, headers=AUTH).json()[
        "results"
    ]
    assert hits and {m["user_id"] for m in hits} == {hostile}
    assert client.delete("/v1/memories", params={"user_id": hostile}, headers=AUTH).json() == {"deleted": len(mine)}
    assert client.get("/v1/memories", params={"user_id": hostile}, headers=AUTH).json()["results"] == []
    assert snapshot(memory) == before  # the fixture user's memories were never matched


def test_control_characters_in_scope_are_refused(client, memory):
    before = snapshot(memory)
    for bad in ("a\x00b", "line\nbreak"):
        r = client.post("/v1/memories", json={"messages": PAIR, "user_id": bad}, headers=AUTH)
        assert r.status_code == 422 and "user_id" in r.json()["detail"]
        r = client.get("/v1/memories", params={"user_id": bad}, headers=AUTH)
        assert r.status_code == 422 and "user_id" in r.json()["detail"]
    assert snapshot(memory) == before


def test_update_delete_history_and_scoped_delete(client, memory):
    other = client.post("/v1/memories", json={"messages": PAIR, "user_id": "someone-else"}, headers=AUTH)
    target = snapshot(memory)[0][0]
    r = client.put(
        f"/v1/memories/{target}", json={"text": "Caroline moved to Lisbon in 2024"}, params=MINE, headers=AUTH
    )
    assert r.status_code == 200 and r.json()["event"] == "UPDATE"
    got = client.get(f"/v1/memories/{target}", params=MINE, headers=AUTH).json()
    assert got["memory"] == "Caroline moved to Lisbon in 2024"
    history = client.get(f"/v1/memories/{target}/history", params=MINE, headers=AUTH).json()["results"]
    assert history == memory.history(target) and len(history) >= 2
    assert client.delete(f"/v1/memories/{target}", params=MINE, headers=AUTH).json()["event"] == "DELETE"
    assert client.get(f"/v1/memories/{target}", params=MINE, headers=AUTH).status_code == 404
    n = len(snapshot(memory))
    assert client.delete("/v1/memories", params={"user_id": FIXTURE_USER}, headers=AUTH).json() == {"deleted": n}
    assert memory.get_all(user_id="someone-else")  # other scopes untouched
    assert other.status_code == 200
    # forgetting the scope blanked the text of its history, the deleted memory's included
    history = client.get(f"/v1/memories/{target}/history", params=MINE, headers=AUTH).json()["results"]
    ops = [h["op"] for h in history]
    assert ops[0] == "ADD" and ops[-2:] == ["UPDATE", "DELETE"]
    assert all(h["old_text"] == h["new_text"] == "" and h["metadata"]["purged"] for h in history)


def test_reset_is_guarded(memory):
    count = memory.policy.store.count()
    with TestClient(create_app(memory, TOKEN)) as c:
        r = c.post("/v1/reset", json={"confirm": "delete all memories"}, headers=AUTH)
        assert r.status_code == 403 and "allow_reset=true" in r.json()["detail"]
    with TestClient(create_app(memory, TOKEN, allow_reset=True)) as c:
        assert c.post("/v1/reset", json={"confirm": "yes"}, headers=AUTH).status_code == 422
        assert memory.policy.store.count() == count > 0
        assert c.post("/v1/reset", json={"confirm": "delete all memories"}, headers=AUTH).json() == {"reset": True}
    assert memory.policy.store.count() == 0


def test_no_token_only_when_allowed_and_on_loopback(monkeypatch, memory):
    monkeypatch.delenv("MEMTUNE_API_TOKEN", raising=False)
    with pytest.raises(ValueError, match="MEMTUNE_API_TOKEN"):
        resolve_token(None, allow_no_auth=False, host="127.0.0.1")
    with pytest.raises(ValueError, match="loopback"):
        resolve_token(None, allow_no_auth=True, host="0.0.0.0")
    with pytest.raises(ValueError, match="at least 16"):
        resolve_token("short", allow_no_auth=False, host="0.0.0.0")
    assert resolve_token(None, allow_no_auth=True, host="127.0.0.1") is None
    monkeypatch.setenv("MEMTUNE_API_TOKEN", TOKEN)
    assert resolve_token(None, allow_no_auth=False, host="0.0.0.0") == TOKEN
    with TestClient(create_app(memory, None)) as c:  # open server: no header needed
        assert c.get("/v1/memories", params={"user_id": FIXTURE_USER}).status_code == 200


def test_memtune_serve_refuses_to_start_without_bundle_or_token(tmp_path, monkeypatch, capsys):
    from memtune.serve.cli import ServeConfigError, check_config, main

    monkeypatch.delenv("MEMTUNE_API_TOKEN", raising=False)

    def cfg(**kw):
        return OmegaConf.create({"bundle": None, "transport": "rest", "host": "127.0.0.1", "allow_no_auth": False} | kw)

    with pytest.raises(ServeConfigError, match="bundle=path/to/bundle"):
        check_config(cfg())
    with pytest.raises(ServeConfigError, match="MEMTUNE_API_TOKEN"):
        check_config(cfg(bundle=str(tmp_path)))
    with pytest.raises(ServeConfigError, match="mcp-stdio"):
        check_config(cfg(bundle=str(tmp_path), transport="grpc"))
    assert check_config(cfg(bundle=str(tmp_path), transport="mcp-stdio")) is None  # stdio needs no token
    # The command line (Hydra app, in this process): an empty directory is not a bundle -> one line, exit code 2.
    monkeypatch.setattr(
        sys, "argv", ["memtune-serve", f"bundle={tmp_path}", "allow_no_auth=true", f"store_uri={tmp_path / 'store'}"]
    )
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2 and "bundle.json" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()  # nothing was created


def test_export_then_memtune_serve_end_to_end(tmp_path):
    """The issue's check: memtune-export an offline policy, start the real `memtune-serve bundle=...` process,
    then add and search over HTTP (MiniLM embeddings, as in production)."""
    from memtune.optimize.export.app import export_from_overrides

    bundle = export_from_overrides(["policy=mem0_offline", f"out={tmp_path / 'bundle'}"])
    port = free_port()
    env = dict(os.environ, MEMTUNE_API_TOKEN=TOKEN)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "memtune.serve.cli",
            f"bundle={bundle['bundle']}",
            f"store_uri={tmp_path / 'store'}",
            f"port={port}",
            "log_level=warning",
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=AUTH, timeout=60) as http:
            deadline = time.time() + 120
            while True:
                try:
                    health = http.get("/healthz")
                    if health.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert server.poll() is None, server.stderr.read()
                assert time.time() < deadline, "memtune-serve did not come up in 120 s"
                time.sleep(0.25)
            assert health.json()["bundle_version"] == bundle["version"] and health.json()["memories"] == 0
            assert http.post("/v1/memories", json={"messages": PAIR, "user_id": "u1"}).status_code == 200
            hits = http.post(
                "/v1/memories/search", json={"query": "What is the name of the cat?", "user_id": "u1", "top_k": 3}
            ).json()["results"]
            assert "Pixel" in hits[0]["memory"] and hits[0]["policy_version"] == bundle["version"]
            assert http.post("/v1/memories/search", json={"query": "cat", "user_id": "u2"}).json()["results"] == []
            assert (
                http.get("/v1/memories", params={"user_id": "u1"}, headers={"Authorization": "Bearer nope"}).status_code
                == 401
            )
    finally:
        server.terminate()
        server.wait(timeout=30)


# ---- scopes on id-addressed routes, cross-user reads ---------------------------------------------------------------
def test_id_routes_answer_404_outside_the_callers_scope(client, memory):
    mine = client.post(
        "/v1/memories", json={"messages": PAIR, "user_id": "u1", "agent_id": "planner"}, headers=AUTH
    ).json()["results"]
    mid = next(e["id"] for e in mine if e["event"] == "ADD")
    before, version = snapshot(memory), versions(memory)
    theirs = memory.get(mid)
    for scope in ({"user_id": "u2"}, {"user_id": "u1", "agent_id": "coach"}, {"user_id": "u1", "run_id": "r9"}):
        for method, path, kwargs in (
            ("get", f"/v1/memories/{mid}", {}),
            ("put", f"/v1/memories/{mid}", {"json": {"text": "hijacked"}}),
            ("delete", f"/v1/memories/{mid}", {}),
            ("get", f"/v1/memories/{mid}/history", {}),
        ):
            outside = getattr(client, method)(path, params=scope, headers=AUTH, **kwargs)
            unknown = getattr(client, method)(path.replace(mid, "no-such-id"), params=scope, headers=AUTH, **kwargs)
            assert outside.status_code == unknown.status_code == 404, (scope, path, outside.text)
            # the same words as for an id that does not exist: nothing tells the caller the memory is there
            assert outside.json()["detail"].replace(mid, "X") == unknown.json()["detail"].replace("no-such-id", "X")
    assert memory.get(mid) == theirs and snapshot(memory) == before and versions(memory) == version
    # inside the scope (the agent's own, or the whole user's): found
    for scope in ({"user_id": "u1"}, {"user_id": "u1", "agent_id": "planner"}):
        assert client.get(f"/v1/memories/{mid}", params=scope, headers=AUTH).json() == theirs
    # agent_id alone spans every user: refused unless the caller opts in
    r = client.get(f"/v1/memories/{mid}", params={"agent_id": "planner"}, headers=AUTH)
    assert r.status_code == 400 and "cross_user=true" in r.json()["detail"] and "user_id" in r.json()["detail"]
    r = client.get(f"/v1/memories/{mid}", params={"agent_id": "planner", "cross_user": "true"}, headers=AUTH)
    assert r.status_code == 200 and r.json() == theirs
    r = client.put(f"/v1/memories/{mid}", json={"text": "Pixel is a grey cat"}, params={"user_id": "u1"}, headers=AUTH)
    assert r.status_code == 200 and memory.get(mid)["memory"] == "Pixel is a grey cat"
    assert client.delete(f"/v1/memories/{mid}", params={"user_id": "u1"}, headers=AUTH).json()["event"] == "DELETE"
    assert len(client.get(f"/v1/memories/{mid}/history", params={"user_id": "u1"}, headers=AUTH).json()["results"]) == 3
    assert client.get(f"/v1/memories/{mid}/history", params={"user_id": "u2"}, headers=AUTH).status_code == 404


def test_reads_without_user_id_need_an_explicit_opt_in(tmp_path, embedder):
    # both users hold the same text: on mem0_offline the near-duplicate collapse (0.95) would keep one of them
    memory = make_memory(tmp_path / "store", embedder, "test-v1", "policy=mem0_offline_v0")
    for user in ("alice", "bob"):
        memory.add(PAIR, user_id=user, agent_id="planner")
    before, version = snapshot(memory), versions(memory)
    with TestClient(create_app(memory, TOKEN)) as c:
        for method, path, kwargs in (
            ("get", "/v1/memories", {"params": {"agent_id": "planner"}}),
            ("delete", "/v1/memories", {"params": {"agent_id": "planner"}}),
            ("post", "/v1/memories/search", {"json": {"query": "grey cat", "agent_id": "planner"}}),
            ("get", "/v1/memories", {"params": {"run_id": "r1"}}),
        ):
            r = getattr(c, method)(path, headers=AUTH, **kwargs)
            assert r.status_code == 400, r.text
            assert "every user" in r.json()["detail"] and "cross_user=true" in r.json()["detail"]
        assert snapshot(memory) == before and versions(memory) == version
        everyone = c.get("/v1/memories", params={"agent_id": "planner", "cross_user": True}, headers=AUTH).json()
        assert {m["user_id"] for m in everyone["results"]} == {"alice", "bob"}
        hits = c.post(
            "/v1/memories/search", json={"query": "grey cat", "agent_id": "planner", "cross_user": True}, headers=AUTH
        ).json()["results"]
        assert {m["user_id"] for m in hits} == {"alice", "bob"}
        alice = c.get("/v1/memories", params={"user_id": "alice", "agent_id": "planner"}, headers=AUTH).json()
        assert {m["user_id"] for m in alice["results"]} == {"alice"}  # naming the user needs no opt-in
    memory.allow_cross_user = True  # memtune-serve allow_cross_user=true: a single-tenant deployment
    with TestClient(create_app(memory, TOKEN)) as c:
        r = c.get("/v1/memories", params={"agent_id": "planner"}, headers=AUTH)
        assert r.status_code == 200 and len(r.json()["results"]) == len(everyone["results"])
    memory.close()


def test_memtune_serve_passes_allow_cross_user(tmp_path, embedder, monkeypatch):
    from memtune.serve import cli

    seen = {}

    def from_bundle(bundle, store_uri, **kwargs):
        seen.update(kwargs)
        return "memory"

    monkeypatch.setattr("memtune.policies.runtime.memory.Memory.from_bundle", from_bundle)
    cfg = OmegaConf.load("conf/serve.yaml")
    assert cfg.allow_cross_user is False  # the default refuses reads across users
    cli.load_memory(OmegaConf.merge(cfg, {"bundle": "b", "store_uri": "s", "cache_dir": None}))
    assert seen["allow_cross_user"] is False
    cli.load_memory(OmegaConf.merge(cfg, {"bundle": "b", "store_uri": "s", "allow_cross_user": True}))
    assert seen["allow_cross_user"] is True


# ---- Mem0g: the graph's triplets are served ------------------------------------------------------------------------
def test_search_serves_the_graph_relations_of_a_mem0g_bundle(graph_memory):
    expected = graph_memory.search_with_relations(GRAPH_QUERY, user_id=GRAPH_USER, top_k=1)
    assert len(expected["results"]) == 1 and expected["relations"]  # top_k memories AND the triplets
    assert any(r["source"] == "Caroline" and r["destination"] == "Denver" for r in expected["relations"])
    assert {r["user_id"] for r in expected["relations"]} == {GRAPH_USER}
    assert expected["results"] == graph_memory.search(GRAPH_QUERY, user_id=GRAPH_USER, top_k=1)
    with TestClient(create_app(graph_memory, TOKEN)) as c:
        r = c.post("/v1/memories/search", json={"query": GRAPH_QUERY, "user_id": GRAPH_USER, "top_k": 1}, headers=AUTH)
        assert r.status_code == 200 and r.json() == expected
        assert "relations" in c.get("/openapi.json").json()["components"]["schemas"]["SearchOut"]["properties"]
        # another user's search sees none of them
        other = c.post("/v1/memories/search", json={"query": GRAPH_QUERY, "user_id": "u2"}, headers=AUTH).json()
        assert other == {"results": [], "relations": []}
        # forgetting the user forgets its graph too
        assert c.delete("/v1/memories", params={"user_id": GRAPH_USER}, headers=AUTH).json()["deleted"] > 0
        r = c.post("/v1/memories/search", json={"query": GRAPH_QUERY, "user_id": GRAPH_USER}, headers=AUTH)
        assert r.json() == {"results": [], "relations": []}


# ---- non-HTTP ASGI scopes fail closed -----------------------------------------------------------------------------
def test_websockets_need_the_token_and_unknown_scopes_are_refused(memory):
    import anyio
    from starlette.websockets import WebSocketDisconnect

    from memtune.serve.middleware import BearerAuth

    app = create_app(memory, TOKEN)

    @app.websocket("/v1/ws-probe")  # the REST app serves no websocket; a probe shows what would reach one
    async def probe(ws: WebSocket):
        await ws.accept()
        await ws.send_text("inside")
        await ws.close()

    with TestClient(app) as c:
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
            for path in ("/v1/ws-probe", "/healthz"):  # open HTTP paths are not open to websockets
                with pytest.raises(WebSocketDisconnect) as closed:
                    with c.websocket_connect(path, headers=headers) as ws:
                        ws.receive_text()
                assert (closed.value.code, closed.value.reason) == (1008, "unauthorized")
        with c.websocket_connect("/v1/ws-probe", headers=AUTH) as ws:
            assert ws.receive_text() == "inside"

    reached = []

    async def inner(scope, receive, send):
        reached.append(scope["type"])

    guard = BearerAuth(inner, TOKEN)

    async def nothing():
        return {"type": "lifespan.startup"}

    async def ignore(message):
        pass

    anyio.run(guard, {"type": "lifespan"}, nothing, ignore)
    assert reached == ["lifespan"]  # start-up and shutdown carry no caller: passed on
    with pytest.raises(RuntimeError, match="refuses ASGI scope type 'webtransport'"):
        anyio.run(guard, {"type": "webtransport", "headers": []}, nothing, ignore)
    assert reached == ["lifespan"]
