"""Memory versioning: policy_version on every row, the upgrade of stores written before it, point-in-time reads,
rollback with a consistent history, and which versions compaction keeps."""

from __future__ import annotations

import json
import time

import lancedb
import numpy as np
import pyarrow as pa
import pytest

from memtune.policies.store.changes import Change
from memtune.policies.store.lance import META_DIM, META_EMBEDDER
from memtune.policies.store.store import MemoryStore
from memtune.policies.types import Scope

DIM = 8
U = Scope("u1")


def unit(i: int) -> np.ndarray:
    v = np.zeros(DIM, np.float32)
    v[i % DIM] = 1.0
    v[(i + 1) % DIM] = 0.5
    return v


@pytest.fixture(params=[True, False], ids=["mirror", "lancedb"])
def cache(request) -> bool:
    return request.param


def make(tmp_path, **kw) -> MemoryStore:
    return MemoryStore(tmp_path / "s", dim=DIM, embedder_id="e", compact_every=0, **kw)


def add(store: MemoryStore, text: str, i: int = 0, scope: Scope = U) -> str:
    return store.apply([Change("ADD", text, unit(i), scope=scope)])[0][1]


def replay(store: MemoryStore, ids) -> dict[str, str]:
    """The live memories the history explains: its ops replayed in seq order."""
    rows = sorted((h for i in ids for h in store.history(i)), key=lambda h: h["seq"])
    live: dict[str, str] = {}
    for h in rows:
        if h["op"] in ("ADD", "UPDATE"):
            live[h["memory_id"]] = h["new_text"]
        elif h["op"] == "DELETE":
            live.pop(h["memory_id"], None)
    return live


def live(store: MemoryStore) -> dict[str, str]:
    return {m.id: m.text for m in store.get_all()}


# ---- policy_version ------------------------------------------------------------------------------------------------
def test_every_write_is_stamped_with_the_policy_version(tmp_path):
    a = make(tmp_path, policy_version="bundle-a")
    mid = add(a, "first")
    other = add(a, "other", 3)
    assert a.get(mid).policy_version == "bundle-a" and a.get(mid).embedder_id == "e"
    b = make(tmp_path, policy_version="bundle-b")  # a second deployment of another bundle on the same store
    b.apply([Change("UPDATE", "first v2", unit(1), mid, U), Change("NOOP", "first again", memory_id=mid)])
    assert b.get(mid).policy_version == "bundle-b" and b.get(other).policy_version == "bundle-a"
    b.delete_all(U)
    assert [(h["op"], h["policy_version"]) for h in b.history(mid)] == [
        ("ADD", "bundle-a"),
        ("UPDATE", "bundle-b"),
        ("NOOP", "bundle-b"),
        ("DELETE", "bundle-b"),
    ]
    assert make(tmp_path / "eval").policy_version == ""
    with pytest.raises(ValueError, match="policy_version contains control character"):
        make(tmp_path, policy_version="v\n1")


def old_store(root) -> None:
    """A store as memtune wrote it before policy_version existed: same tables, one column fewer each."""
    s, meta = pa.string(), {META_EMBEDDER: b"e", META_DIM: str(DIM).encode()}
    mem = pa.schema(
        [
            pa.field("id", s),
            pa.field("text", s),
            pa.field("vector", pa.list_(pa.float32(), DIM)),
            pa.field("user_id", s),
            pa.field("agent_id", s),
            pa.field("run_id", s),
            pa.field("provenance", pa.list_(s)),
            pa.field("timestamp", s),
            pa.field("created_at", s),
            pa.field("updated_at", s),
            pa.field("metadata", s),
            pa.field("embedder_id", s),
        ],
        metadata=meta,
    )
    hist = pa.schema(
        [
            pa.field("memory_id", s),
            pa.field("op", s),
            pa.field("old_text", s),
            pa.field("new_text", s),
            pa.field("time", s),
            pa.field("seq", pa.int64()),
            pa.field("provenance", pa.list_(s)),
            pa.field("user_id", s),
            pa.field("agent_id", s),
            pa.field("run_id", s),
            pa.field("metadata", s),
        ],
        metadata=meta,
    )
    db = lancedb.connect(str(root))
    db.create_table("memories", schema=mem).add(
        pa.table(
            {
                "id": ["old-1"],
                "text": ["written long ago"],
                "vector": [unit(0).tolist()],
                "user_id": ["u1"],
                "agent_id": [""],
                "run_id": [""],
                "provenance": [["D1:1"]],
                "timestamp": [""],
                "created_at": ["2025-01-01T00:00:00+00:00"],
                "updated_at": ["2025-01-01T00:00:00+00:00"],
                "metadata": ["{}"],
                "embedder_id": ["e"],
            },
            schema=mem,
        )
    )
    db.create_table("memories_history", schema=hist).add(
        pa.table(
            {
                "memory_id": ["old-1"],
                "op": ["ADD"],
                "old_text": [""],
                "new_text": ["written long ago"],
                "time": ["2025-01-01T00:00:00+00:00"],
                "seq": [1],
                "provenance": [["D1:1"]],
                "user_id": ["u1"],
                "agent_id": [""],
                "run_id": [""],
                "metadata": ["{}"],
            },
            schema=hist,
        )
    )


def test_a_store_from_before_policy_version_is_upgraded_on_open(tmp_path, cache):
    old_store(tmp_path / "s")
    before = lancedb.connect(str(tmp_path / "s")).open_table("memories").version
    s = make(tmp_path, cache=cache, policy_version="v2")
    assert "policy_version" in s._table.schema.names and "policy_version" in s._history.schema.names
    rec = s.get("old-1")
    assert (rec.text, rec.provenance, rec.policy_version) == ("written long ago", ("D1:1",), "")
    assert [h.text for h in s.search(unit(0), U, 5)] == ["written long ago"]
    assert s.history("old-1")[0]["policy_version"] == ""
    # old_provenance (history only) is added the same way; old rows read []
    assert "old_provenance" in s._history.schema.names and "old_provenance" not in s._table.schema.names
    assert s.history("old-1")[0]["old_provenance"] == []
    s.apply([Change("UPDATE", "rewritten", unit(0), "old-1", U)])
    assert s.history("old-1")[-1]["old_provenance"] == ["D1:1"] and s.get("old-1").provenance == ()
    new = add(s, "new", 2)
    assert s.get("old-1").policy_version == "v2" and s.get(new).policy_version == "v2"
    # the old version is still readable and restorable (the column is added back after a restore)
    view = s.as_of(before)
    assert view.get("old-1").text == "written long ago" and view.get("old-1").policy_version == ""
    s.restore(before)
    assert live(s) == {"old-1": "written long ago"} and "policy_version" in s._table.schema.names
    add(s, "after restore", 3)
    reopened = make(tmp_path, cache=cache)
    assert sorted(live(reopened).values()) == ["after restore", "written long ago"]


def test_a_table_that_is_not_a_memtune_store_is_refused(tmp_path):
    db = lancedb.connect(str(tmp_path / "s"))
    schema = pa.schema(
        [pa.field("id", pa.string()), pa.field("vector", pa.list_(pa.float32(), DIM))],
        metadata={META_EMBEDDER: b"e", META_DIM: str(DIM).encode()},
    )
    db.create_table("memories", schema=schema)
    with pytest.raises(ValueError, match=r"lacks columns \['text', 'user_id'"):
        make(tmp_path)


# ---- point in time ------------------------------------------------------------------------------------------------
def test_write_write_restore_the_first(tmp_path, cache):
    s = make(tmp_path, cache=cache)
    a = add(s, "first", 0)
    v1 = s.version
    b = add(s, "second", 1)
    s.apply([Change("UPDATE", "first, edited", unit(2), a, U)])
    assert [v["version"] for v in s.versions_list()][-3:] == [v1, v1 + 1, v1 + 2]
    assert all(v["timestamp"].endswith("+00:00") for v in s.versions_list())
    new = s.restore(v1)
    assert new == v1 + 3 == s.version
    assert live(s) == {a: "first"} and s.get(b) is None and s.count(U) == 1
    assert [h.text for h in s.search(unit(1), U, 5)] == ["first"]
    assert replay(s, [a, b]) == live(s)  # the history explains the rollback
    hist_b = s.history(b)
    assert [h["op"] for h in hist_b] == ["ADD", "DELETE"]
    assert hist_b[-1]["metadata"] == {"reason": "restore", "restored_version": v1}
    assert [(h["op"], h["new_text"]) for h in s.history(a)] == [
        ("ADD", "first"),
        ("UPDATE", "first, edited"),
        ("UPDATE", "first"),
    ]
    # undo the undo: the version with both writes is still on disk
    s.restore(v1 + 2)
    assert live(s) == {a: "first, edited", b: "second"} and replay(s, [a, b]) == live(s)
    # and the store keeps working; a reopened store sees the same
    c = add(s, "third", 4)
    assert live(make(tmp_path, cache=cache)) == {a: "first, edited", b: "second", c: "third"}
    assert s.restore(s.version) == s.version  # the current version: nothing to do


def test_as_of_is_a_read_only_store_at_that_version(tmp_path, cache):
    s = make(tmp_path, cache=cache)
    a = add(s, "first", 0, Scope("u1", "a1"))
    v1 = s.version
    time.sleep(0.002)
    s.apply([Change("UPDATE", "first v2", unit(0), a, U)])
    b = add(s, "second", 1, Scope("u2"))
    view = s.as_of(v1)
    assert view.get(a).text == "first" and view.get(b) is None
    assert [m.text for m in view.get_all(U)] == ["first"] and view.count() == 1
    assert [(h.text, round(h.score, 4)) for h in view.search(unit(0), Scope(agent_id="a1"), 3)] == [("first", 1.0)]
    assert [h["op"] for h in view.history(a)] == ["ADD"]  # the history as it was then
    for write in (
        lambda: view.apply([Change("ADD", "x", unit(0), scope=U)]),
        lambda: view.delete_all(U),
        lambda: view.reset(),
        lambda: view.compact(),
        lambda: view.restore(v1),
    ):
        with pytest.raises(PermissionError, match=f"as of version {v1} is read-only"):
            write()
    assert live(s) == {a: "first v2", b: "second"}  # the store itself moved on, untouched by the view
    view.close()


def test_unknown_versions_are_refused_with_the_kept_ones(tmp_path):
    s = make(tmp_path)
    a = add(s, "first")
    version = s.version
    for bad in (999, -1, "2", 1.0, True):
        with pytest.raises(ValueError, match="version"):
            s.restore(bad)
        with pytest.raises(ValueError, match="version"):
            s.as_of(bad)
    with pytest.raises(ValueError, match=r"version 999 is not on disk \(kept: \[1, 2\]\)"):
        s.restore(999)
    assert s.version == version and live(s) == {a: "first"}


# ---- what compaction keeps -----------------------------------------------------------------------------------------
def test_keep_last_versions(tmp_path):
    s = make(tmp_path, keep_last_versions=2)
    ids = []
    for i in range(5):
        ids.append(add(s, f"m{i}", i))
        time.sleep(0.003)  # commit times a little apart, as real writes are
    v4, v5 = s.version - 1, s.version
    s.compact()
    kept = [v["version"] for v in s.versions_list()]
    assert kept[:2] == [v4, v5] and all(v > v5 for v in kept[2:])  # + the compaction's own versions
    assert len(live(s.as_of(v4))) == 4
    s.restore(v4)
    assert sorted(live(s).values()) == ["m0", "m1", "m2", "m3"] and replay(s, ids) == live(s)
    with pytest.raises(ValueError, match=f"version {v4 - 1} is not on disk"):
        s.restore(v4 - 1)
    # the eval default keeps only the latest version
    e = make(tmp_path / "eval")
    for i in range(3):
        add(e, f"m{i}", i)
    e.compact()
    assert len(e.versions_list()) == 1


def test_keep_versions_seconds(tmp_path):
    s = make(tmp_path, keep_versions_seconds=3600)
    for i in range(4):
        add(s, f"m{i}", i)
    s.compact()
    versions = [v["version"] for v in s.versions_list()]
    assert versions[:5] == [1, 2, 3, 4, 5]  # all within the hour: every write stays restorable
    s.restore(3)
    assert sorted(live(s).values()) == ["m0", "m1"]
    with pytest.raises(ValueError, match="keep_versions_seconds and keep_last_versions must be >= 0"):
        make(tmp_path / "x", keep_last_versions=-1)


def test_restore_after_compaction_and_group_commit(tmp_path, cache):
    s = make(tmp_path, cache=cache, keep_last_versions=50, history_flush_every=4)
    a = add(s, "a", 0)
    v1 = s.version
    b = add(s, "b", 1)
    s.apply([Change("DELETE", memory_id=a)])
    s.compact()  # flushes the grouped history, merges fragments
    s.restore(v1)  # history rows held back by group commit were written first
    assert live(s) == {a: "a"} and replay(s, [a, b]) == live(s)
    assert json.dumps(s.history(a))  # JSON-able
