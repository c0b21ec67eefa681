"""Soft invalidation in MemoryStore: ADD with supersedes, INVALIDATE, searches and listings that skip invalid memories
unless asked, the history of an invalidation, refusals that write nothing, and the upgrade of stores from before
the invalid_at / superseded_by columns."""

from __future__ import annotations

import lancedb
import numpy as np
import pyarrow as pa
import pytest

from memtune.policies.store.changes import Change
from memtune.policies.store.lance import META_DIM, META_EMBEDDER
from memtune.policies.store.store import MemoryStore
from memtune.policies.types import Scope

DIM = 8
ALICE, BOB = Scope("alice"), Scope("bob")


def unit(*xs: float) -> np.ndarray:
    v = np.zeros(DIM, np.float32)
    v[: len(xs)] = xs
    return v / np.linalg.norm(v)


@pytest.fixture(params=[True, False], ids=["mirror", "lancedb"])
def store(request, tmp_path) -> MemoryStore:
    return MemoryStore(tmp_path / "s", dim=DIM, embedder_id="e", cache=request.param, compact_every=0)


def add(store: MemoryStore, text: str, vec: np.ndarray, scope: Scope = ALICE, **kw) -> str:
    ((op, mid, _),) = store.apply([Change("ADD", text, vec, scope=scope, **kw)])
    return mid


def test_an_add_that_supersedes_keeps_the_old_memory_marked(store):
    old = add(store, "Alice: I live in Lisbon", unit(1), timestamp="1 May 2023", provenance=("D1:1",))
    other = add(store, "Alice: I love hiking", unit(0, 1))
    ((op, new, old_text),) = store.apply(
        [
            Change(
                "ADD",
                "Alice: I live in Porto now",
                unit(1, 0.2),
                scope=ALICE,
                timestamp="9 June 2023",
                supersedes=(old,),
            )
        ]
    )
    assert (op, old_text) == ("ADD", "")
    gone = store.get(old)  # get() finds it by id, marked
    assert (gone.text, gone.invalid_at, gone.superseded_by, gone.valid) == (
        "Alice: I live in Lisbon",
        "9 June 2023",  # when it stopped holding: the new fact's time
        new,
        False,
    )
    assert gone.provenance == ("D1:1",) and store.get(new).valid
    # search and listings skip it by default, return it when asked (marked)
    assert [m.id for m in store.search(unit(1), ALICE, 5)] == [new, other]
    assert [m.id for m in store.search(unit(1), ALICE, 5, include_invalid=True)][:2] == [old, new]
    assert [m.id for m in store.get_all(ALICE)] == [other, new]
    assert {m.id for m in store.get_all(ALICE, include_invalid=True)} == {old, new, other}
    assert (store.count(ALICE), store.count(ALICE, include_invalid=True)) == (2, 3)
    assert [m.id for m in store.search_many(unit(1)[None], ALICE, 5)[0]] == [new, other]
    history = store.history(old)
    assert [h["op"] for h in history] == ["ADD", "INVALIDATE"]
    assert history[1]["metadata"] == {"invalid_at": "9 June 2023", "superseded_by": new}
    assert history[1]["old_text"] == history[1]["new_text"] == "Alice: I live in Lisbon"
    assert [h["op"] for h in store.history(new)] == ["ADD"]


def test_invalidate_without_successor_and_the_refusals_write_nothing(store):
    a = add(store, "Bob: I am vegetarian", unit(2))
    b = add(store, "Bob: I drive a Fiat", unit(3), scope=BOB)
    ((op, mid, text),) = store.apply([Change("INVALIDATE", memory_id=a, scope=ALICE)])
    assert (op, mid, text) == ("INVALIDATE", a, "Bob: I am vegetarian")
    rec = store.get(a)
    assert rec.invalid_at and rec.superseded_by == "" and not rec.valid  # invalid_at: the write time
    version, rows = store.version, store._history.count_rows()
    refusals = [
        ([Change("INVALIDATE", memory_id=a, scope=ALICE)], ValueError, "already invalid"),
        ([Change("INVALIDATE", memory_id=b, scope=ALICE)], KeyError, "not in scope"),
        ([Change("INVALIDATE", memory_id="nope", scope=ALICE)], KeyError, "unknown memory id"),
        ([Change("ADD", "x", unit(4), scope=ALICE, supersedes=("nope",))], KeyError, "unknown memory id"),
        ([Change("ADD", "x", unit(4), scope=ALICE, supersedes=(b,))], KeyError, "not in scope"),
        ([Change("UPDATE", "x", unit(4), b, BOB, supersedes=(a,))], ValueError, "ADD only"),
        ([Change("DELETE", memory_id=b, scope=BOB, superseded_by=a)], ValueError, "INVALIDATE only"),
        ([Change("ADD", "x", unit(4), scope=BOB, supersedes=(b, b))], ValueError, "twice"),
    ]
    for changes, error, words in refusals:
        with pytest.raises(error, match=words):
            store.apply([Change("ADD", "first of the batch", unit(5), scope=BOB), *changes])
    assert (store.version, store._history.count_rows()) == (version, rows)
    assert store.count(include_invalid=True) == 2


def test_a_batch_that_supersedes_two_memories_and_updates_an_invalid_one(store):
    a = add(store, "Alice: my car is a Fiat", unit(3))
    b = add(store, "Alice: I drive a Fiat Panda", unit(3, 0.1))
    ((_, new, _),) = store.apply(
        [Change("ADD", "Alice: I drive a Tesla", unit(3, 0.3), scope=ALICE, supersedes=(a, b))]
    )
    assert [store.get(i).superseded_by for i in (a, b)] == [new, new]
    assert [m.id for m in store.get_all(ALICE)] == [new]
    # an invalid memory can still be edited or deleted by id; it stays invalid
    store.apply([Change("UPDATE", "Alice: my car was a Fiat", unit(3), a, ALICE)])
    assert store.get(a).text == "Alice: my car was a Fiat" and not store.get(a).valid
    store.apply([Change("DELETE", memory_id=b, scope=ALICE)])
    assert store.get(b) is None and store.count(include_invalid=True) == 2


def test_reopened_store_and_point_in_time_reads_keep_validity(tmp_path):
    s = MemoryStore(tmp_path / "s", dim=DIM, embedder_id="e", compact_every=0)
    old = add(s, "Alice: I work at Acme", unit(1))
    before = s.version
    s.apply([Change("ADD", "Alice: I work at Globex now", unit(1, 0.1), scope=ALICE, supersedes=(old,))])
    for cache in (True, False):
        again = MemoryStore(tmp_path / "s", dim=DIM, embedder_id="e", cache=cache)
        assert [m.text for m in again.search(unit(1), ALICE, 5)] == ["Alice: I work at Globex now"]
        assert not again.get(old).valid
    view = s.as_of(before)
    assert view.get(old).valid and [m.id for m in view.search(unit(1), ALICE, 5)] == [old]


@pytest.mark.parametrize("cache", [True, False], ids=["mirror", "lancedb"])
def test_a_store_from_before_the_validity_columns_is_upgraded_on_open(tmp_path, cache):
    s = pa.string()
    meta = {META_EMBEDDER: b"e", META_DIM: str(DIM).encode()}
    names = ["id", "text", "user_id", "agent_id", "run_id", "timestamp", "created_at", "updated_at", "metadata"]
    fields = [pa.field(n, s) for n in names[:5]] + [pa.field("provenance", pa.list_(s))]
    fields += [pa.field(n, s) for n in names[5:]] + [pa.field("embedder_id", s), pa.field("policy_version", s)]
    fields.insert(2, pa.field("vector", pa.list_(pa.float32(), DIM)))
    schema = pa.schema(fields, metadata=meta)
    row = {n: "" for n in schema.names} | {"id": "old-1", "text": "Alice: I live in Lisbon", "user_id": "alice"}
    row |= {"vector": unit(1).tolist(), "provenance": ["D1:1"], "metadata": "{}", "embedder_id": "e"}
    db = lancedb.connect(str(tmp_path / "s"))
    db.create_table("memories", schema=schema).add(pa.Table.from_pylist([row], schema=schema))
    store = MemoryStore(tmp_path / "s", dim=DIM, embedder_id="e", cache=cache)
    assert {"invalid_at", "superseded_by"} <= set(store._table.schema.names)
    assert store.get("old-1").valid and store.count(ALICE) == 1  # old rows (null) read as valid
    new = add(store, "Alice: I live in Porto", unit(1, 0.2), supersedes=("old-1",))
    assert [m.id for m in store.search(unit(1), ALICE, 5)] == [new]
    assert store.get("old-1").superseded_by == new
