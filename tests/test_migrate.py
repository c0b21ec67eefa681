"""memtune-migrate: re-embed a store into a new one (HashEmbedder 16-d -> 32-d), source untouched."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest

from memtune.policies.runtime.migrate import main
from memtune.policies.store.changes import Change
from memtune.policies.store.store import MemoryStore
from memtune.policies.types import Scope


class SizedHash:
    """The conftest HashEmbedder with a chosen dim (JSON-instantiable from --embedder)."""

    def __init__(self, dim: int):
        self.dim, self.id = dim, f"test-hash-{dim}"

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def spec(dim: int) -> str:
    return json.dumps({"_target_": "test_migrate.SizedHash", "dim": dim})


@pytest.fixture
def source(tmp_path):
    emb = SizedHash(16)
    s = MemoryStore(tmp_path / "src", dim=16, embedder_id=emb.id, policy_version="old-bundle")
    texts = ["Caroline adopted a dog named Biscuit", "Mel runs marathons in Berlin", "Ana lives in Porto"]
    scopes = [Scope("u1", "a1"), Scope("u1", "a2"), Scope("u2", run_id="r1")]
    out = s.apply(
        [
            Change("ADD", t, v, scope=sc, provenance=(f"D1:{i}",), timestamp=f"day {i}", metadata={"i": i})
            for i, (t, v, sc) in enumerate(zip(texts, emb.embed(texts), scopes))
        ]
    )
    ids = [mid for _, mid, _ in out]
    s.apply([Change("UPDATE", "Ana lives in Lisbon now", emb.embed(["Ana lives in Lisbon now"])[0], ids[2])])
    s.apply([Change("DELETE", memory_id=ids[1])])
    s.close()
    return tmp_path / "src", ids


def snapshot(store: MemoryStore) -> list[tuple]:
    return [
        (m.id, m.text, m.scope, m.provenance, m.timestamp, m.created_at, m.updated_at, m.metadata)
        for m in store.get_all()
    ]


def test_migrate_copies_everything_with_new_vectors(tmp_path, source, capsys):
    src, ids = source
    old = MemoryStore(src, dim=16, embedder_id="test-hash-16")
    expected, old_history = snapshot(old), {i: old.history(i) for i in ids}
    old.close()
    files_before = sorted((p.relative_to(src), p.stat().st_mtime_ns) for p in src.rglob("*"))

    assert (
        main(
            [
                "--src",
                str(src),
                "--dst",
                str(tmp_path / "dst"),
                "--embedder",
                spec(32),
                "--policy-version",
                "new-bundle",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["memories"] == 2 and report["history_rows"] == 5 and report["migration_rows"] == 2
    assert (report["from_embedder"], report["to_embedder"], report["dim"]) == ("test-hash-16", "test-hash-32", 32)

    new = MemoryStore(tmp_path / "dst", dim=32, embedder_id="test-hash-32")
    assert snapshot(new) == expected  # ids, scopes, provenance, times, metadata
    assert {m.policy_version for m in new.get_all()} == {"new-bundle"}
    assert {m.embedder_id for m in new.get_all()} == {"test-hash-32"}
    q = SizedHash(32).embed(["where does Ana live"])[0]
    top = new.search(q, Scope("u2"), 1)[0]
    assert top.text == "Ana lives in Lisbon now"  # scored with the new embedder's 32-d vector of the text:
    assert top.score == pytest.approx(float(q @ SizedHash(32).embed([top.text])[0]), abs=1e-6)
    for i in ids:  # the whole history, then one row recording the migration for each live memory
        hist = new.history(i)
        assert hist[: len(old_history[i])] == old_history[i]
        extra = hist[len(old_history[i]) :]
        assert [(h["op"], h["metadata"]["reason"], h["policy_version"]) for h in extra] == (
            [] if i == ids[1] else [("UPDATE", "migrate", "new-bundle")]
        )
    # the source was only read
    assert sorted((p.relative_to(src), p.stat().st_mtime_ns) for p in src.rglob("*")) == files_before
    with pytest.raises(ValueError, match="test-hash-16"):
        MemoryStore(tmp_path / "dst", dim=16, embedder_id="test-hash-16")


def test_migrate_refuses_a_non_empty_destination_and_bad_targets(tmp_path, source, capsys):
    src, _ = source
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    assert main(["--src", str(src), "--dst", str(dst), "--embedder", spec(32)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in dst.iterdir()] == ["keep.txt"]
    assert main(["--src", str(src), "--dst", str(src), "--embedder", spec(32)]) == 2
    assert "must differ" in capsys.readouterr().err
    assert main(["--src", str(tmp_path / "nope"), "--dst", str(tmp_path / "d2"), "--embedder", spec(32)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["--src", str(src), "--dst", str(tmp_path / "d3"), "--embedder", "no-such-embedder"]) == 2
    assert "no embedder config 'no-such-embedder'" in capsys.readouterr().err
    assert not (tmp_path / "d2").exists() and not (tmp_path / "d3").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # no half-written store left behind


def test_migrate_from_a_bundle(tmp_path, source, capsys, monkeypatch):
    from hydra import compose, initialize_config_module

    from memtune.policies.runtime.bundle_config import bundle_config
    from memtune.policies.runtime.bundle_save import save_bundle

    with initialize_config_module("memtune.conf", version_base="1.3"):
        cfg = compose("eval", overrides=["policy=mem0_offline", "lm=none"])
    config = bundle_config(cfg)
    config["embedder"] = {"_target_": "test_migrate.SizedHash", "dim": 32}
    save_bundle(tmp_path / "b", config, embedder_id="test-hash-32", embedder_dim=32, version="bundle-32")
    src, _ = source
    assert main(["--src", str(src), "--dst", str(tmp_path / "dst"), "--bundle", str(tmp_path / "b")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["policy_version"] == "bundle-32" and report["memories"] == 2
    new = MemoryStore(tmp_path / "dst", dim=32, embedder_id="test-hash-32")
    assert {m.policy_version for m in new.get_all()} == {"bundle-32"}
