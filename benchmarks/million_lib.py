"""The measuring parts of benchmarks/million.py: the 1M vector construction, exact top-k, recall@k, peak RAM, and one
LanceDB index config built and queried. Pure numpy / LanceDB; no embedder here (million_corpus.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

DIM = 384
BATCH = 100_000
# Synthetic rows (past the distinct real vectors): v = normalise((1 - lam) * a + lam * b + eps), a and b real vectors
# drawn uniformly, lam ~ U(0, LAM_MAX), eps ~ N(0, NOISE^2 I). lam <= 0.5 keeps v nearer a (a paraphrase of a that
# borrows from b); eps (norm ~0.2) keeps no two rows equal. The result has real vectors' neighbourhood structure:
# dense clusters around real texts, which makes the ANN search harder than uniform random vectors, never easier.
LAM_MAX, NOISE = 0.5, 0.01
CONSTRUCTION = (
    "rows [0, n_real): distinct real texts embedded with MiniLM; rows [n_real, rows): "
    f"normalise((1-lam)*a + lam*b + eps), a, b uniform real vectors, lam ~ U(0, {LAM_MAX}), eps ~ N(0, {NOISE}^2 I)"
)


def recall_at_k(found: list[list[int]], truth: np.ndarray, k: int = 10) -> float:
    """Mean over queries of |found[i][:k] & truth[i][:k]| / k (truth: the exact top-k ids, one row per query)."""
    if len(found) != len(truth):
        raise ValueError(f"recall_at_k: {len(found)} result lists for {len(truth)} queries")
    if not len(truth):
        raise ValueError("recall_at_k: no queries")
    hits = [len(set(f[:k]) & set(t[:k].tolist())) for f, t in zip(found, truth)]
    return float(np.mean(hits)) / k


def synthesize(real: np.ndarray, rows: int, seed: int = 0) -> Iterator[np.ndarray]:
    """`rows` unit vectors in batches: the real ones first, then the construction above (CONSTRUCTION)."""
    n_real = min(len(real), rows)
    for s in range(0, n_real, BATCH):
        yield real[s : min(s + BATCH, n_real)]
    rng = np.random.default_rng(seed)
    left = rows - n_real
    while left > 0:
        n = min(BATCH, left)
        a, b = real[rng.integers(0, len(real), n)], real[rng.integers(0, len(real), n)]
        lam = rng.uniform(0.0, LAM_MAX, (n, 1)).astype(np.float32)
        v = (1 - lam) * a + lam * b + rng.normal(0.0, NOISE, (n, real.shape[1])).astype(np.float32)
        yield (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
        left -= n


def exact_topk(queries: np.ndarray, batches: list[np.ndarray], k: int = 10) -> np.ndarray:
    """Row ids of the exact cosine top-k (unit vectors: the dot product) per query, best first."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    offset = 0
    for b in batches:
        s = queries @ b.T
        kk = min(k, s.shape[1])
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        best_s = np.concatenate([best_s, np.take_along_axis(s, part, 1)], axis=1)
        best_i = np.concatenate([best_i, part + offset], axis=1)
        keep = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
        offset += len(b)
    return best_i


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux: clear_refs 5); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident set of this process in MB since the last reset_peak_rss() (VmHWM), else since start."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_table(db, name: str, batches: list[np.ndarray]):
    """A LanceDB table of (id int64 = row number, user_id, vector) written in one create_table call."""
    schema = pa.schema(
        [pa.field("id", pa.int64()), pa.field("user_id", pa.string()), pa.field("vector", pa.list_(pa.float32(), DIM))]
    )

    def gen():
        offset = 0
        for b in batches:
            n = len(b)
            ids = pa.array(np.arange(offset, offset + n, dtype=np.int64))
            users = pa.array([f"user-{i % 100}" for i in range(offset, offset + n)])
            vec = pa.FixedSizeListArray.from_arrays(pa.array(b.reshape(-1), pa.float32()), DIM)
            yield pa.RecordBatch.from_arrays([ids, users, vec], schema=schema)
            offset += n

    return db.create_table(name, data=gen(), schema=schema, mode="overwrite")


def index_config(kind: str, partitions: int, sub_vectors: int | None = None):
    from lancedb.index import IvfHnswSq, IvfPq

    if kind == "IVF_HNSW_SQ":
        return IvfHnswSq(distance_type="cosine", num_partitions=partitions)
    if kind == "IVF_PQ":
        return IvfPq(distance_type="cosine", num_partitions=partitions, num_sub_vectors=sub_vectors)
    raise ValueError(f"unknown index kind {kind!r}: use IVF_HNSW_SQ or IVF_PQ")


def build_index(table, kind: str, partitions: int, sub_vectors: int | None = None) -> dict:
    """Build (replace) the vector index; its wall time and the process's peak RSS during the build."""
    base = rss_mb()
    exact_peak = reset_peak_rss()
    t0 = time.perf_counter()
    table.create_index("vector", config=index_config(kind, partitions, sub_vectors), replace=True)
    build_s = time.perf_counter() - t0
    return {
        "build_s": build_s,
        "rss_before_mb": base,
        "peak_rss_mb": peak_rss_mb(),
        "peak_is_build_only": exact_peak,  # False: the peak is the process's since start (ru_maxrss)
    }


def search_all(table, queries: np.ndarray, k: int, *, nprobes=None, ef=None, refine=None, flat=False, warmup=5):
    """One query at a time (what a server does per request): ids found, per-query wall seconds, and the process's
    CPU seconds per query (LanceDB's threads included: what a query costs, much less moved by other load)."""

    def one(q):
        query = table.search(q, vector_column_name="vector").distance_type("cosine")
        if flat:
            query = query.bypass_vector_index()
        else:
            if nprobes:
                query = query.nprobes(nprobes)
            if ef:
                query = query.ef(ef)
            if refine:
                query = query.refine_factor(refine)
        return query.select(["id", "_distance"]).limit(k).to_arrow()["id"].to_pylist()

    for q in queries[:warmup]:
        one(q)
    found, secs = [], []
    cpu0 = time.process_time()
    for q in queries:
        t0 = time.perf_counter()
        found.append(one(q))
        secs.append(time.perf_counter() - t0)
    cpu_per_query = (time.process_time() - cpu0) / max(1, len(queries))
    return found, np.asarray(secs), cpu_per_query
