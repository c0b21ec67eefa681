"""benchmarks/million.py: recall@k and exact top-k by hand, the 1M construction, and the whole script at 2k rows
(a fake embedder in the fast test; the real MiniLM one in the slow test)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import million  # noqa: E402
import million_corpus  # noqa: E402
from million_lib import exact_topk, recall_at_k, synthesize  # noqa: E402


def test_recall_at_k_by_hand():
    truth = np.array([[1, 2, 9], [7, 8, 9]])
    # query 0: 1 and 2 of {1, 2, 9} found (2/3); query 1: none of {7, 8, 9} (0); mean 1/3
    assert recall_at_k([[1, 2, 3], [4, 5, 6]], truth, k=3) == pytest.approx(1 / 3)
    assert recall_at_k([[9, 2, 1], [9, 8, 7]], truth, k=3) == 1.0  # order within the top k does not matter
    assert recall_at_k([[1, 2, 9, 7]], truth[:1], k=2) == 1.0  # only the first k of each list count
    assert recall_at_k([[1, 1, 1]], truth[:1], k=3) == pytest.approx(1 / 3)  # a repeated id counts once
    with pytest.raises(ValueError, match="2 result lists for 1 queries"):
        recall_at_k([[1], [2]], truth[:1], k=1)


def test_exact_topk_across_batches_by_hand():
    rows = np.array([[1, 0], [0, 1], [0.6, 0.8], [0.8, 0.6], [-1, 0]], np.float32)
    q = np.array([[1, 0], [0, 1]], np.float32)
    # q0 scores: 1, 0, .6, .8, -1 -> 0, 3, 2; q1: 0, 1, .8, .6, 0 -> 1, 2, 3; the split between batches is irrelevant
    for split in (1, 2, 4):
        got = exact_topk(q, [rows[:split], rows[split:]], k=3)
        assert got.tolist() == [[0, 3, 2], [1, 2, 3]]


def test_synthesize_keeps_real_rows_and_builds_unit_vectors_near_them():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(50, 16)).astype(np.float32)
    real /= np.linalg.norm(real, axis=1, keepdims=True)
    out = np.concatenate(list(synthesize(real, 500)))
    assert out.shape == (500, 16)
    assert np.array_equal(out[:50], real)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    nearest = (out[50:] @ real.T).max(axis=1)  # lam <= 0.5: each built row leans towards a real one
    assert nearest.min() > 0.6 and len(np.unique(out.round(6), axis=0)) == 500  # and none repeats
    assert np.concatenate(list(synthesize(real, 20))).shape == (20, 16)  # fewer rows than real: a prefix


def fake_embed(texts, cache, tag, log=print):
    """Clustered unit vectors standing in for MiniLM (the fast test must not wait for onnxruntime)."""
    rng = np.random.default_rng(len(texts) + len(tag))
    centres = rng.normal(size=(40, 384))
    v = centres[rng.integers(0, 40, len(texts))] + 0.5 * rng.normal(size=(len(texts), 384))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def check_output(out: Path, rows: int) -> dict:
    res = json.loads((out / "results.json").read_text())
    assert res["rows"] == rows and res["n_real"] + res["n_constructed"] == rows
    by = {r["config"]: r for r in res["results"]}
    assert by["flat"]["recall@10"] == pytest.approx(1.0)  # LanceDB's exact scan agrees with numpy's top 10
    for name in ("pq48", "hnsw"):
        r = by[name]
        assert r["build_s"] > 0 and r["peak_rss_mb"] > 0 and r["p95_ms"] >= r["p50_ms"] > 0
        assert 0.0 <= r["recall@10"] <= 1.0
    assert (out / "results.parquet").stat().st_size > 0
    return res


def test_million_script_runs_at_2k_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(million_corpus, "embed_cached", fake_embed)
    for name in ("pq48", "hnsw"):  # one search setting each: the test checks the run, not the sweep
        kind, parts, subv, settings = million.CONFIGS[name]
        monkeypatch.setitem(million.CONFIGS, name, (kind, parts, subv, settings[-1:]))
    args = ["--rows", "2000", "--real", "500", "--queries", "20", "--flat-queries", "5", "--configs", "pq48,hnsw"]
    million.main([*args, "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")])
    res = check_output(tmp_path / "out", 2000)
    assert res["n_real"] == 500 and res["n_constructed"] == 1500 and "normalise" in res["construction"]


def test_million_refuses_an_unknown_config(tmp_path):
    with pytest.raises(ValueError, match="unknown config"):
        million.run(np.eye(4, 384, dtype=np.float32), np.eye(1, 384, dtype=np.float32), 4, ["ivf_flat"], tmp_path)


@pytest.mark.slow
def test_million_script_with_minilm(tmp_path):
    """The real pipeline: MiniLM embeddings of the first 2,048 corpus texts and 100 questions, 4k rows."""
    args = ["--rows", "4000", "--real", "2048", "--queries", "100", "--configs", "pq48,hnsw"]
    million.main([*args, "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")])
    check_output(tmp_path / "out", 4000)
