"""Memory, the runtime API: the contract the REST / MCP servers rely on, scopes, verbatim adds, update / delete
through the history, filtered search, importing existing records, input validation that never loses data."""

from __future__ import annotations

import functools
import json

import pytest
from hydra import compose, initialize_config_module
from serve_support import versions

from memtune.policies.build import build_policy
from memtune.policies.runtime.memory import Memory
from memtune.policies.runtime.reads import MemoryNotFound
from memtune.policies.types import Message

MEMORY_KEYS = {
    "id",
    "memory",
    "user_id",
    "agent_id",
    "run_id",
    "provenance",
    "timestamp",
    "created_at",
    "updated_at",
    "metadata",
    "score",
    "policy_version",
    "embedder_id",
    "valid",  # soft invalidation (tests/test_history_api.py)
    "invalid_at",
    "superseded_by",
}
EVENT_KEYS = {"event", "id", "memory", "previous_memory"}


@functools.cache  # composing takes ~0.2 s; build_policy does not modify the config
def offline_cfg(*overrides):
    with initialize_config_module("memtune.conf", version_base="1.3"):
        return compose("eval", overrides=["policy=mem0_offline", "lm=none", *overrides])


@pytest.fixture
def memory(tmp_path, embedder):
    m = Memory(build_policy(offline_cfg(), tmp_path / "store", embedder=embedder), bundle_version="b-1")
    yield m
    m.close()


@pytest.fixture
def memory_v0(tmp_path, embedder):
    """Over the offline defaults before issue 14 (no cosine threshold): the contract is the shape of what the API
    returns, not the policy's ranking; the hashing embedder's weak cosines fall under mem0_offline's 0.25."""
    cfg = offline_cfg("policy=mem0_offline_v0")
    m = Memory(build_policy(cfg, tmp_path / "store", embedder=embedder), bundle_version="b-1")
    yield m
    m.close()


def pair(user: str, assistant: str = "Cool, thanks!", n: int = 1) -> list[dict]:
    return [
        {"role": "user", "content": user, "dia_id": f"D1:{2 * n - 1}", "timestamp": "8 May 2023"},
        {"role": "assistant", "content": assistant, "dia_id": f"D1:{2 * n}"},
    ]


def texts(results: list[dict]) -> list[str]:
    return [r["memory"] for r in results]


# ---- the contract ------------------------------------------------------------------------------------------------
def test_add_search_get_return_the_contract_shapes(memory_v0, embedder):
    memory = memory_v0
    events = memory.add(
        pair("I moved to Lisbon last spring with my two cats."),
        user_id="u1",
        agent_id="a1",
        metadata={"source": "chat"},
    )
    assert events and all(set(e) == EVENT_KEYS for e in events)
    assert [e["event"] for e in events] == ["ADD"]
    assert events[0]["memory"] == "user: I moved to Lisbon last spring with my two cats."
    assert events[0]["previous_memory"] == ""
    hits = memory.search("Where does the user live now? Lisbon", user_id="u1")
    assert [set(h) for h in hits] == [MEMORY_KEYS]
    hit = hits[0]
    assert hit["id"] == events[0]["id"] and 0 < hit["score"] <= 1
    assert (hit["user_id"], hit["agent_id"], hit["run_id"]) == ("u1", "a1", "")
    assert hit["provenance"] == ["D1:1"] and hit["timestamp"] == "8 May 2023"
    assert hit["metadata"] == {"source": "chat"}
    assert hit["policy_version"] == "b-1" and hit["embedder_id"] == embedder.id
    got = memory.get(hit["id"])
    assert got == {**hit, "score": None}
    assert memory.get_all(user_id="u1") == [got]
    json.dumps([events, hits, got, memory.history(hit["id"])])  # all plain JSON


def test_scopes_are_isolated_and_shared_between_agents_of_a_user(memory):
    memory.add("My favourite colour is teal and I paint every weekend.", user_id="u1", agent_id="a1")
    memory.add("My favourite colour is crimson and I paint every weekend.", user_id="u2", agent_id="a1")
    memory.add("I run the Berlin marathon in my favourite colour every year.", user_id="u1", agent_id="a2", run_id="r9")
    q = "what is the favourite colour"
    # the agent a2 of u1 finds what agent a1 learnt about u1: agent_id empty = every agent of the user
    assert len(memory.search(q, user_id="u1")) == 2
    assert all(h["user_id"] == "u1" for h in memory.search(q, user_id="u1"))
    assert texts(memory.search(q, user_id="u1", agent_id="a1")) == [
        "user: My favourite colour is teal and I paint every weekend."
    ]
    assert texts(memory.search(q, user_id="u2")) == ["user: My favourite colour is crimson and I paint every weekend."]
    assert texts(memory.search(q, run_id="r9", cross_user=True)) == [
        "user: I run the Berlin marathon in my favourite colour every year."
    ]
    assert memory.search(q, user_id="u3") == [] and memory.get_all(user_id="u3") == []
    # agent_id alone spans users (both u1's and u2's memories of agent a1): only on purpose
    assert len(memory.get_all(agent_id="a1", cross_user=True)) == 2 and len(memory.get_all(cross_user=True)) == 3
    assert memory.get_all(user_id="u1", limit=1) == memory.get_all(user_id="u1")[:1]


def test_writes_need_an_owner(memory):
    for call in (
        lambda: memory.add("I like tea very much indeed."),
        lambda: memory.delete_all(),
        lambda: memory.import_records(["I like tea very much indeed."]),
    ):
        with pytest.raises(ValueError, match="at least one of user_id, agent_id, run_id"):
            call()
    assert memory.get_all(cross_user=True) == []


def test_infer_false_stores_text_verbatim_without_the_policy(memory, monkeypatch):
    def no_extraction(*args, **kwargs):
        raise AssertionError("infer=False must not run extraction")

    monkeypatch.setattr(memory.policy.extractor, "extract", no_extraction)
    msgs = [
        {"speaker": "Caroline", "text": "ok", "dia_id": "D3:1", "timestamp": "1 Jan 2024"},
        Message("Mel", "Same text twice.", "D3:2"),
    ]
    events = memory.add(msgs, user_id="u1", infer=False, metadata={"k": 1})
    assert [e["event"] for e in events] == ["ADD", "ADD"]
    stored = memory.get_all(user_id="u1")
    by_text = {m["memory"]: m for m in stored}
    assert set(by_text) == {"ok", "Same text twice."}  # no speaker prefix, no small-talk filter
    assert by_text["ok"]["provenance"] == ["D3:1"] and by_text["Same text twice."]["provenance"] == ["D3:2"]
    assert by_text["ok"]["timestamp"] == "1 Jan 2024" and by_text["ok"]["metadata"] == {"k": 1}
    assert memory.add("Same text twice.", user_id="u1", infer=False)[0]["event"] == "ADD"  # no dedup either
    assert len(memory.get_all(user_id="u1")) == 3


def test_update_and_delete_go_through_the_history(memory):
    (ev,) = memory.add("I work as a nurse at the city hospital.", user_id="u1", infer=False)
    mid = ev["id"]
    up = memory.update(mid, "I work as a surgeon at the city hospital.", metadata={"checked": True})
    assert up == {
        "event": "UPDATE",
        "id": mid,
        "memory": "I work as a surgeon at the city hospital.",
        "previous_memory": "I work as a nurse at the city hospital.",
    }
    got = memory.get(mid)
    assert got["memory"] == "I work as a surgeon at the city hospital." and got["metadata"] == {"checked": True}
    assert texts(memory.search("surgeon", user_id="u1", top_k=1)) == [got["memory"]]  # re-embedded
    assert memory.delete(mid) == {
        "event": "DELETE",
        "id": mid,
        "memory": got["memory"],
        "previous_memory": got["memory"],
    }
    hist = memory.history(mid)
    assert [h["op"] for h in hist] == ["ADD", "UPDATE", "DELETE"]
    assert hist[1]["old_text"] == "I work as a nurse at the city hospital."
    assert all(h["policy_version"] == "b-1" for h in hist)
    for call in (lambda: memory.get(mid), lambda: memory.delete(mid), lambda: memory.update(mid, "x")):
        with pytest.raises(MemoryNotFound, match=mid) as err:
            call()
        assert isinstance(err.value, KeyError) and str(err.value) == f"no memory with id {mid!r}"
    assert memory.history("never-written") == []


def test_delete_all_and_reset(memory):
    memory.add(pair("I have a dog called Biscuit who loves the beach."), user_id="u1", agent_id="a1")
    memory.add(pair("I have a dog called Biscuit who loves the beach."), user_id="u2")
    assert memory.policy._state  # the policy holds recent messages per scope
    assert memory.delete_all(user_id="u1") == 1
    assert memory.get_all(user_id="u1") == [] and len(memory.get_all(user_id="u2")) == 1
    assert all(s.user_id != "u1" for s in memory.policy._state)  # u1's rolling context is forgotten too
    memory.reset()
    assert memory.get_all(cross_user=True) == [] and not memory.policy._state


# ---- search knobs ------------------------------------------------------------------------------------------------
def test_search_filters_overfetch_and_threshold(memory_v0):  # dense ranking: MMR would mix the b's into the top
    memory = memory_v0
    # 60 memories close to the query tagged "a", 3 further away tagged "b": the b's rank below every a
    memory.add(
        [{"role": "user", "content": f"coffee coffee coffee note {i}"} for i in range(60)],
        user_id="u1",
        infer=False,
        metadata={"tag": "a", "n": 1},
    )
    memory.add(
        [{"role": "user", "content": f"coffee and tea and juice {i}"} for i in range(3)],
        user_id="u1",
        infer=False,
        metadata={"tag": "b", "n": True},
    )
    q = "coffee coffee coffee"
    assert {h["metadata"]["tag"] for h in memory.search(q, user_id="u1", top_k=10)} == {"a"}
    hits = memory.search(q, user_id="u1", top_k=2, filters={"tag": "b"})
    assert len(hits) == 2 and all(h["metadata"]["tag"] == "b" for h in hits)
    assert hits[0]["score"] >= hits[1]["score"]
    assert len(memory.search(q, user_id="u1", top_k=50, filters={"tag": "b"})) == 3
    assert memory.search(q, user_id="u1", filters={"tag": "c"}) == []
    assert {h["metadata"]["tag"] for h in memory.search(q, user_id="u1", top_k=100, filters={"n": 1})} == {"a"}
    assert {h["metadata"]["tag"] for h in memory.search(q, user_id="u1", top_k=100, filters={"n": True})} == {"b"}
    strong = memory.search(q, user_id="u1", top_k=100, threshold=0.8)
    assert strong and all(h["score"] >= 0.8 for h in strong) and len(strong) < 63
    assert len(memory.search(q, user_id="u1")) == memory.policy.retriever.knobs.top_k
    assert len(memory.search(q, user_id="u1", top_k=3)) == 3


def test_default_top_k(tmp_path, embedder):
    m = Memory(build_policy(offline_cfg(), tmp_path / "s", embedder=embedder), default_top_k=2)
    m.add([{"content": f"fact number {i} about tea"} for i in range(5)], user_id="u", infer=False)
    assert len(m.search("tea", user_id="u")) == 2
    assert m.bundle_version == "" and m.get_all(user_id="u")[0]["policy_version"] == ""
    with pytest.raises(ValueError, match="default_top_k"):
        Memory(m.policy, default_top_k=0)


# ---- importing an existing database ------------------------------------------------------------------------------
def test_import_records_goes_through_extraction_and_decisions(memory):
    records = [
        {
            "id": "crm-17",
            "text": "Dana Smith prefers email over phone calls. She is allergic to peanuts.",
            "timestamp": "2024-03-01",
            "metadata": {"table": "crm"},
        },
        "The office moves to 42 Harbour Street in June 2025.",
        {"id": 18, "text": "Dana Smith prefers email over phone calls."},  # the same fact again: NOOP
    ]
    events = memory.import_records(records, user_id="acme", metadata={"import": "2024-q1"})
    assert [(e["event"], e["record_id"]) for e in events] == [
        ("ADD", "crm-17"),
        ("ADD", "crm-17"),
        ("ADD", ""),
        ("NOOP", "18"),
    ]
    stored = {m["memory"]: m for m in memory.get_all(user_id="acme")}
    assert set(stored) == {
        "Dana Smith prefers email over phone calls.",
        "She is allergic to peanuts.",
        "The office moves to 42 Harbour Street in June 2025.",
    }
    email = stored["Dana Smith prefers email over phone calls."]
    assert email["provenance"] == ["crm-17"] and email["timestamp"] == "2024-03-01"
    assert email["metadata"] == {"import": "2024-q1", "table": "crm"}
    assert stored["The office moves to 42 Harbour Street in June 2025."]["provenance"] == []
    assert [h["op"] for h in memory.history(email["id"])] == ["ADD", "NOOP"]


def test_import_checks_every_record_before_writing(memory):
    memory.add("I keep bees on the roof of my flat.", user_id="acme", infer=False)
    before = memory.get_all(user_id="acme")
    bad = ["A perfectly fine first record about bees.", {"text": "second", "colour": "blue"}]
    with pytest.raises(ValueError, match=r"records\[1\] has unknown field\(s\) \['colour'\]"):
        memory.import_records(bad, user_id="acme")
    with pytest.raises(ValueError, match=r"records\[1\].text is empty"):
        memory.import_records(["fine record here", {"text": "  "}], user_id="acme")
    with pytest.raises(ValueError, match="records is empty"):
        memory.import_records([], user_id="acme")
    with pytest.raises(ValueError, match="list of strings or objects"):
        memory.import_records("one string", user_id="acme")
    assert memory.get_all(user_id="acme") == before


# ---- bad input: clear errors, nothing written ----------------------------------------------------------------------
BAD_CALLS = [
    ("empty list", lambda m: m.add([], user_id="u1"), "messages is empty"),
    ("blank string", lambda m: m.add("   ", user_id="u1"), "messages is empty"),
    ("too long", lambda m: m.add("x" * 32_001, user_id="u1"), "32,001 characters long; at most 32,000"),
    (
        "too long in list",
        lambda m: m.add([{"role": "user", "content": "ok"}, {"role": "user", "content": "y" * 40_000}], user_id="u1"),
        r"messages\[1\].content is 40,000 characters",
    ),
    ("not a list", lambda m: m.add({"role": "user", "content": "hi"}, user_id="u1"), "string or a list"),
    ("no content", lambda m: m.add([{"role": "user"}], user_id="u1"), r"messages\[0\] has no \"content\""),
    (
        "bad role type",
        lambda m: m.add([{"role": 3, "content": "hello there"}], user_id="u1"),
        r"messages\[0\].role must be a string",
    ),
    (
        "empty role",
        lambda m: m.add([{"role": " ", "content": "hello there"}], user_id="u1"),
        r"messages\[0\].role is required",
    ),
    (
        "unknown key",
        lambda m: m.add([{"role": "user", "content": "hi", "tool_calls": []}], user_id="u1"),
        r"unknown field\(s\) \['tool_calls'\]",
    ),
    ("content and text differ", lambda m: m.add([{"content": "a", "text": "b"}], user_id="u1"), "they differ"),
    (
        "metadata not a dict",
        lambda m: m.add("I like tea a lot.", user_id="u1", metadata=["a"]),
        "metadata must be an object",
    ),
    (
        "metadata not JSON",
        lambda m: m.add("I like tea a lot.", user_id="u1", metadata={"s": {1, 2}}),
        "JSON-serialisable",
    ),
    (
        "metadata NaN",
        lambda m: m.add("I like tea a lot.", user_id="u1", metadata={"x": float("nan")}),
        "JSON-serialisable",
    ),
    ("control char in scope", lambda m: m.add("I like tea a lot.", user_id="u\x001"), "control character U\\+0000"),
    ("padded user id", lambda m: m.add("I like tea a lot.", user_id=" u1"), "leading or trailing whitespace"),
    ("user id not str", lambda m: m.add("I like tea a lot.", user_id=7), "user_id must be a string"),
    ("infer not bool", lambda m: m.add("I like tea a lot.", user_id="u1", infer="no"), "infer must be"),
    ("update empty text", lambda m: m.update(m.get_all(user_id="u1")[0]["id"], ""), "text is empty"),
    (
        "update bad metadata",
        lambda m: m.update(m.get_all(user_id="u1")[0]["id"], "new text", metadata="x"),
        "metadata must be",
    ),
    (
        "update agent-only scope",
        lambda m: m.update(m.get_all(user_id="u1")[0]["id"], "new text", agent_id="a1"),
        "cross_user=true",
    ),
    ("delete agent-only scope", lambda m: m.delete(m.get_all(user_id="u1")[0]["id"], run_id="r1"), "every user"),
    ("get cross_user not bool", lambda m: m.get("x", user_id="u1", cross_user="yes"), "cross_user must be"),
    ("history bad scope", lambda m: m.history("x", user_id=" u1"), "leading or trailing whitespace"),
    ("search agent only", lambda m: m.search("tea", agent_id="a1"), r"agent_id='a1' without user_id"),
    ("search empty scope", lambda m: m.search("tea"), "an empty scope matches the memories of every user"),
    ("get_all agent only", lambda m: m.get_all(agent_id="a1"), "cross_user=true"),
    ("delete_all agent only", lambda m: m.delete_all(agent_id="a1"), "cross_user=true"),
    ("relations top_k", lambda m: m.search_with_relations("tea", user_id="u1", top_k=0), "top_k must be"),
    ("empty memory id", lambda m: m.delete(""), "memory_id is required"),
    ("search empty", lambda m: m.search("", user_id="u1"), "query is empty"),
    ("top_k 0", lambda m: m.search("tea", user_id="u1", top_k=0), "top_k must be an int in 1..1000"),
    ("top_k bool", lambda m: m.search("tea", user_id="u1", top_k=True), "top_k must be"),
    ("threshold", lambda m: m.search("tea", user_id="u1", threshold=1.5), r"threshold must be a number in \[-1, 1\]"),
    ("filters value", lambda m: m.search("tea", user_id="u1", filters={"k": [1]}), r"filters\['k'\] must be"),
    ("filters type", lambda m: m.search("tea", user_id="u1", filters="k=1"), "filters must be an object"),
    ("limit", lambda m: m.get_all(user_id="u1", limit=-1), "limit must be"),
]


@pytest.mark.parametrize("call,match", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_bad_input_is_a_clear_value_error_and_writes_nothing(memory, call, match):
    memory.add(pair("I grow tomatoes and basil on my balcony."), user_id="u1")
    before = memory.get_all(cross_user=True)
    version = versions(memory)
    with pytest.raises(ValueError, match=match):
        call(memory)
    assert memory.get_all(cross_user=True) == before and versions(memory) == version


# ---- stores, embedders and bundles ---------------------------------------------------------------------------------
class OtherEmbedder:
    id, dim = "other-embedder-64", 64

    def embed(self, texts):  # never called: opening the store fails first
        raise AssertionError


def test_a_store_written_by_another_embedder_is_refused(tmp_path, memory, embedder):
    memory.add("I like tea a lot.", user_id="u1", infer=False)
    with pytest.raises(
        Exception, match="written with embedder 'test-hash-64'.*opened with embedder 'other-embedder-64'"
    ):  # Hydra wraps it; Memory.from_bundle unwraps it
        Memory(build_policy(offline_cfg(), memory.store.uri, embedder=OtherEmbedder()))
    assert texts(memory.get_all(user_id="u1")) == ["I like tea a lot."]


def test_from_bundle_stamps_the_bundle_version(tmp_path, embedder):
    from memtune.policies.runtime.bundle_config import bundle_config
    from memtune.policies.runtime.bundle_save import save_bundle

    cfg = offline_cfg()
    info = save_bundle(
        tmp_path / "bundle",
        bundle_config(cfg),
        embedder_id=embedder.id,
        embedder_dim=embedder.dim,
        version="offline-test-7",
    )
    m = Memory.from_bundle(tmp_path / "bundle", tmp_path / "store", embedder=embedder)
    assert m.bundle_version == info.version == "offline-test-7"
    (ev,) = m.add("My sister Ana lives in Porto with her husband.", user_id="u1")
    assert m.get(ev["id"])["policy_version"] == "offline-test-7"
    assert m.history(ev["id"])[0]["policy_version"] == "offline-test-7"
    m.close()
    with pytest.raises(ValueError, match="embedder"):  # the bundle's own check
        Memory.from_bundle(tmp_path / "bundle", tmp_path / "store", embedder=OtherEmbedder())
    other = save_bundle(
        tmp_path / "other", bundle_config(cfg), embedder_id=OtherEmbedder.id, embedder_dim=64, version="other-1"
    )
    with pytest.raises(
        ValueError, match="written with embedder 'test-hash-64'.*opened with embedder 'other-embedder-64'"
    ):  # the store's check, unwrapped from Hydra's
        Memory.from_bundle(tmp_path / "other", tmp_path / "store", embedder=OtherEmbedder())
    assert other.version == "other-1"
    assert [
        m["memory"]
        for m in Memory.from_bundle(tmp_path / "bundle", tmp_path / "store", embedder=embedder).get_all(user_id="u1")
    ] == [ev["memory"]]
