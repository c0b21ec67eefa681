"""Benchmark the LanceDB memory store on the ingest loop a policy runs, and on search latency.

    uv run python benchmarks/store_bench.py             # full run (about 2-4 minutes on 2 cores)
    uv run python benchmarks/store_bench.py --quick     # 600 steps, 1k rows only
    uv run python benchmarks/store_bench.py --scale     # search at 100k memories, with the IVF_PQ index (~12 min)
    uv run python benchmarks/store_bench.py --scale --scale-no-index   # ... with the production defaults (~2 min)

Ingest loop: per message pair, search_many() for 1-3 candidate facts (top 10 within the user's scope), then apply()
1-3 changes chosen from the hits (ADD 70%, UPDATE 15%, NOOP 10%, DELETE 5%): about 3,000 pair-steps over 7 user
scopes end at about 4,000 memories, like ingesting 7 LOCOMO conversations. Random normalised 384-d vectors.
Variants: the read mirror on (default) with auto-compaction every 50 applies (default), 200 (the old default) and
never; the mirror off (cache=False: every read, including the id look-ups apply() validates with, goes to LanceDB)
with compaction every 50; and history group commit (history_flush_every=20: one history append per 20 applies).
Search latency: search(v, scope, 10) with 7 scopes after a bulk load of 1k / 10k rows, mirror on/off.
Search at scale (--scale): 100k memories bulk-loaded (MemoryStore.bulk_load) and compacted (which builds the ANN
index past index_min_rows), laid out as one user holding all 100k, and as 100 users x 1k; search(v, scope, 10)
for the read paths: the numpy mirror (cache_max_rows above 100k), LanceDB with the IVF_PQ index at several
nprobes / refine_factor, and LanceDB exact flat search (no index).
`cpu ms/step` is this process's CPU time (LanceDB's threads included) per step: steps/s moves with whatever else
runs on the machine (the load average is printed), CPU time much less.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from memtune.policies.store.changes import Change
from memtune.policies.store.store import MemoryStore
from memtune.policies.types import Scope

DIM = 384
SCOPES = [Scope(user_id=f"conv-{i}", agent_id="locomo") for i in range(7)]


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) * 1e3 if xs else float("nan")


def ingest_loop(
    root: Path, steps: int, cache: bool, compact_every: int, history_flush_every: int = 1, seed: int = 0
) -> dict:
    rng = np.random.default_rng(seed)
    store = MemoryStore(
        root,
        dim=DIM,
        embedder_id="bench-384",
        cache=cache,
        compact_every=compact_every,
        history_flush_every=history_flush_every,
    )
    compactions = []
    compact = store.compact

    def timed_compact():
        t0 = time.perf_counter()
        compact()
        compactions.append(time.perf_counter() - t0)

    store.compact = timed_compact
    t_search, t_apply, ops = [], [], {"ADD": 0, "UPDATE": 0, "DELETE": 0, "NOOP": 0}
    start, cpu_start = time.perf_counter(), time.process_time()
    for step in range(steps):
        scope = SCOPES[step % len(SCOPES)]
        vecs = unit(rng, int(rng.integers(1, 4)))
        t0 = time.perf_counter()
        similar = store.search_many(vecs, scope, 10)
        t1 = time.perf_counter()
        changes, used = [], set()
        for vec, hits in zip(vecs, similar):
            op = rng.choice(["ADD", "UPDATE", "NOOP", "DELETE"], p=[0.70, 0.15, 0.10, 0.05])
            target = next((h.id for h in hits if h.id not in used), None)
            if op == "ADD" or target is None:
                changes.append(Change("ADD", f"fact {step}", vec, scope=scope, provenance=(f"D{step}:1",)))
                ops["ADD"] += 1
                continue
            used.add(target)
            ops[op] += 1
            changes.append(
                Change(
                    op, f"fact {step} ({op.lower()})", vec if op == "UPDATE" else None, target, scope, (f"D{step}:2",)
                )
            )
        store.apply(changes)
        t2 = time.perf_counter()
        t_search.append(t1 - t0)
        t_apply.append(t2 - t1)
    store.flush()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    stats = store.stats()
    return {
        "steps/s": steps / wall,
        "wall_s": wall,
        "cpu_ms/step": 1e3 * cpu / steps,
        "search_p50": pct(t_search, 50),
        "search_p95": pct(t_search, 95),
        "apply_p50": pct(t_apply, 50),
        "apply_p95": pct(t_apply, 95),
        "apply_max": max(t_apply) * 1e3,
        "compact_n": len(compactions),
        "compact_ms": 1e3 * float(np.mean(compactions)) if compactions else 0.0,
        "rows": stats["rows"],
        "fragments": stats["fragments"],
        "versions_kept": stats["versions_kept"],
        "disk_MB": stats["disk_bytes"] / 1e6,
        "ops": ops,
    }


def search_latency(root: Path, rows: int, cache: bool, queries: int = 200, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    store = MemoryStore(root, dim=DIM, embedder_id="bench-384", cache=cache, compact_every=0)
    vecs = unit(rng, rows)
    store.apply([Change("ADD", f"m{i}", vecs[i], scope=SCOPES[i % len(SCOPES)]) for i in range(rows)])
    store.compact()
    store.search(unit(rng, 1)[0], SCOPES[0], 10)  # warm up (loads the mirror when on)
    times = []
    for i in range(queries):
        q = unit(rng, 1)[0]
        t0 = time.perf_counter()
        store.search(q, SCOPES[i % len(SCOPES)], 10)
        times.append(time.perf_counter() - t0)
    return {"p50": pct(times, 50), "p95": pct(times, 95)}


def bulk_store(root: Path, vecs: np.ndarray, scopes: list[Scope], **knobs) -> MemoryStore:
    store = MemoryStore(root, dim=DIM, embedder_id="bench-384", compact_every=0, **knobs)
    rows = [
        {
            "id": f"m{i}",
            "text": f"memory {i}",
            "vector": v,
            "user_id": sc.user_id,
            "agent_id": sc.agent_id,
            "run_id": sc.run_id,
            "provenance": [f"D{i}:1"],
            "timestamp": "",
            "created_at": f"{i:08d}",
            "updated_at": f"{i:08d}",
            "metadata": "{}",
            "embedder_id": "bench-384",
            "policy_version": "",
        }
        for i, (v, sc) in enumerate(zip(vecs, scopes))
    ]
    store.bulk_load(rows, [])
    return store


def timed_searches(
    store: MemoryStore,
    scopes: list[Scope],
    queries: np.ndarray,
    exact: np.ndarray | None = None,
    truth: list[set] | None = None,
) -> dict:
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    store.search(queries[0], scopes[0], 10)  # warm-up (loads the mirror / opens the index)
    first = time.perf_counter() - t0
    times, cpu, recall = [], [], []
    for i, q in enumerate(queries):
        t0, c0 = time.perf_counter(), time.process_time()
        hits = store.search(q, scopes[i % len(scopes)], 10)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if truth is not None:
            recall.append(len({h.id for h in hits} & truth[i]) / 10)
    return {
        "p50": pct(times, 50),
        "p95": pct(times, 95),
        "cpu_p50": pct(cpu, 50),
        "cpu_p95": pct(cpu, 95),
        "recall@10": float(np.mean(recall)) if recall else None,
        "first_s": first,
        "rss_mb": _rss_mb() - rss0,
    }


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def scale_search(tmp: Path, rows: int = 100_000, queries: int = 200, seed: int = 3, index: bool = True) -> None:
    """index=False: the production defaults (conf/store/lancedb.yaml: index_min_rows = cache_max_rows = 200k), so
    no ANN index is built at 100k and reads come from the mirror; LanceDB's exact flat scan for comparison."""
    rng = np.random.default_rng(seed)
    vecs = unit(rng, rows)
    layouts = {
        "1 user x 100k": [Scope("user-0")] * rows,
        "100 users x 1k": [Scope(f"user-{i % 100}") for i in range(rows)],
    }
    print(
        f"\n## search at scale: {rows:,} memories, search(v, scope, top_k=10), {queries} queries, p50/p95 ms, "
        "recall@10 against exact search"
    )
    print(
        f"{'layout':16s} {'read path':40s} {'p50':>7s} {'p95':>7s} {'cpu p50':>7s} {'cpu p95':>7s} "
        f"{'recall':>7s} {'1st s':>6s} {'+RSS MB':>7s}"
    )
    for name, scopes in layouts.items():
        root = tmp / f"scale-{name.split()[0]}"
        t0 = time.perf_counter()
        store = bulk_store(root, vecs, scopes, cache=False, index_min_rows=50_000 if index else 200_000)
        store.compact()
        build = time.perf_counter() - t0
        qs = unit(rng, queries)
        qscopes = sorted(set(scopes), key=lambda s: s.user_id)
        truth = []
        for i, q in enumerate(qs):  # exact top-10 per query in its scope
            sc = qscopes[i % len(qscopes)]
            idx = np.flatnonzero([s == sc for s in scopes]) if len(qscopes) > 1 else np.arange(rows)
            truth.append({f"m{j}" for j in idx[np.argsort(-(vecs[idx] @ q))[:10]]})
        print(f"{name:16s} (bulk load + compact + index: {build:.1f} s, indexed: {store._vector_indexed})")
        paths = (
            ("lancedb IVF_PQ nprobes=20 refine=10", {}),
            ("lancedb IVF_PQ nprobes=10 refine=5", {"nprobes": 10, "refine_factor": 5}),
            ("lancedb IVF_PQ nprobes=40 refine=20", {"nprobes": 40, "refine_factor": 20}),
            ("numpy mirror (cache_max_rows=200k)", {"cache": True, "cache_max_rows": 200_000}),
        )
        if not index:
            paths = (
                ("lancedb exact flat scan (no index)", {"index_min_rows": 200_000}),
                ("numpy mirror (production defaults)", {"cache": True, "index_min_rows": 200_000}),
            )
        for label, knobs in paths:
            reader = MemoryStore(root, dim=DIM, embedder_id="bench-384", compact_every=0, **({"cache": False} | knobs))
            r = timed_searches(reader, qscopes, qs, truth=truth)
            print(
                f"{'':16s} {label:40s} {r['p50']:7.2f} {r['p95']:7.2f} {r['cpu_p50']:7.2f} {r['cpu_p95']:7.2f} "
                f"{r['recall@10']:7.3f} {r['first_s']:6.2f} {r['rss_mb']:7.0f}  (load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
            reader.close()
        store.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--quick", action="store_true", help="600 steps, 1k-row search only")
    ap.add_argument("--scale", action="store_true", help="only the search latency at 100k memories")
    ap.add_argument("--scale-rows", type=int, default=100_000)
    ap.add_argument(
        "--scale-no-index",
        action="store_true",
        help="--scale with the production defaults (no ANN index below 200k rows): minutes faster",
    )
    args = ap.parse_args(argv)
    steps = 600 if args.quick else args.steps
    print(
        f"# store_bench  python {platform.python_version()}  {platform.machine()}  "
        f"lancedb {__import__('lancedb').__version__}  steps={steps}  cpus={os.cpu_count()}  "
        f"load avg {os.getloadavg()[0]:.2f} (other processes compete for the CPUs when this is above 0)"
    )
    if args.scale:
        with tempfile.TemporaryDirectory() as tmp:
            scale_search(Path(tmp), args.scale_rows, index=not args.scale_no_index)
        print(f"\nload avg at the end: {os.getloadavg()[0]:.2f}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        print("\n## ingest loop (search_many + apply per pair-step)")
        print(
            f"{'variant':40s} {'steps/s':>8s} {'wall s':>7s} {'cpu ms/step':>11s} {'search p50/p95 ms':>18s} "
            f"{'apply p50/p95/max ms':>21s} {'compactions':>16s} {'rows':>5s} {'frags':>5s} {'vers':>5s} "
            f"{'disk MB':>7s}"
        )
        for cache, compact_every, flush_every in (
            (True, 50, 1),
            (True, 200, 1),
            (True, 0, 1),
            (False, 50, 1),
            (True, 50, 20),
        ):
            name = f"mirror={'on ' if cache else 'off'} compact={compact_every}" + (
                f" hist_flush={flush_every}" if flush_every > 1 else ""
            )
            r = ingest_loop(
                Path(tmp) / f"loop-{cache}-{compact_every}-{flush_every}", steps, cache, compact_every, flush_every
            )
            print(
                f"{name:40s} {r['steps/s']:8.1f} {r['wall_s']:7.1f} {r['cpu_ms/step']:11.1f} "
                f"{r['search_p50']:8.2f} /{r['search_p95']:7.2f}  "
                f"{r['apply_p50']:6.2f} /{r['apply_p95']:6.2f} /{r['apply_max']:6.0f} "
                f"{r['compact_n']:5d} x {r['compact_ms']:5.0f} ms "
                f"{r['rows']:5d} {r['fragments']:5d} {r['versions_kept']:5d} {r['disk_MB']:7.1f}",
                flush=True,
            )
        print(f"ops: {r['ops']}")
        print("\n## search latency: search(v, scope, top_k=10), 7 scopes, after bulk load + compact")
        print(f"{'rows':>6s} {'read path':12s} {'p50 ms':>7s} {'p95 ms':>7s}")
        for rows in (1_000,) if args.quick else (1_000, 10_000):
            for cache in (True, False):
                r = search_latency(Path(tmp) / f"search-{rows}-{cache}", rows, cache)
                print(f"{rows:6d} {'mirror' if cache else 'lancedb':12s} {r['p50']:7.2f} {r['p95']:7.2f}", flush=True)
    print(f"\nload avg at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
