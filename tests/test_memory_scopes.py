"""The Memory API's tenancy rules and Mem0g search, in process: id-addressed calls check the caller's scope (an
outside memory is not found, in an unknown id's words), calls without user_id need the cross-user opt-in, and
search_with_relations returns the top_k memories and the graph's triplets."""

from __future__ import annotations

import pytest
from serve_support import GRAPH, GRAPH_PAIRS, GRAPH_QUERY, GRAPH_USER, graph_memory, make_memory, versions  # noqa: F401

from memtune.policies.graph.retrieve import is_graph_record
from memtune.policies.runtime.memory import Memory
from memtune.policies.runtime.reads import MemoryNotFound
from memtune.policies.types import Scope

PAIR = [{"role": "user", "content": "I adopted a grey cat called Pixel from the shelter."}]


@pytest.fixture
def memory(tmp_path, embedder):
    m = make_memory(tmp_path / "store", embedder)
    yield m
    m.close()


def test_id_calls_check_the_callers_scope(memory):
    (mine,) = memory.add(PAIR, user_id="u1", agent_id="planner", run_id="r1", infer=False)
    mid = mine["id"]
    before, version = memory.get(mid), versions(memory)
    calls = {
        "get": lambda **scope: memory.get(mid, **scope),
        "update": lambda **scope: memory.update(mid, "hijacked", **scope),
        "delete": lambda **scope: memory.delete(mid, **scope),
    }
    for scope in ({"user_id": "u2"}, {"user_id": "u1", "agent_id": "coach"}, {"user_id": "u1", "run_id": "r2"}):
        for call in calls.values():
            with pytest.raises(MemoryNotFound) as outside:
                call(**scope)
            with pytest.raises(MemoryNotFound) as unknown:
                memory.get("no-such-id", **scope)
            assert str(outside.value).replace(mid, "X") == str(unknown.value).replace("no-such-id", "X")
        assert memory.history(mid, **scope) == [] == memory.history("no-such-id", **scope)
    assert memory.get(mid) == before and versions(memory) == version
    # inside: the user's scope, the agent's, the run's
    for scope in ({"user_id": "u1"}, {"user_id": "u1", "agent_id": "planner"}, {"user_id": "u1", "run_id": "r1"}):
        assert memory.get(mid, **scope) == before and len(memory.history(mid, **scope)) == 1
    assert memory.get(mid, agent_id="planner", cross_user=True) == before
    assert memory.update(mid, "Pixel is a grey cat", user_id="u1")["event"] == "UPDATE"
    assert memory.delete(mid, user_id="u1", agent_id="planner")["event"] == "DELETE"
    assert [h["op"] for h in memory.history(mid, user_id="u1")] == ["ADD", "UPDATE", "DELETE"]
    # the in-process owner of the store may look ids up without a scope
    (other,) = memory.add(PAIR, user_id="u2", infer=False)
    assert memory.get(other["id"])["user_id"] == "u2" and memory.history(other["id"])


def test_the_store_rechecks_the_scope_at_write_time(memory, monkeypatch):
    """A memory that leaves the caller's scope between the look-up and the write is not written (store.apply
    gets the scope with the change)."""
    (mine,) = memory.add(PAIR, user_id="u1", infer=False)
    version = versions(memory)
    unchecked = type(memory)._record
    # the look-up ignores the scope: only the store's own check at write time is left
    monkeypatch.setattr(type(memory), "_record", lambda self, memory_id, scope=None: unchecked(self, memory_id))
    with pytest.raises(MemoryNotFound, match="user_id='u2'"):
        memory.update(mine["id"], "hijacked", user_id="u2")
    with pytest.raises(MemoryNotFound, match="user_id='u2'"):
        memory.delete(mine["id"], user_id="u2")
    assert versions(memory) == version


def test_reads_without_user_id_need_an_opt_in(tmp_path, embedder, memory):
    for user in ("alice", "bob"):
        memory.add(PAIR, user_id=user, agent_id="planner", infer=False)
    version = versions(memory)
    for call in (
        lambda **kw: memory.search("grey cat", agent_id="planner", **kw),
        lambda **kw: memory.search_with_relations("grey cat", run_id="r1", **kw),
        lambda **kw: memory.get_all(agent_id="planner", **kw),
        lambda **kw: memory.get_all(**kw),
    ):
        with pytest.raises(ValueError, match="memories of every user. Pass the user's user_id, or cross_user=true"):
            call()
        call(cross_user=True)
    with pytest.raises(ValueError, match="cross_user=true"):
        memory.delete_all(agent_id="planner")
    assert versions(memory) == version
    assert {m["user_id"] for m in memory.get_all(agent_id="planner", cross_user=True)} == {"alice", "bob"}
    assert {m["user_id"] for m in memory.search("grey cat", user_id="alice")} == {"alice"}
    single = Memory(memory.policy, allow_cross_user=True)  # one tenant: no per-call opt-in
    assert len(single.get_all(agent_id="planner")) == 2
    assert single.delete_all(agent_id="planner") == 2 and memory.get_all(cross_user=True) == []
    with pytest.raises(ValueError, match="allow_cross_user must be"):
        Memory(memory.policy, allow_cross_user="yes")


def test_search_with_relations_returns_top_k_memories_and_the_triplets(graph_memory):
    """The bug: search() appended the triplets after the vector top-k and truncated to top_k, so no triplet ever
    reached a caller of the served API."""
    found = graph_memory.search_with_relations(GRAPH_QUERY, user_id=GRAPH_USER, top_k=1)
    assert set(found) == {"results", "relations"} and len(found["results"]) == 1
    relations = found["relations"]
    assert len(relations) >= 3 and all(r["memory"] and r["source"] and r["destination"] for r in relations)
    assert any((r["source"], r["destination"]) == ("Caroline", "Denver") for r in relations)
    assert all(r["provenance"] and set(r["provenance"]) <= {"D1:1", "D1:2", "D1:3", "D1:4"} for r in relations)
    scores = [r["score"] for r in relations]
    assert scores == sorted(scores, reverse=True)
    # the same triplets the policy answers from (MemoryPolicy.search), in the same order
    policy_triplets = [m for m in graph_memory.policy.search(GRAPH_QUERY, Scope(GRAPH_USER)) if is_graph_record(m)]
    assert [r["id"] for r in relations] == [m.id for m in policy_triplets]
    # search() is the stored memories only, every one addressable by id
    assert graph_memory.search(GRAPH_QUERY, user_id=GRAPH_USER, top_k=1) == found["results"]
    for m in graph_memory.search(GRAPH_QUERY, user_id=GRAPH_USER, top_k=50):
        assert graph_memory.get(m["id"], user_id=GRAPH_USER)["memory"] == m["memory"]
    # threshold applies to both lists; filters select stored memories by metadata (triplets have none)
    strict = graph_memory.search_with_relations(GRAPH_QUERY, user_id=GRAPH_USER, threshold=0.1)
    assert 0 < len(strict["relations"]) < len(relations) and strict["results"]
    assert strict["relations"] == [r for r in relations if r["score"] >= 0.1]
    assert all(m["score"] >= 0.1 for m in strict["results"])
    filtered = graph_memory.search_with_relations(GRAPH_QUERY, user_id=GRAPH_USER, filters={"k": "v"})
    assert filtered == {"results": [], "relations": relations}
    assert graph_memory.search_with_relations(GRAPH_QUERY, user_id="u2") == {"results": [], "relations": []}


@pytest.mark.parametrize("merge", ["score", "append"])
def test_mem0g_results_never_hold_triplets(tmp_path, embedder, merge):
    m = make_memory(tmp_path / "s", embedder, "g", *GRAPH, f"policy.graph.retrieval.merge={merge}")
    for pair in GRAPH_PAIRS:
        m.add(pair, user_id=GRAPH_USER)
    found = m.search_with_relations(GRAPH_QUERY, user_id=GRAPH_USER, top_k=2)
    assert len(found["results"]) == 2 and found["relations"]
    assert not {r["id"] for r in found["relations"]} & {r["id"] for r in found["results"]}
    m.policy.graph.mode = "only"  # graph-only retrieval: the policy answers from triplets alone
    only = m.search_with_relations(GRAPH_QUERY, user_id=GRAPH_USER, top_k=2)
    assert only["results"] == [] and [r["id"] for r in only["relations"]] == [r["id"] for r in found["relations"]]
    m.close()
