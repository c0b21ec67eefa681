"""The printed report of benchmarks/search_latency.py: percentiles, ratios and per-phase means."""

from __future__ import annotations

import numpy as np

# cost-meter phases that overlap others: `rerank` runs inside `retrieve`; the keyword search runs on its own thread
# beside the query's embedding and the dense product (it may start before `retrieve`)
OVERLAPPING = ("keyword_search", "rerank")


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) * 1e3


def phase_means(meter, marks: dict) -> dict:
    """Mean ms per step of each phase the policy's cost meter timed since `marks` (its step counts then)."""
    return {
        k: 1e3 * float(np.mean(v.seconds[marks.get(k, 0) :]))
        for k, v in meter.phases.items()
        if len(v.seconds) > marks.get(k, 0)
    }


def _row(name: str, xs: list[float]) -> None:
    print(f"{name:28s} {pct(xs, 50):8.2f} {pct(xs, 95):8.2f} {1e3 * np.mean(xs):8.2f} {len(xs):5d}")


def _phases(what: str, calls: list[float], timed_ms: dict) -> None:
    timed_ms = dict(timed_ms)
    apart = {k: timed_ms.pop(k) for k in OVERLAPPING if k in timed_ms}
    untimed = 1e3 * float(np.mean(calls)) - sum(timed_ms.values())
    phases = ", ".join(f"{k} {v:.2f}" for k, v in sorted(timed_ms.items()))
    inner = "".join(f" (overlapping: {k} {v:.2f})" for k, v in sorted(apart.items()))
    print(f"{what} in-process, mean ms per call by phase: {phases}{inner}, untimed {untimed:.2f}")


def report(rows: int, fill_s: float, r: dict) -> None:
    print(f"\n== {rows:,} memories in one scope (store filled in {fill_s:.0f} s) ==")
    print(f"{'':28s} {'p50 ms':>8s} {'p95 ms':>8s} {'mean ms':>8s} {'n':>5s}")
    for arm, xs in r["search"].items():
        _row(f"search {arm} in-process", xs)
        if arm in r["search_rest"]:
            _row(f"search {arm} REST", r["search_rest"][arm])
    _row("add in-process", r["add"])
    _row("add REST", r["add_rest"])
    for arm, rest in r["search_rest"].items():
        local = r["search"][arm]
        print(
            f"search {arm} REST / in-process: p50 x{pct(rest, 50) / pct(local, 50):.2f}, "
            f"p95 x{pct(rest, 95) / pct(local, 95):.2f} (p50 +{pct(rest, 50) - pct(local, 50):.2f} ms per call)"
        )
    print(
        f"add REST / in-process: p50 x{pct(r['add_rest'], 50) / pct(r['add'], 50):.2f}, "
        f"p95 x{pct(r['add_rest'], 95) / pct(r['add'], 95):.2f}"
    )
    dense = r["search"]["dense"]
    for arm, xs in r["search"].items():
        print(
            f"{arm} / dense in-process: p50 x{pct(xs, 50) / pct(dense, 50):.2f}, p95 x{pct(xs, 95) / pct(dense, 95):.2f};"
            f" top-10 hits naming the query's topic: {r['topic_hits'][arm]:.1f} a query"
        )
    for arm, xs in r["search"].items():
        _phases(f"search {arm}", xs, r["search_phases_ms"][arm])
    _phases("add", r["add"], r["add_phases_ms"])
