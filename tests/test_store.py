"""MemoryStore: writes and their history, scope isolation, SQL safety, search, persistence, maintenance."""

from __future__ import annotations

import numpy as np
import pytest

from memtune.policies.store.changes import Change
from memtune.policies.store.sql import sql_where
from memtune.policies.store.store import MemoryStore
from memtune.policies.types import Scope

DIM = 8
ALICE = Scope(user_id="alice")
BOB = Scope(user_id="bob")


def unit(*xs: float) -> np.ndarray:
    v = np.zeros(DIM, np.float32)
    v[: len(xs)] = xs
    return v / np.linalg.norm(v)


def rand(rng: np.random.Generator, n: int = 1) -> np.ndarray:
    return rng.normal(size=(n, DIM)).astype(np.float32)


@pytest.fixture(params=[True, False], ids=["mirror", "lancedb"])
def cache(request) -> bool:
    return request.param


@pytest.fixture
def store(tmp_path, cache) -> MemoryStore:
    return MemoryStore(tmp_path / "store", dim=DIM, embedder_id="test-emb", cache=cache)


def add(store: MemoryStore, text: str, vec: np.ndarray, scope: Scope = ALICE, prov=()) -> str:
    ((op, memory_id, old),) = store.apply([Change("ADD", text, vec, scope=scope, provenance=prov)])
    assert (op, old) == ("ADD", "")
    return memory_id


def history_rows(store: MemoryStore) -> int:
    return store._history.count_rows()


# ---- apply + history ------------------------------------------------------------------------------------------
def test_add_update_delete_noop_and_history(store):
    mid = add(store, "Melanie likes running", unit(1), prov=("D1:3",))
    rec = store.get(mid)
    assert rec.text == "Melanie likes running" and rec.scope == ALICE and rec.provenance == ("D1:3",)
    assert rec.created_at and rec.created_at == rec.updated_at

    out = store.apply(
        [
            Change("UPDATE", "Melanie likes running and swimming", unit(1, 1), mid, ALICE, ("D2:1",), "8 May 2023"),
            Change("NOOP", "Melanie enjoys running", None, mid, ALICE, ("D2:2",)),
        ]
    )
    assert out == [("UPDATE", mid, "Melanie likes running"), ("NOOP", mid, "Melanie likes running and swimming")]
    rec = store.get(mid)
    assert rec.text == "Melanie likes running and swimming" and rec.timestamp == "8 May 2023"
    assert rec.updated_at > rec.created_at

    assert store.apply([Change("DELETE", memory_id=mid, scope=ALICE)]) == [
        ("DELETE", mid, "Melanie likes running and swimming")
    ]
    assert store.get(mid) is None and store.count() == 0

    hist = store.history(mid)
    assert [h["op"] for h in hist] == ["ADD", "UPDATE", "NOOP", "DELETE"]
    assert [(h["old_text"], h["new_text"]) for h in hist] == [
        ("", "Melanie likes running"),
        ("Melanie likes running", "Melanie likes running and swimming"),
        ("Melanie likes running and swimming", "Melanie enjoys running"),  # NOOP: the redundant candidate
        ("Melanie likes running and swimming", ""),
    ]
    assert [h["provenance"] for h in hist] == [["D1:3"], ["D2:1"], ["D2:2"], []]
    assert all(h["user_id"] == "alice" for h in hist)
    assert [h["seq"] for h in hist] == sorted(h["seq"] for h in hist)


@pytest.mark.parametrize(
    ("merge", "provenance"),
    [(False, ("D1:2", "D3:4")), (True, ("D1:1", "D1:2", "D3:4"))],  # replace: the new text's turns; merge: union
)
def test_update_replaces_or_merges_provenance_and_merges_metadata(store, merge, provenance):
    mid = store.apply([Change("ADD", "a", unit(1), scope=ALICE, provenance=("D1:1", "D1:2"), metadata={"session": 1})])[
        0
    ][1]
    store.apply(
        [Change("UPDATE", "b", unit(1, 1), mid, ALICE, ("D1:2", "D3:4", "D3:4"), metadata={"k": "v"}, merge=merge)]
    )
    rec = store.get(mid)
    assert rec.provenance == provenance
    assert rec.metadata == {"session": 1, "k": "v"}
    # the history keeps the provenance before and after, so a replacing UPDATE loses nothing
    update = store.history(mid)[-1]
    assert update["old_provenance"] == ["D1:1", "D1:2"] and update["provenance"] == list(provenance)


@pytest.mark.parametrize("op", ["ADD", "DELETE", "NOOP"])
def test_merge_is_for_update_only(store, op):
    mid = add(store, "a", unit(1))
    change = Change(op, "a", unit(1), None if op == "ADD" else mid, ALICE, merge=True)
    with pytest.raises(ValueError, match="merge applies to UPDATE only"):
        store.apply([change])
    with pytest.raises(TypeError, match="merge must be a bool"):
        store.apply([Change("UPDATE", "b", unit(1), mid, ALICE, merge="yes")])
    assert store.get(mid).text == "a" and len(store.history(mid)) == 1


def test_batch_is_applied_in_order(store):
    a = add(store, "a", unit(1))
    out = store.apply(
        [
            Change("UPDATE", "a2", unit(1, 1), a, ALICE),
            Change("UPDATE", "a3", unit(1, 2), a, ALICE, ("D9:9",)),
            Change("ADD", "b", unit(0, 1), scope=ALICE),
        ]
    )
    assert [o[:1] + o[2:] for o in out] == [("UPDATE", "a"), ("UPDATE", "a2"), ("ADD", "")]
    assert store.get(a).text == "a3" and store.get(a).provenance == ("D9:9",)
    assert store.count(ALICE) == 2


@pytest.mark.parametrize(
    "bad",
    [
        Change("UPDATE", "x", unit(1), "no-such-id", ALICE),
        Change("DELETE", memory_id="no-such-id"),
        Change("NOOP", "x", memory_id="no-such-id"),
    ],
)
def test_unknown_id_raises_and_writes_nothing(store, bad):
    known = add(store, "kept", unit(1))
    version, hist = store.version, history_rows(store)
    with pytest.raises(KeyError, match="no-such-id"):
        store.apply(
            [Change("ADD", "new", unit(0, 1), scope=ALICE), Change("UPDATE", "changed", unit(1, 1), known, ALICE), bad]
        )
    assert store.version == version and history_rows(store) == hist
    assert store.count() == 1 and store.get(known).text == "kept"


def test_update_after_delete_in_same_batch_is_unknown(store):
    mid = add(store, "a", unit(1))
    with pytest.raises(KeyError, match=mid):
        store.apply([Change("DELETE", memory_id=mid), Change("UPDATE", "b", unit(1), mid)])
    assert store.get(mid).text == "a"


def test_malformed_changes_are_rejected_before_writing(store):
    mid = add(store, "a", unit(1))
    version = store.version
    with pytest.raises(ValueError, match="vector"):
        store.apply([Change("ADD", "x")])
    with pytest.raises(ValueError, match="dim 8"):
        store.apply([Change("ADD", "x", np.ones(5))])
    with pytest.raises(ValueError, match="zero vector"):
        store.apply([Change("ADD", "x", np.zeros(DIM))])
    with pytest.raises(ValueError, match="memory_id"):
        store.apply([Change("ADD", "x", unit(1), memory_id=mid)])
    with pytest.raises(ValueError, match="memory_id is required"):
        store.apply([Change("DELETE")])
    with pytest.raises(ValueError, match="op must be"):
        store.apply([Change("MERGE", "x", unit(1), mid)])
    assert store.version == version


def test_failed_history_write_rolls_back_memories(store, monkeypatch):
    mid = add(store, "a", unit(1))
    version = store.version

    def boom(rows):
        raise OSError("disk full")

    monkeypatch.setattr(store, "_write_history", boom)
    with pytest.raises(OSError):
        store.apply([Change("UPDATE", "b", unit(1, 1), mid, ALICE), Change("ADD", "c", unit(0, 1), scope=ALICE)])
    monkeypatch.undo()
    assert store.get(mid).text == "a" and store.count() == 1
    assert store.version > version  # restored as a new version with the old rows
    assert [h["op"] for h in store.history(mid)] == ["ADD"]
    assert store.apply([Change("UPDATE", "b", unit(1, 1), mid, ALICE)])[0] == ("UPDATE", mid, "a")


# ---- scopes and SQL safety --------------------------------------------------------------------------------------
def test_scope_isolation_between_users_and_agents(store):
    a1, a2 = Scope("alice", "assistant"), Scope("alice", "coach")
    m_a1 = add(store, "alice/assistant", unit(1), a1)
    m_a2 = add(store, "alice/coach", unit(1), a2)
    m_b = add(store, "bob", unit(1), BOB)
    q = unit(1)
    assert [m.id for m in store.search(q, a1, 10)] == [m_a1]
    assert [m.id for m in store.search(q, a2, 10)] == [m_a2]
    assert {m.id for m in store.search(q, ALICE, 10)} == {m_a1, m_a2}  # empty agent_id is a wildcard
    assert [m.id for m in store.get_all(BOB)] == [m_b]
    assert store.count(a1) == 1 and store.count(ALICE) == 2 and store.count() == 3
    assert [[m.id for m in hits] for hits in store.search_many(np.stack([q, q]), a2, 5)] == [[m_a2], [m_a2]]
    # a change may only touch memories inside its scope
    with pytest.raises(KeyError, match="not in scope"):
        store.apply([Change("UPDATE", "hijack", unit(1), m_b, ALICE)])
    with pytest.raises(KeyError, match="not in scope"):
        store.apply([Change("DELETE", memory_id=m_a2, scope=a1)])
    assert store.get(m_b).text == "bob" and store.get(m_a2).text == "alice/coach"


HOSTILE = [
    "x' OR '1'='1",
    "' OR 1=1 --",
    "100%",
    "a_b",
    "%",
    "back\\slash",
    "\\'",
    "trail\\",
    "o''brien",
    "日本語ユーザー",
    "emoji 🙂",
    'double "quotes"',
    "semi; DROP TABLE memories; --",
    "UNION SELECT *",
]


def test_hostile_user_ids_neither_error_nor_leak(store):
    rng = np.random.default_rng(0)
    victim = add(store, "victim secret", unit(1), Scope("1"))
    plain = add(store, "plain", unit(1), Scope("x"))
    ids = {}
    for uid in HOSTILE:
        ids[uid] = add(store, f"memory of {uid}", rand(rng)[0], Scope(uid, agent_id=uid))
    for uid in HOSTILE:
        scope = Scope(uid)
        assert [m.id for m in store.search(unit(1), scope, 50)] == [ids[uid]], uid
        assert [m.id for m in store.get_all(scope)] == [ids[uid]], uid
        assert store.count(scope) == 1 and store.count(Scope(agent_id=uid)) == 1
        assert store.get(ids[uid]).scope == Scope(uid, uid)
    assert store.count() == len(HOSTILE) + 2
    # updates and deletes through hostile scopes stay inside them
    uid = "x' OR '1'='1"
    store.apply([Change("UPDATE", "changed", unit(0, 1), ids[uid], Scope(uid))])
    assert store.delete_all(Scope(uid)) == 1
    assert store.get(victim).text == "victim secret" and store.get(plain).text == "plain"
    assert store.count() == len(HOSTILE) + 1
    # hostile memory ids are literals too
    assert store.get("' OR '1'='1") is None
    assert store.history("x' OR '1'='1") == []
    with pytest.raises(KeyError):
        store.apply([Change("DELETE", memory_id="' OR '1'='1")])
    assert store.count() == len(HOSTILE) + 1


def test_sql_where_quotes_literals():
    assert sql_where(Scope("x' OR '1'='1")) == "user_id = 'x'' OR ''1''=''1'"
    assert sql_where(Scope("a", "b", "c")) == "user_id = 'a' AND agent_id = 'b' AND run_id = 'c'"
    assert sql_where(Scope()) is None
    assert sql_where(ids=[]) == "false"
    assert sql_where(ids=["a'b"]) == "id IN ('a''b')"


@pytest.mark.parametrize("field", ["user_id", "agent_id", "run_id"])
@pytest.mark.parametrize("bad", ["nul\x00byte", "new\nline", "tab\there", "esc\x1b", "c1\x85"])
def test_control_characters_are_refused(store, field, bad):
    scope = Scope(**{field: bad})
    for call in (
        lambda: store.search(unit(1), scope, 3),
        lambda: store.get_all(scope),
        lambda: store.count(scope),
        lambda: store.delete_all(scope),
        lambda: store.apply([Change("ADD", "x", unit(1), scope=scope)]),
    ):
        with pytest.raises(ValueError, match=field):
            call()
    with pytest.raises(ValueError, match="memory_id"):
        store.get(bad)
    with pytest.raises(ValueError, match="memory_id"):
        store.apply([Change("DELETE", memory_id=bad)])
    assert store.count() == 0


# ---- search ----------------------------------------------------------------------------------------------------
def test_search_order_scores_and_threshold(store):
    q = unit(1)
    texts = {"same": unit(1), "close": unit(4, 3), "half": unit(1, np.sqrt(3)), "opposite": unit(-1, 0.2)}
    ids = {t: add(store, t, v) for t, v in texts.items()}
    add(store, "bob's", unit(1), BOB)
    hits = store.search(q * 7.0, ALICE, 10)  # the query need not be normalised
    assert [h.text for h in hits] == ["same", "close", "half", "opposite"]
    assert [round(h.score, 4) for h in hits] == [1.0, 0.8, 0.5, round(float(unit(-1, 0.2) @ q), 4)]
    assert [h.id for h in store.search(q, ALICE, 2)] == [ids["same"], ids["close"]]
    assert [h.text for h in store.search(q, ALICE, 10, threshold=0.6)] == ["same", "close"]
    assert store.search(q, ALICE, 0) == []
    many = store.search_many(np.stack([q, unit(-1, 0.2)]), ALICE, 1)
    assert [[h.text for h in hits] for hits in many] == [["same"], ["opposite"]]
    assert store.search_many(np.zeros((0, DIM)), ALICE, 3) == []
    assert store.search(q, Scope("nobody"), 5) == []


def test_get_all_is_oldest_first_and_limited(store):
    ids = [add(store, f"m{i}", unit(1, i)) for i in range(4)]
    assert [m.id for m in store.get_all(ALICE)] == ids
    assert [m.id for m in store.get_all(ALICE, limit=2)] == ids[:2]


def test_mirror_and_lancedb_reads_agree(tmp_path):
    rng = np.random.default_rng(7)
    fast = MemoryStore(tmp_path / "s", dim=DIM, embedder_id="e", compact_every=4)
    scopes = [Scope("u1", "a"), Scope("u1", "b"), Scope("u2")]
    live: list[tuple[str, Scope]] = []
    for step in range(30):
        scope = scopes[step % 3]
        changes = [Change("ADD", f"f{step}", rand(rng)[0], scope=scope)]
        mine = [m for m, s in live if s == scope]
        if mine and step % 4 == 0:
            changes.append(Change("UPDATE", f"u{step}", rand(rng)[0], mine[0], scope))
        if len(mine) > 1 and step % 5 == 0:
            changes.append(Change("DELETE", memory_id=mine[-1], scope=scope))
        for op, mid, _ in fast.apply(changes):
            if op == "ADD":
                live.append((mid, scope))
            if op == "DELETE":
                live = [x for x in live if x[0] != mid]
    slow = MemoryStore(tmp_path / "s", dim=DIM, embedder_id="e", cache=False)
    queries = rand(rng, 3)
    for scope in [*scopes, Scope("u1"), Scope()]:
        assert fast.count(scope) == slow.count(scope)
        assert [m.id for m in fast.get_all(scope)] == [m.id for m in slow.get_all(scope)]
        for a, b in zip(fast.search_many(queries, scope, 4), slow.search_many(queries, scope, 4)):
            assert [m.id for m in a] == [m.id for m in b]
            assert np.allclose([m.score for m in a], [m.score for m in b], atol=1e-5)
    assert fast.get(live[0][0]) == slow.get(live[0][0])


# ---- lifecycle -------------------------------------------------------------------------------------------------
def test_embedder_mismatch_on_reopen(tmp_path):
    MemoryStore(tmp_path / "s", dim=DIM, embedder_id="minilm-l6-v2")  # empty table: still checked
    with pytest.raises(ValueError, match="minilm-l6-v2") as err:
        MemoryStore(tmp_path / "s", dim=DIM, embedder_id="text-embedding-3-small")
    assert "text-embedding-3-small" in str(err.value) and "new store" in str(err.value)
    with pytest.raises(ValueError, match="dim 16"):
        MemoryStore(tmp_path / "s", dim=16, embedder_id="minilm-l6-v2")
    MemoryStore(tmp_path / "s", dim=DIM, embedder_id="minilm-l6-v2")  # same embedder: fine


def test_delete_all_refuses_empty_scope_and_records_history(store):
    a = add(store, "a", unit(1), Scope("alice", "x"))
    add(store, "b", unit(1), Scope("alice", "y"))
    b = add(store, "bob", unit(1), BOB)
    with pytest.raises(ValueError, match="reset"):
        store.delete_all(Scope())
    assert store.delete_all(Scope("alice", "x")) == 1
    assert store.delete_all(Scope("nobody")) == 0
    assert store.delete_all(ALICE) == 1
    assert [m.id for m in store.get_all(Scope())] == [b]
    assert [h["op"] for h in store.history(a)] == ["ADD", "DELETE"]
    store.reset()
    assert store.count() == 0 and store.history(b) == []
    add(store, "after reset", unit(1))
    assert store.count() == 1


def test_reopen_persists_data_and_history(tmp_path, cache):
    s = MemoryStore(tmp_path / "s", dim=DIM, embedder_id="e", cache=cache)
    mid = add(s, "persisted", unit(1), prov=("D1:1",))
    s.apply([Change("UPDATE", "persisted v2", unit(1, 1), mid, ALICE, ("D2:2",))])
    s2 = MemoryStore(tmp_path / "s", dim=DIM, embedder_id="e", cache=cache)
    rec = s2.get(mid)
    assert rec.text == "persisted v2" and rec.provenance == ("D2:2",)  # a replacing UPDATE
    assert [h.id for h in s2.search(unit(1, 1), ALICE, 1)] == [mid]
    assert [(h["op"], h["old_provenance"]) for h in s2.history(mid)] == [("ADD", []), ("UPDATE", ["D1:1"])]


def test_refresh_follows_another_writer(tmp_path):
    reader = MemoryStore(tmp_path / "s", dim=DIM, embedder_id="e")
    assert reader.count() == 0  # mirror loaded at this version
    writer = MemoryStore(tmp_path / "s", dim=DIM, embedder_id="e")
    mid = add(writer, "from elsewhere", unit(1))
    reader.refresh()
    assert reader.count() == 1 and reader.get(mid).text == "from elsewhere"


def test_compact_keeps_data_and_drops_versions(tmp_path, cache):
    rng = np.random.default_rng(1)
    s = MemoryStore(tmp_path / "s", dim=DIM, embedder_id="e", compact_every=5, cache=cache)
    ids = [add(s, f"m{i}", rand(rng)[0]) for i in range(12)]
    s.apply([Change("UPDATE", "m0 v2", rand(rng)[0], ids[0], ALICE), Change("DELETE", memory_id=ids[1])])
    q = rand(rng)[0]
    before = [(m.id, round(m.score, 5)) for m in s.search(q, ALICE, 5)]
    assert s.versions() < 6  # auto-compaction every 5 applies dropped old versions
    s.compact()
    assert s.versions() == 1 and s.stats()["fragments"] == 1
    assert s.count() == 11 and s.get(ids[0]).text == "m0 v2" and s.get(ids[1]) is None
    assert [(m.id, round(m.score, 5)) for m in s.search(q, ALICE, 5)] == before
    assert [h["op"] for h in s.history(ids[0])] == ["ADD", "UPDATE"]
    assert s.disk_bytes() > 0


def test_ann_index_past_index_min_rows(tmp_path):
    rng = np.random.default_rng(2)
    vecs = rand(rng, 600)
    s = MemoryStore(tmp_path / "s", dim=DIM, embedder_id="e", index_min_rows=300, compact_every=0)
    s.apply([Change("ADD", f"m{i}", vecs[i], scope=Scope(f"u{i % 3}")) for i in range(600)])
    assert not s._has_vector_index()
    s.compact()
    assert s._has_vector_index() and s._view() is None  # past cache_max_rows: reads go to LanceDB
    unitv = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    # a small scope is searched exactly (flat, prefiltered)
    exact = [f"m{1 + 3 * i}" for i in np.argsort(-(unitv[1::3] @ unitv[1]))[:5]]
    assert [h.text for h in s.search(vecs[1], Scope("u1"), 5)] == exact
    # the whole table goes through the index (approximate, re-ranked with exact scores)
    top = s.search(vecs[10], Scope(), 3)
    assert top[0].text == "m10" and top[0].score == pytest.approx(1.0, abs=1e-5)
    assert s.count(Scope("u2")) == 200


def test_failed_memories_write_rolls_back_history(store, monkeypatch):
    mid = add(store, "a", unit(1))
    hist = history_rows(store)

    def boom(plan):
        raise OSError("merge failed")

    monkeypatch.setattr(store, "_write_memories", boom)
    with pytest.raises(OSError):
        store.apply([Change("UPDATE", "b", unit(1, 1), mid, ALICE)])
    monkeypatch.undo()
    assert history_rows(store) == hist and [h["op"] for h in store.history(mid)] == ["ADD"]
    assert store.get(mid).text == "a"


def test_history_group_commit(tmp_path):
    s = MemoryStore(tmp_path / "s", dim=DIM, embedder_id="e", history_flush_every=3)
    a = add(s, "a", unit(1))
    s.apply([Change("UPDATE", "a2", unit(1, 1), a, ALICE)])
    assert history_rows(s) == 0  # held back: two batches so far
    s.apply([Change("NOOP", "a again", memory_id=a)])
    assert history_rows(s) == 3  # third batch: one append for all three
    s.apply([Change("DELETE", memory_id=a)])
    assert [h["op"] for h in s.history(a)] == ["ADD", "UPDATE", "NOOP", "DELETE"]  # history() flushes
    b = add(s, "b", unit(0, 1))
    s.close()  # close() flushes too
    reopened = MemoryStore(tmp_path / "s", dim=DIM, embedder_id="e")
    assert [h["op"] for h in reopened.history(b)] == ["ADD"]
    with pytest.raises(ValueError, match="history_flush_every"):
        MemoryStore(tmp_path / "s2", dim=DIM, embedder_id="e", history_flush_every=0)
