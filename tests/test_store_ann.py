"""The store's ANN index knobs (policies/store/ann.py): index type, partitions, nprobes / ef / refine_factor."""

from __future__ import annotations

import numpy as np
import pytest
from lancedb.index import IvfHnswSq

from memtune.policies.store.ann import num_partitions, tune_query, vector_index
from memtune.policies.store.changes import Change
from memtune.policies.store.purge import purge_table
from memtune.policies.store.store import MemoryStore
from memtune.policies.types import Scope

DIM = 16


def test_partitions_and_configs():
    assert num_partitions(1_000_000, 4000) == 250 and num_partitions(100, 4000) == 1
    pq = vector_index("IVF_PQ", 1_000_000, 384, 4000)
    assert (pq.num_partitions, pq.num_sub_vectors, pq.distance_type) == (250, 48, "cosine")
    hnsw = vector_index("IVF_HNSW_SQ", 1_000_000, 384, 16_000)
    assert isinstance(hnsw, IvfHnswSq) and (hnsw.num_partitions, hnsw.distance_type) == (62, "cosine")
    with pytest.raises(ValueError, match="index_type must be one of"):
        vector_index("IVF_FLAT", 10, 384, 10)


@pytest.mark.parametrize(
    "kwargs, knob",
    [
        ({"index_type": "HNSW"}, "index_type"),
        ({"index_partition_rows": 0}, "index_partition_rows"),
        ({"nprobes": 0}, "nprobes"),
        ({"ef": 0}, "ef"),
        ({"refine_factor": -1}, "refine_factor"),
    ],
)
def test_bad_knobs_are_refused_when_the_store_opens(tmp_path, kwargs, knob):
    with pytest.raises(ValueError, match=knob):
        MemoryStore(tmp_path / "s", dim=DIM, embedder_id="e", **kwargs)
    assert not (tmp_path / "s").exists()  # refused before anything is created


class FakeQuery:
    def __init__(self):
        self.calls: list[tuple[str, int]] = []

    def __getattr__(self, name):
        def call(value):
            self.calls.append((name, value))
            return self

        return call


def test_tune_query_sets_what_each_index_reads():
    assert tune_query(FakeQuery(), "IVF_PQ", 30, 10, 100).calls == [("nprobes", 30), ("refine_factor", 10)]
    hnsw = tune_query(FakeQuery(), "IVF_HNSW_SQ", 8, 0, 120).calls
    assert hnsw == [("nprobes", 8), ("ef", 120)]  # refine_factor 0: no exact re-rank


def clustered(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(20, DIM))[rng.integers(0, 20, n)] + 0.3 * rng.normal(size=(n, DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("index_type, lance_type", [("IVF_HNSW_SQ", "IvfHnswSq"), ("IVF_PQ", "IvfPq")])
def test_store_builds_and_searches_the_configured_index(tmp_path, index_type, lance_type):
    vecs = clustered(600)
    s = MemoryStore(
        tmp_path / "s",
        dim=DIM,
        embedder_id="e",
        index_min_rows=300,
        compact_every=0,
        index_type=index_type,
        index_partition_rows=200,
        nprobes=3,
        refine_factor=5,
        ef=50,
    )
    s.apply([Change("ADD", f"m{i}", vecs[i], scope=Scope(f"u{i % 3}")) for i in range(600)])
    s.compact()
    (idx,) = [i for i in s._table.list_indices() if "vector" in i.columns]
    assert idx.index_type == lance_type and s._view() is None  # reads go to LanceDB, through the index
    exact = np.argsort(-(vecs @ vecs[10]))[:10]
    found = [int(h.text[1:]) for h in s.search(vecs[10], Scope(), 10)]
    assert found[0] == 10 and len(set(found) & set(exact.tolist())) >= 8  # approximate, near exact
    as_of = s.as_of(s.version)  # a point-in-time view searches with the same knobs
    assert (as_of.index_type, as_of.ef, as_of.index_partition_rows) == (index_type, 50, 200)
    assert [h.id for h in as_of.search(vecs[10], Scope(), 5)] == [h.id for h in s.search(vecs[10], Scope(), 5)]


def test_purge_rebuilds_an_hnsw_index(tmp_path):
    vecs = clustered(400, seed=1)
    s = MemoryStore(
        tmp_path / "s",
        dim=DIM,
        embedder_id="e",
        index_min_rows=300,
        compact_every=0,
        index_type="IVF_HNSW_SQ",
        index_partition_rows=200,
    )
    s.apply([Change("ADD", f"m{i}", vecs[i], scope=Scope("u")) for i in range(400)])
    s.compact()
    purge_table(s._table)
    assert [i.index_type for i in s._table.list_indices() if "vector" in i.columns] == ["IvfHnswSq"]
