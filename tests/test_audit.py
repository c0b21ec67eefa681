"""memtune-audit: the report on a store (duplicates, contradictions, growth), read-only unless asked, each --apply
fix, and clear errors for a missing store, a path that is not a store and an unknown scope."""

from __future__ import annotations

import json

import lancedb
import pytest

from memtune.optimize.audit.app import audit, main
from memtune.policies.store.changes import Change
from memtune.policies.store.store import MemoryStore
from memtune.policies.types import Scope

ALICE, BOB = Scope("alice"), Scope("bob")


@pytest.fixture
def store_path(tmp_path, embedder):
    """alice: Lisbon then Porto (a contradiction), tea twice (duplicates), one superseded memory; bob: one memory."""
    path = tmp_path / "store"
    store = MemoryStore(path, dim=embedder.dim, embedder_id=embedder.id)

    def add(text, scope=ALICE, prov=(), **kw):
        ((_, mid, _),) = store.apply(
            [Change("ADD", text, embedder.embed([text])[0], scope=scope, provenance=prov, **kw)]
        )
        return mid

    ids = {
        "lisbon": add("Alice: I live in Lisbon", prov=("D1:1",)),
        "tea1": add("Alice: I love green tea", prov=("D1:2",)),
        "porto": add("Alice: I moved to Porto", prov=("D2:1",), timestamp="9 June 2023"),
        "tea2": add("Alice: I love green tea", prov=("D2:2",)),
        "bob": add("Bob: I drive a Fiat", scope=BOB),
        "old": add("Alice: I work at Acme", prov=("D1:3",)),
    }
    ids["new"] = add("Alice: I work at Globex", prov=("D2:3",), supersedes=(ids["old"],))
    store.close()
    return str(path), ids


def versions(path: str) -> tuple[int, int]:
    db = lancedb.connect(path)
    return db.open_table("memories").version, db.open_table("memories_history").version


def test_the_report_names_duplicates_and_contradictions(store_path):
    path, ids = store_path
    before = versions(path)
    report, _ = audit(path, "alice", top=5)
    assert versions(path) == before  # read-only
    assert (report["memories"], report["stored"], report["superseded"], report["scopes"]) == (5, 6, 1, 2)
    assert report["duplicate_rate"] == 0.4 and report["duplicate_clusters"] == 1  # the two teas of five
    (cluster,) = report["worst_duplicate_clusters"]
    assert {m["id"] for m in cluster} == {ids["tea1"], ids["tea2"]} and cluster[0]["text"] == "Alice: I love green tea"
    (pair,) = report["contradiction_pairs"]
    assert [m["id"] for m in pair] == [ids["lisbon"], ids["porto"]]
    assert report["fixes"] == {
        "supersede": {"changes": 1, "command": f"memtune-audit {path} alice --apply supersede"},
        "merge": {"changes": 2, "command": f"memtune-audit {path} alice --apply merge"},
        "purge": {"changes": 1, "command": f"memtune-audit {path} alice --apply purge"},
    }
    growth = report["growth_history"]
    assert [p["memories"] for p in growth] == [1, 2, 3, 4, 5, 6, 5]  # the INVALIDATE takes one away
    assert growth[-1]["stored"] == 6 and report["growth_versions"][-1]["memories"] == 5
    everyone, _ = audit(path)
    assert everyone["memories"] == 6 and everyone["scopes"] == 2


def test_the_cli_writes_the_report_and_the_plot(store_path, tmp_path, capsys):
    path, ids = store_path
    assert main([path, "alice", "--out", str(tmp_path / "a")]) == 0
    text = capsys.readouterr().out
    assert "duplicate rate (cosine >= 0.95): 40.00% in 1 clusters" in text and ids["lisbon"] in text
    assert f"fix supersede: 1 change(s): memtune-audit {path} alice --apply supersede" in text
    assert (tmp_path / "a" / "growth.png").stat().st_size > 1000
    assert json.loads((tmp_path / "a" / "audit.json").read_text())["contradictions"] == 1


def test_apply_supersede_merge_purge(store_path, tmp_path, embedder):
    path, ids = store_path
    out = str(tmp_path / "o")
    assert main([path, "alice", "--apply", "supersede", "--out", out]) == 0
    store = MemoryStore(path, dim=embedder.dim, embedder_id=embedder.id)
    lisbon = store.get(ids["lisbon"])
    assert (lisbon.valid, lisbon.superseded_by, lisbon.invalid_at) == (False, ids["porto"], "9 June 2023")
    assert audit(path, "alice")[0]["contradictions"] == 0
    assert main([path, "alice", "--apply", "merge", "--out", out]) == 0
    store.refresh()
    kept, gone = store.get(ids["tea2"]), store.get(ids["tea1"])
    assert kept.valid and set(kept.provenance) == {"D1:2", "D2:2"} and gone.superseded_by == ids["tea2"]
    assert audit(path, "alice")[0]["duplicate_rate"] == 0.0
    assert main([path, "alice", "--apply", "purge", "--out", out]) == 0
    store.refresh()
    assert store.count(ALICE, include_invalid=True) == store.count(ALICE) == 3  # porto, tea2, globex
    assert store.get(ids["lisbon"]) is None and [h["op"] for h in store.history(ids["lisbon"])][-1] == "DELETE"
    assert store.count(BOB) == 1  # another scope: untouched
    assert audit(path, "alice")[0]["fixes"] == {
        f: {"changes": 0, "command": None} for f in ("supersede", "merge", "purge")
    }


def test_a_store_from_before_the_validity_columns_is_audited_without_an_upgrade(tmp_path):
    import pyarrow as pa

    from memtune.policies.store.lance import META_DIM, META_EMBEDDER

    s = pa.string()
    fields = [pa.field(n, s) for n in ("id", "text", "user_id", "agent_id", "run_id", "timestamp", "created_at")]
    fields += [pa.field("updated_at", s), pa.field("metadata", s), pa.field("embedder_id", s)]
    fields += [pa.field("provenance", pa.list_(s)), pa.field("vector", pa.list_(pa.float32(), 2))]
    schema = pa.schema(fields, metadata={META_EMBEDDER: b"e", META_DIM: b"2"})
    row = {f.name: "" for f in fields} | {"id": "m1", "text": "Alice: I live in Lisbon", "user_id": "alice"}
    row |= {"provenance": [], "vector": [1.0, 0.0], "metadata": "{}"}
    lancedb.connect(str(tmp_path / "old")).create_table("memories", schema=schema).add(
        pa.Table.from_pylist([row], schema=schema)
    )
    before = versions_of(tmp_path / "old")
    report, _ = audit(str(tmp_path / "old"), "alice")
    assert report["memories"] == 1 and versions_of(tmp_path / "old") == before
    assert "invalid_at" not in lancedb.connect(str(tmp_path / "old")).open_table("memories").schema.names


def versions_of(path) -> int:
    return lancedb.connect(str(path)).open_table("memories").version


def test_bad_input_gets_a_clear_error(store_path, tmp_path, capsys):
    path, _ = store_path
    cases = [
        ([str(tmp_path / "nowhere")], "no store at"),
        ([str(tmp_path)], "is not a memtune store: it has no 'memories' table; did you mean"),
        ([path, "mallory"], "no memories of scope user_id='mallory' in"),
        ([path, "user_id=mallory"], "its user_ids: ['alice', 'bob']"),
        ([path, "team=x"], "write a user_id, or key=value pairs"),
    ]
    (tmp_path / "file.txt").write_text("x")
    cases.append(([str(tmp_path / "file.txt")], "is a file, not a store directory"))
    other = tmp_path / "other"
    lancedb.connect(str(other)).create_table("memories", data=[{"id": "1", "vector": [1.0, 0.0]}])
    cases.append(([str(other)], "is not a memtune store: its 'memories' table lacks columns ['text', 'user_id']"))
    for argv, words in cases:
        before = versions(path)
        assert main([*argv, "--out", str(tmp_path / "x")]) == 2, argv
        assert words in capsys.readouterr().err, argv
        assert versions(path) == before
