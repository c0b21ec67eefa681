"""The ANN (vector) index of a big memory store: which LanceDB index is built past `index_min_rows`, how it is
partitioned, and how a search through it is tuned (nprobes, ef, refine_factor).

Two kinds: IVF_PQ (k-means partitions, product-quantised codes: `sub_vectors` bytes a vector, re-ranked exactly
over refine_factor x top_k candidates) and IVF_HNSW_SQ (k-means partitions, an HNSW graph over 8-bit scalar-quantised
vectors in each; `ef` candidates a graph search). Partitions: one per `partition_rows` rows at build time.
The defaults (MemoryStore, conf/store/lancedb.yaml) come from benchmarks/million.py: 1M MiniLM vectors of real
memory-like texts, recall@10 against exact search and per-query p50/p95 (experiments/million-memories/README.md).
"""

from __future__ import annotations

from lancedb.index import IvfHnswSq, IvfPq

INDEX_TYPES = ("IVF_PQ", "IVF_HNSW_SQ")
LANCE_INDEX_TYPES = {"IvfPq": "IVF_PQ", "IvfHnswSq": "IVF_HNSW_SQ"}  # list_indices()' names -> ours


def check_ann(index_type: str, partition_rows: int, nprobes: int, refine_factor: int, ef: int) -> None:
    """Refuse knob values LanceDB would reject late (at the first index build or search), naming the knob."""
    if index_type not in INDEX_TYPES:
        raise ValueError(f"index_type must be one of {INDEX_TYPES}, got {index_type!r}")
    for name, value in (("index_partition_rows", partition_rows), ("nprobes", nprobes), ("ef", ef)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if not isinstance(refine_factor, int) or refine_factor < 0:
        raise ValueError(f"refine_factor must be an int >= 0 (0: no exact re-rank), got {refine_factor!r}")


def num_partitions(rows: int, partition_rows: int) -> int:
    """One IVF partition per `partition_rows` rows (at least 1)."""
    return max(1, rows // max(1, partition_rows))


def num_sub_vectors(dim: int) -> int:
    """PQ sub-vectors of 8 dims when dim allows it (384 -> 48: 48 bytes a vector), else of 4, 2 or 1."""
    for width in (8, 4, 2, 1):
        if dim % width == 0:
            return dim // width
    return 1


def vector_index(index_type: str, rows: int, dim: int, partition_rows: int) -> IvfPq | IvfHnswSq:
    """The LanceDB index config memtune builds on `vector` (cosine)."""
    parts = num_partitions(rows, partition_rows)
    if index_type == "IVF_HNSW_SQ":
        return IvfHnswSq(distance_type="cosine", num_partitions=parts)
    if index_type == "IVF_PQ":
        return IvfPq(distance_type="cosine", num_partitions=parts, num_sub_vectors=num_sub_vectors(dim))
    raise ValueError(f"index_type must be one of {INDEX_TYPES}, got {index_type!r}")


def tune_query(query, index_type: str, nprobes: int, refine_factor: int, ef: int):
    """A LanceDB vector query set up for the index: nprobes partitions, ef (HNSW), exact re-rank (refine_factor>0)."""
    query = query.nprobes(nprobes)
    if index_type == "IVF_HNSW_SQ":
        query = query.ef(ef)
    return query.refine_factor(refine_factor) if refine_factor else query
