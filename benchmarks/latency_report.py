"""The printed report of benchmarks/search_latency.py: percentiles, ratios and per-phase means."""

from __future__ import annotations

import numpy as np

NESTED = ("keyword_search", "rerank")  # cost-meter phases timed inside the `retrieve` phase


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) * 1e3


def phase_means(meter, marks: dict) -> dict:
    """Mean ms per step of each phase the policy's cost meter timed since `marks` (its step counts then)."""
    return {
        k: 1e3 * float(np.mean(v.seconds[marks.get(k, 0) :]))
        for k, v in meter.phases.items()
        if len(v.seconds) > marks.get(k, 0)
    }


def report(rows: int, fill_s: float, local: dict, rest: dict) -> None:
    print(f"\n== {rows:,} memories in one scope (store filled in {fill_s:.0f} s) ==")
    print(f"{'':28s} {'p50 ms':>8s} {'p95 ms':>8s} {'mean ms':>8s} {'n':>5s}")
    for name, xs in (
        ("search in-process", local["search"]),
        ("search REST", rest["search"]),
        ("search in-process hybrid", local["search_hybrid"]),
        ("search REST hybrid", rest["search_hybrid"]),
        ("add in-process", local["add"]),
        ("add REST", rest["add"]),
    ):
        print(f"{name:28s} {pct(xs, 50):8.2f} {pct(xs, 95):8.2f} {1e3 * np.mean(xs):8.2f} {len(xs):5d}")
    for what in ("search", "add"):
        r50 = pct(rest[what], 50) / pct(local[what], 50)
        r95 = pct(rest[what], 95) / pct(local[what], 95)
        extra = pct(rest[what], 50) - pct(local[what], 50)
        print(f"{what} REST / in-process: p50 x{r50:.2f}, p95 x{r95:.2f} (p50 +{extra:.2f} ms per call)")
    print(
        f"hybrid / dense in-process: p50 x{pct(local['search_hybrid'], 50) / pct(local['search'], 50):.2f}, "
        f"p95 x{pct(local['search_hybrid'], 95) / pct(local['search'], 95):.2f}; hybrid top-10 hits naming the "
        f"query's topic: {local['hybrid_topic_hits']:.1f} a query"
    )
    for what in ("search", "search_hybrid", "add"):
        timed_ms = local[f"{what}_phases_ms"]
        nested = {k: timed_ms.pop(k) for k in NESTED if k in timed_ms}  # timed inside `retrieve`
        rest_ms = 1e3 * float(np.mean(local[what])) - sum(timed_ms.values())
        phases = ", ".join(f"{k} {v:.2f}" for k, v in sorted(timed_ms.items()))
        inner = "".join(f" (of which {k} {v:.2f})" for k, v in sorted(nested.items()))
        print(
            f"{what} in-process, mean ms per call by phase: {phases}{inner}, untimed {rest_ms:.2f}"
            + (" (embedding the query)" if what.startswith("search") else "")
        )
