"""A million memories: LanceDB's ANN indices on realistic 384-d MiniLM vectors, in one run.

    uv run python benchmarks/million.py                    # 1,000,000 rows (index builds take minutes each)
    uv run python benchmarks/million.py --rows 100000      # a quick check
    uv run python benchmarks/million.py --configs pq48     # one index config only

Vectors: distinct memory-like texts (LOCOMO and update-set turns, LOCOMO observations / summaries, templated facts;
million_corpus.py) embedded with memtune's offline MiniLM embedder and cached under --cache (a re-run does not
re-embed); past the distinct texts, rows are built from pairs of real vectors (million_lib.CONSTRUCTION, printed and
saved with the results). Queries: LOCOMO and update-set questions, embedded the same way (never rows of the table).
For each index config: build time and peak RSS of the build, then per-query search latency (one query at a time,
top 10, whole table: one wide scope) p50/p95 and recall@10 against exact top 10 (numpy over all rows), at
several nprobes / ef / refine_factor. LanceDB's flat (exact) scan is the baseline row. Output: a printed table and
<out>/results.json + <out>/results.parquet.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import million_corpus as corpus_mod  # noqa: E402
from million_lib import (  # noqa: E402
    CONSTRUCTION,
    build_index,
    exact_topk,
    recall_at_k,
    rss_mb,
    search_all,
    synthesize,
    write_table,
)

K = 10
TARGET_P95_MS, TARGET_RECALL = 30.0, 0.95  # issue 16's target at 1M memories
# name -> (index kind, partitions(rows), sub_vectors, [(nprobes, ef, refine_factor), ...])
CONFIGS = {
    "hnsw": (
        "IVF_HNSW_SQ",
        lambda rows: max(1, rows // 16_000),  # ~16k rows a partition: one HNSW graph each
        None,
        [(4, 50, None), (8, 100, None), (16, 150, None), (8, 100, 2), (16, 150, 2)],
    ),
    "pq48": (
        "IVF_PQ",
        lambda rows: max(1, rows // 4_000),  # ~4k rows a partition (sqrt(rows) = 1000 at 1M trains 4x longer)
        48,  # 8 dims a sub-vector (48 bytes a vector): the store's current default
        [(20, None, 10), (50, None, 20), (50, None, 50), (100, None, 50)],
    ),
    "pq96": (
        "IVF_PQ",
        lambda rows: max(1, rows // 4_000),
        96,  # 4 dims a sub-vector (96 bytes a vector)
        [(20, None, 10), (50, None, 20), (50, None, 50), (100, None, 50)],
    ),
}


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def pct_ms(secs: np.ndarray, q: float) -> float:
    return float(np.percentile(secs, q) * 1e3)


def run(
    real: np.ndarray,
    queries: np.ndarray,
    rows: int,
    configs: list[str],
    db_dir: Path,
    log=print,
    flat_queries: int = 20,
    on_result=None,
) -> dict:
    """Build a `rows`-row table from the real vectors, then build and query each index config."""
    import lancedb

    if rows < 1 or len(real) < 2:
        raise ValueError(f"need rows >= 1 and at least 2 real vectors, got rows={rows}, real={len(real)}")
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise ValueError(f"unknown config(s) {unknown}: choose from {sorted(CONFIGS)}")
    n_real = min(len(real), rows)
    t0 = time.perf_counter()
    batches = list(synthesize(real, rows))
    truth = exact_topk(queries, batches, K)
    log(f"{rows} rows ({n_real} real, {rows - n_real} constructed); exact top-{K} in {time.perf_counter() - t0:.1f} s")
    db = lancedb.connect(str(db_dir))
    t0 = time.perf_counter()
    table = write_table(db, "million", batches)
    write_s = time.perf_counter() - t0
    del batches
    gc.collect()
    log(f"table written in {write_s:.1f} s; RSS {rss_mb():.0f} MB; load {load_average()}")
    results = []

    def measure(name, kind, parts, subv, build, nprobes=None, ef=None, refine=None, flat=False):
        qs = queries[: min(len(queries), flat_queries)] if flat else queries
        found, secs, cpu = search_all(table, qs, K, nprobes=nprobes, ef=ef, refine=refine, flat=flat)
        rec = recall_at_k(found, truth[: len(qs)], K)
        row = {
            "config": name,
            "index": kind,
            "partitions": parts,
            "sub_vectors": subv,
            "nprobes": nprobes,
            "ef": ef,
            "refine_factor": refine,
            "build_s": build.get("build_s"),
            "peak_rss_mb": build.get("peak_rss_mb"),
            "rss_before_mb": build.get("rss_before_mb"),
            "queries": len(qs),
            "p50_ms": pct_ms(secs, 50),
            "p95_ms": pct_ms(secs, 95),
            "p99_ms": pct_ms(secs, 99),
            "cpu_ms_per_query": cpu * 1e3,
            f"recall@{K}": rec,
            "meets_target": bool(pct_ms(secs, 95) < TARGET_P95_MS and rec >= TARGET_RECALL),
            "load": load_average(),
        }
        results.append(row)
        if on_result is not None:
            on_result(results)  # results so far on disk: a run cut short keeps what it measured
        log(
            f"  {name:6s} nprobes={nprobes} ef={ef} refine={refine}: p50 {row['p50_ms']:.1f} p95 "
            f"{row['p95_ms']:.1f} ms recall@{K} {rec:.3f} (load {row['load']})"
        )

    measure("flat", "none", None, None, {}, flat=True)
    for name in configs:
        kind, parts_of, subv, settings = CONFIGS[name]
        parts = parts_of(rows)
        log(f"building {kind} partitions={parts} sub_vectors={subv} (load {load_average()}) ...")
        build = build_index(table, kind, parts, subv)
        log(f"  built in {build['build_s']:.1f} s, peak RSS {build['peak_rss_mb']:.0f} MB")
        for nprobes, ef, refine in settings:
            measure(name, kind, parts, subv, build, nprobes=nprobes, ef=ef, refine=refine)
    return {
        "rows": rows,
        "n_real": n_real,
        "n_constructed": rows - n_real,
        "construction": CONSTRUCTION,
        "queries": len(queries),
        "k": K,
        "target": {"p95_ms_below": TARGET_P95_MS, f"recall@{K}_at_least": TARGET_RECALL},
        "table_write_s": write_s,
        "results": results,
    }


def table_markdown(results: list[dict]) -> str:
    """The results as a markdown table (what the script prints and the READMEs show)."""
    cols = ["config", "partitions", "sub_vectors", "nprobes", "ef", "refine_factor", "build_s", "peak_rss_mb"]
    cols += ["queries", "p50_ms", "p95_ms", "cpu_ms_per_query", f"recall@{K}", "meets_target", "load"]

    def cell(c: str, v) -> str:
        if v is None:
            return "-"
        if c.startswith("recall"):
            return f"{v:.3f}"
        return f"{v:.1f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(c, r.get(c)) for c in cols) + " |" for r in results]
    return "\n".join(lines)


def print_table(res: dict) -> None:
    print(table_markdown(res["results"]))


def embed_prefix(texts: list[str], n: int, cache: Path, tag: str) -> np.ndarray:
    """Vectors of texts[:n], embedding whole cache chunks (a prefix of any length reuses the cached chunks)."""
    whole = -(-min(n, len(texts)) // corpus_mod.CHUNK) * corpus_mod.CHUNK
    return corpus_mod.embed_cached(texts[:whole], cache, tag)[:n]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--real", type=int, default=None, help="use at most the first N corpus texts (default: all)")
    ap.add_argument("--queries", type=int, default=300, help="questions to search with (default 300)")
    ap.add_argument("--flat-queries", type=int, default=20, help="of them, for the exact flat-scan baseline")
    ap.add_argument("--configs", default="pq48,hnsw,pq96", help=f"comma-separated, of {sorted(CONFIGS)}")
    ap.add_argument("--cache", type=Path, default=corpus_mod.DEFAULT_CACHE, help="embedding cache (.npy chunks)")
    ap.add_argument("--db", type=Path, default=None, help="LanceDB dir (default: <cache>/lance-<rows>)")
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "experiments" / "million-memories"
    )
    args = ap.parse_args(argv)
    started, load0 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), load_average()
    n_texts = min(args.real or args.rows, args.rows)
    print(f"embedding (or loading from {args.cache}) {n_texts} texts and {args.queries} questions", flush=True)
    real = embed_prefix(corpus_mod.corpus(), n_texts, args.cache, "corpus")
    queries = embed_prefix(corpus_mod.questions(), args.queries, args.cache, "questions")
    args.out.mkdir(parents=True, exist_ok=True)

    def save_partial(results: list[dict]) -> None:
        (args.out / "results.partial.json").write_text(json.dumps(results, indent=2) + "\n")

    res = run(
        real,
        queries,
        args.rows,
        args.configs.split(","),
        args.db or args.cache / f"lance-{args.rows}",
        log=lambda m: print(m, flush=True),
        flat_queries=args.flat_queries,
        on_result=save_partial,
    )
    res.update(
        started=started,
        load_start=load0,
        load_end=load_average(),
        machine=f"{platform.machine()}, {os.cpu_count()} cpus",
        command="python benchmarks/million.py " + " ".join(argv or sys.argv[1:]),
    )
    import lancedb
    import polars as pl

    res["lancedb"] = lancedb.__version__
    (args.out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    pl.DataFrame(res["results"]).write_parquet(args.out / "results.parquet")
    print(f"\n{res['rows']} rows ({res['n_real']} real, {res['n_constructed']} constructed: {CONSTRUCTION})")
    print(f"load at start {load0}, at end {res['load_end']}")
    print_table(res)
    print(f"wrote {args.out / 'results.json'} and results.parquet")
    return res


if __name__ == "__main__":
    main()
