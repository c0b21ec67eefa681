"""The MLflow pyfunc model (optimize/export/pyfunc_model.py) over a Mem0g bundle, loaded the way MLflow loads it
(load_context with the bundle as an artifact): search serves the graph's relations, id-addressed ops check the
caller's scope, reads without user_id need the opt-in, and refused requests write nothing. The registry round trip
is tests/test_export.py's."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from serve_support import GRAPH_PAIRS, GRAPH_QUERY, GRAPH_USER, versions

from memtune.policies.runtime.reads import MemoryNotFound


@pytest.fixture(scope="module")
def graph_bundle(tmp_path_factory):
    """memtune-export of the offline policy with graph memory on (spaCy stages: no LM)."""
    from memtune.optimize.export.app import export_from_overrides

    out = tmp_path_factory.mktemp("bundle") / "mem0g"
    return export_from_overrides(["policy=mem0_offline", "policy/graph=on", f"out={out}"])["bundle"]


def ask(model, requests: list[dict]) -> list[dict]:
    return model.predict(None, requests)  # (context, model_input), as MLflow's loaded model calls it


def load(bundle: str, store, **config):
    from memtune.optimize.export.pyfunc_model import PolicyModel

    model = PolicyModel()
    model.load_context(SimpleNamespace(artifacts={"bundle": bundle}, model_config={"store_uri": str(store), **config}))
    return model


def test_pyfunc_serves_relations_and_checks_scopes(graph_bundle, tmp_path):
    model = load(graph_bundle, tmp_path / "store")
    memory = model.memory
    assert memory.policy.graph is not None and memory.allow_cross_user is False
    for pair in GRAPH_PAIRS:
        ask(model, [{"op": "add", "messages": pair, "user_id": GRAPH_USER, "agent_id": "planner"}])
    ask(model, [{"op": "add", "messages": GRAPH_PAIRS[0], "user_id": "bob", "agent_id": "planner"}])

    [found] = ask(model, [{"op": "search", "query": GRAPH_QUERY, "user_id": GRAPH_USER, "top_k": 1}])
    expected = memory.search_with_relations(GRAPH_QUERY, user_id=GRAPH_USER, top_k=1)
    assert found == {"op": "search", "result": expected["results"], "relations": expected["relations"]}
    assert len(found["result"]) == 1 and found["relations"]  # the top_k memories AND the triplets
    assert any(r["source"] == "Caroline" and r["destination"] == "Denver" for r in found["relations"])
    assert {r["user_id"] for r in found["relations"]} == {GRAPH_USER}
    [answered] = ask(model, [{"op": "answer", "query": GRAPH_QUERY, "user_id": GRAPH_USER}])
    assert any(m["metadata"].get("kind") == "graph" for m in answered["result"]["memories"])

    mid = found["result"][0]["id"]
    before = versions(memory)
    refusals = [
        ({"op": "get", "memory_id": mid}, ValueError, "at least one of user_id"),
        ({"op": "delete", "memory_id": mid}, ValueError, "at least one of user_id"),
        ({"op": "answer", "query": GRAPH_QUERY}, ValueError, "at least one of user_id"),
        ({"op": "get", "memory_id": mid, "user_id": "bob"}, MemoryNotFound, "no memory with id"),
        ({"op": "update", "memory_id": mid, "text": "hijacked", "user_id": "bob"}, MemoryNotFound, "no memory"),
        ({"op": "delete", "memory_id": mid, "user_id": "bob"}, MemoryNotFound, "no memory"),
        ({"op": "delete", "memory_id": mid, "agent_id": "planner"}, ValueError, "cross_user=true"),
        ({"op": "get_all", "agent_id": "planner"}, ValueError, "cross_user=true"),
        ({"op": "search", "query": "cat", "agent_id": "planner"}, ValueError, "cross_user=true"),
        ({"op": "answer", "query": "cat", "agent_id": "planner"}, ValueError, "cross_user=true"),
        ({"op": "delete_all", "agent_id": "planner"}, ValueError, "cross_user=true"),
        ({"op": "get_all", "user_id": GRAPH_USER, "cross_user": "yes"}, ValueError, "cross_user must be"),
    ]
    for request, error, match in refusals:
        with pytest.raises(error, match=match):
            ask(model, [request])
    assert versions(memory) == before and memory.get(mid)["id"] == mid
    [history] = ask(model, [{"op": "history", "memory_id": mid, "user_id": "bob"}])
    assert history["result"] == []  # outside the scope: no history, as for an id never written

    [everyone] = ask(model, [{"op": "get_all", "agent_id": "planner", "cross_user": True}])
    assert {m["user_id"] for m in everyone["result"]} == {GRAPH_USER, "bob"}
    [got] = ask(model, [{"op": "get", "memory_id": mid, "user_id": GRAPH_USER}])
    assert got["result"] == memory.get(mid)
    [gone] = ask(model, [{"op": "delete_all", "user_id": GRAPH_USER}])
    assert gone["result"] > 0
    [after] = ask(model, [{"op": "search", "query": GRAPH_QUERY, "user_id": GRAPH_USER}])
    assert after["result"] == [] and after["relations"] == []
    [history] = ask(model, [{"op": "history", "memory_id": mid, "user_id": GRAPH_USER}])
    assert history["result"] and all(h["old_text"] == h["new_text"] == "" for h in history["result"])
    memory.close()

    single = load(graph_bundle, tmp_path / "store", allow_cross_user=True)  # model_config for one tenant
    [bobs] = ask(single, [{"op": "get_all", "agent_id": "planner"}])
    assert {m["user_id"] for m in bobs["result"]} == {"bob"}
    single.memory.close()
