"""Benchmark the LanceDB memory store on the ingest loop a policy runs, and on search latency.

    uv run python benchmarks/store_bench.py             # full run (about 2-4 minutes on 2 cores)
    uv run python benchmarks/store_bench.py --quick     # 600 steps, 1k rows only

Ingest loop: per message pair, search_many() for 1-3 candidate facts (top 10 within the user's scope), then apply()
1-3 changes chosen from the hits (ADD 70%, UPDATE 15%, NOOP 10%, DELETE 5%): about 3,000 pair-steps over 7 user
scopes end at about 4,000 memories, like ingesting 7 LOCOMO conversations. Random normalised 384-d vectors.
Variants: the read mirror on (default) with auto-compaction every 50 applies (default), 200 (the old default) and
never; the mirror off (cache=False: every read, including the id look-ups apply() validates with, goes to LanceDB)
with compaction every 50; and history group commit (history_flush_every=20: one history append per 20 applies).
Search latency: search(v, scope, 10) with 7 scopes after a bulk load of 1k / 10k rows, mirror on/off.
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

from memtune.policies.store import Change, MemoryStore
from memtune.policies.types import Scope

DIM = 384
SCOPES = [Scope(user_id=f"conv-{i}", agent_id="locomo") for i in range(7)]


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) * 1e3 if xs else float("nan")


def ingest_loop(root: Path, steps: int, cache: bool, compact_every: int, history_flush_every: int = 1,
                seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    store = MemoryStore(root, dim=DIM, embedder_id="bench-384", cache=cache, compact_every=compact_every,
                        history_flush_every=history_flush_every)
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
            changes.append(Change(op, f"fact {step} ({op.lower()})", vec if op == "UPDATE" else None, target,
                                  scope, (f"D{step}:2",)))
        store.apply(changes)
        t2 = time.perf_counter()
        t_search.append(t1 - t0)
        t_apply.append(t2 - t1)
    store.flush()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    stats = store.stats()
    return {"steps/s": steps / wall, "wall_s": wall, "cpu_ms/step": 1e3 * cpu / steps,
            "search_p50": pct(t_search, 50), "search_p95": pct(t_search, 95),
            "apply_p50": pct(t_apply, 50), "apply_p95": pct(t_apply, 95), "apply_max": max(t_apply) * 1e3,
            "compact_n": len(compactions), "compact_ms": 1e3 * float(np.mean(compactions)) if compactions else 0.0,
            "rows": stats["rows"], "fragments": stats["fragments"], "versions_kept": stats["versions_kept"],
            "disk_MB": stats["disk_bytes"] / 1e6, "ops": ops}


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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--quick", action="store_true", help="600 steps, 1k-row search only")
    args = ap.parse_args(argv)
    steps = 600 if args.quick else args.steps
    print(f"# store_bench  python {platform.python_version()}  {platform.machine()}  "
          f"lancedb {__import__('lancedb').__version__}  steps={steps}  cpus={os.cpu_count()}  "
          f"load avg {os.getloadavg()[0]:.2f} (other processes compete for the CPUs when this is above 0)")
    with tempfile.TemporaryDirectory() as tmp:
        print("\n## ingest loop (search_many + apply per pair-step)")
        print(f"{'variant':40s} {'steps/s':>8s} {'wall s':>7s} {'cpu ms/step':>11s} {'search p50/p95 ms':>18s} "
              f"{'apply p50/p95/max ms':>21s} {'compactions':>16s} {'rows':>5s} {'frags':>5s} {'vers':>5s} "
              f"{'disk MB':>7s}")
        for cache, compact_every, flush_every in ((True, 50, 1), (True, 200, 1), (True, 0, 1), (False, 50, 1),
                                                  (True, 50, 20)):
            name = (f"mirror={'on ' if cache else 'off'} compact={compact_every}"
                    + (f" hist_flush={flush_every}" if flush_every > 1 else ""))
            r = ingest_loop(Path(tmp) / f"loop-{cache}-{compact_every}-{flush_every}", steps, cache, compact_every,
                            flush_every)
            print(f"{name:40s} {r['steps/s']:8.1f} {r['wall_s']:7.1f} {r['cpu_ms/step']:11.1f} "
                  f"{r['search_p50']:8.2f} /{r['search_p95']:7.2f}  "
                  f"{r['apply_p50']:6.2f} /{r['apply_p95']:6.2f} /{r['apply_max']:6.0f} "
                  f"{r['compact_n']:5d} x {r['compact_ms']:5.0f} ms "
                  f"{r['rows']:5d} {r['fragments']:5d} {r['versions_kept']:5d} {r['disk_MB']:7.1f}",
                  flush=True)
        print(f"ops: {r['ops']}")
        print("\n## search latency: search(v, scope, top_k=10), 7 scopes, after bulk load + compact")
        print(f"{'rows':>6s} {'read path':12s} {'p50 ms':>7s} {'p95 ms':>7s}")
        for rows in ((1_000,) if args.quick else (1_000, 10_000)):
            for cache in (True, False):
                r = search_latency(Path(tmp) / f"search-{rows}-{cache}", rows, cache)
                print(f"{rows:6d} {'mirror' if cache else 'lancedb':12s} {r['p50']:7.2f} {r['p95']:7.2f}", flush=True)
    print(f"\nload avg at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
