"""Forgetting a scope: delete_all blanks the scope's text in the history table (the rows stay as the record of what
happened), and purge_versions() / memtune-purge remove the text from disk, where old LanceDB versions and not yet
compacted data files still hold it. Checked on the raw bytes of the store directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from serve_support import GRAPH, make_memory, versions

from memtune.policies.store.purge import main as purge_main
from memtune.policies.types import Scope

SECRET = "Zanzibar"  # only user u1 ever says it
U1_PAIR = [
    {"role": "Caroline", "content": f"I moved to {SECRET} last year with my sister Ana.", "dia_id": "D1:1"},
    {"role": "Melanie", "content": f"{SECRET} sounds lovely, I visited Boston in May.", "dia_id": "D1:2"},
]
U2_PAIR = [
    {"role": "Caroline", "content": "I adopted a grey cat called Pixel from the shelter.", "dia_id": "D2:1"},
    {"role": "Melanie", "content": "Pixel is a lovely name for a cat.", "dia_id": "D2:2"},
]


def on_disk(root: Path, text: str) -> list[str]:
    """Files under `root` whose bytes contain `text` (LanceDB stores short strings uncompressed)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes())


@pytest.fixture
def store_dir(tmp_path):
    return tmp_path / "store"


@pytest.fixture
def mem0g(store_dir, embedder):
    memory = make_memory(store_dir, embedder, "g-1", *GRAPH)
    # the heuristic extractor reads no context, so its adds keep none (runtime/scope_state.py); keep the last 2
    # messages, as an LLM extractor with recent_messages=2 would: the scope's context then holds SECRET too
    memory._states.keep_recent = 2
    memory.add(U1_PAIR, user_id="u1")
    (kept,) = memory.add(U1_PAIR[:1], user_id="u1", infer=False)
    memory.update(kept["id"], f"Caroline lives in {SECRET} now", metadata={"note": SECRET}, user_id="u1")
    (gone,) = memory.add(f"My {SECRET} address is 12 Palm Road", user_id="u1", infer=False)
    memory.delete(gone["id"], user_id="u1")  # deleted on its own before the scope is: its history stays until then
    memory.add(U2_PAIR, user_id="u2")
    memory.ids = {"kept": kept["id"], "gone": gone["id"]}
    yield memory
    memory.close()


def test_delete_all_blanks_the_scopes_history_and_purge_removes_it_from_disk(mem0g, store_dir):
    memory = mem0g
    u1 = [m["id"] for m in memory.get_all(user_id="u1")]
    assert len(u1) >= 2 and any(SECRET in h["old_text"] for h in memory.history(memory.ids["kept"]))
    assert any(SECRET in r["memory"] for r in memory.search_with_relations(SECRET, user_id="u1")["relations"])
    u2_before = memory.get_all(user_id="u2")
    u2_history = {m["id"]: memory.history(m["id"]) for m in u2_before}
    assert memory._states.table.get(Scope("u1")) is not None  # u1's recent messages are kept in the store
    assert memory.delete_all(user_id="u1") == len(u1)
    assert memory._states.table.get(Scope("u1")) is None and memory._states.table.get(Scope("u2")) is not None
    for mid in [*u1, memory.ids["gone"]]:  # the scope's live memories and the one deleted before
        rows = memory.history(mid, user_id="u1")
        assert rows and rows[0]["op"] == "ADD" and rows[-1]["op"] == "DELETE"
        assert all(r["old_text"] == r["new_text"] == "" for r in rows), rows
        assert all(r["metadata"].get("purged") is True and r["user_id"] == "u1" for r in rows)
    assert [r["op"] for r in memory.history(memory.ids["kept"])] == ["ADD", "UPDATE", "DELETE"]
    assert memory.history(u1[0])[-1]["metadata"] == {"purged": True, "reason": "delete_all"}
    assert memory.get_all(user_id="u2") == u2_before  # other scopes keep everything
    assert {m["id"]: memory.history(m["id"]) for m in u2_before} == u2_history
    assert memory.search_with_relations(SECRET, user_id="u1") == {"results": [], "relations": []}
    # a second delete_all finds nothing left to blank: no new version
    version = versions(memory)
    assert memory.delete_all(user_id="u1") == 0 and versions(memory) == version

    # no live row holds the text any more, but old versions (and deletion-masked rows) on disk still do
    assert on_disk(store_dir, SECRET)
    report = memory.purge_versions()
    # the scopes' rolling context (recent messages, summary: runtime/scope_state.py) is a table of the store too
    assert set(report) == {"memories", "memories_history", "graph_nodes", "graph_edges", "memories_scope_state"}
    assert all(t["versions_after"] == 1 for t in report.values())
    kept_versions = {n: t for n, t in report.items() if n != "memories_scope_state"}  # that one keeps none anyway
    assert all(t["versions_after"] < t["versions_before"] for t in kept_versions.values())
    assert sum(t["bytes_after"] for t in report.values()) < sum(t["bytes_before"] for t in report.values())
    assert on_disk(store_dir, SECRET) == []
    assert len(memory.store.versions_list()) == 1
    # the store works as before: the same reads, and new writes
    assert memory.get_all(user_id="u2") == u2_before
    assert {m["id"]: memory.history(m["id"]) for m in u2_before} == u2_history
    assert memory.search("grey cat Pixel", user_id="u2")[0]["user_id"] == "u2"
    assert memory.search_with_relations("Pixel the cat", user_id="u2")["relations"]
    rex = [{"role": "Caroline", "content": "My dog Rex loves the beach.", "dia_id": "D3:1"}]
    assert [e["event"] for e in memory.add(rex, user_id="u2")] == ["ADD"]  # the vector store and the graph
    assert len(memory.get_all(user_id="u2")) == len(u2_before) + 1
    assert any("Rex" in r["memory"] for r in memory.search_with_relations("Rex", user_id="u2")["relations"])


def test_purge_keeps_the_vector_index(tmp_path, embedder):
    from memtune.policies.store.changes import Change
    from memtune.policies.store.store import MemoryStore
    from memtune.policies.types import Scope

    store = MemoryStore(tmp_path / "s", embedder.dim, embedder.id, index_min_rows=256, cache=False)
    texts = [f"note {i} about {'tea' if i % 2 else 'coffee'} and more words {i % 7}" for i in range(300)]
    store.apply(
        [Change("ADD", t, v, scope=Scope(f"u{i % 3}")) for i, (t, v) in enumerate(zip(texts, embedder.embed(texts)))]
    )
    store.compact()  # builds the IVF_PQ index past index_min_rows
    assert store._has_vector_index()
    assert store.delete_all(Scope("u0")) == 100
    q = embedder.embed(["note about tea"])[0]
    before = [(m.id, round(m.score, 5)) for m in store.search(q, Scope(), 5)]
    with pytest.raises(PermissionError, match="read-only"):  # a point-in-time view never purges
        store.as_of(store.version).purge_versions()
    report = store.purge_versions()
    assert report["memories"]["rows"] == 200 and store._has_vector_index()
    assert [(m.id, round(m.score, 5)) for m in store.search(q, Scope(), 5)] == before
    store.close()


def test_memtune_purge_command(mem0g, store_dir, tmp_path, capsys):
    mem0g.delete_all(user_id="u1")
    mem0g.close()  # the command runs with the server stopped
    assert on_disk(store_dir, SECRET)
    assert purge_main([str(store_dir)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["tables"]) == {
        "memories",
        "memories_history",
        "graph_nodes",
        "graph_edges",
        "memories_scope_state",
    }
    assert all(t["versions_after"] == 1 for t in report["tables"].values())
    assert on_disk(store_dir, SECRET) == []
    # refused, with one line and nothing changed: not a directory, or a directory without a memtune store
    (tmp_path / "empty").mkdir()
    for bad in (tmp_path / "nope", tmp_path / "empty"):
        assert purge_main([str(bad)]) == 2
        assert "memtune-purge:" in capsys.readouterr().err
    assert not (tmp_path / "nope").exists() and list((tmp_path / "empty").iterdir()) == []
