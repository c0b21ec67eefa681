"""The figures of `memtune-report`: quality against context tokens, and per-category bars with CI error bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from ..data.types import CATEGORY_NAMES
from .runs import LABELS, Run


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _err(rows: list[dict | None]) -> np.ndarray:
    return np.array(
        [
            [0 if r is None or r["mean"] is None else r["mean"] - r["ci_low"] for r in rows],
            [0 if r is None or r["mean"] is None else r["ci_high"] - r["mean"] for r in rows],
        ]
    )


def _mean(r: dict | None) -> float:
    return np.nan if r is None or r["mean"] is None else r["mean"]


def plot_quality_vs_tokens(runs: list[Run], table: pl.DataFrame, path: Path, overall_name: str) -> None:
    plt = _plt()
    lookup = {(r["run"], r["category"], r["metric"]): r for r in table.iter_rows(named=True)}
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), constrained_layout=True)
    for ax, metric in zip(axes, ("f1", "evidence_recall")):
        for i, run in enumerate(runs):
            x = lookup.get((run.label, "overall", "context_tokens"))
            y = lookup.get((run.label, "overall", metric))
            if x is None or y is None or y["mean"] is None:
                continue
            ax.errorbar(
                x["mean"],
                y["mean"],
                yerr=_err([y]),
                xerr=_err([x]),
                fmt="o",
                capsize=4,
                markersize=7,
                color=colours(i % 10),
                label=run.label,
            )
            ax.annotate(run.label, (x["mean"], y["mean"]), textcoords="offset points", xytext=(7, 7), fontsize=9)
        ax.set_xlabel("mean context tokens per query")
        ax.set_ylabel(f"{LABELS[metric]} (overall, categories {overall_name})")
        ax.set_title(f"{LABELS[metric]} vs context tokens (95% CI)")
        ax.grid(alpha=0.3)
        ax.margins(x=0.25, y=0.25)
    axes[0].legend(fontsize=8, loc="best")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_per_category(runs: list[Run], table: pl.DataFrame, path: Path, overall_name: str) -> None:
    plt = _plt()
    lookup = {(r["run"], r["category"], r["metric"]): r for r in table.iter_rows(named=True)}
    colours = plt.get_cmap("tab10")
    present = {r["category"] for r in table.iter_rows(named=True)} - {"overall"}
    answered = sorted(present - {"5"}, key=int) + ["overall"]  # LOCOMO 1-4, the generated set's 11-13, ...
    panels = [("f1", answered)]
    if any(r.has_judge() for r in runs):
        panels.append(("judge", answered))
    panels += [("evidence_recall", sorted(present, key=int) + ["overall"])]
    if "5" in present:
        panels.append(("abstained", ["5"]))
    widths = [max(len(c), 1.8) for _, c in panels]
    fig_width = min(26.0, 2.0 + sum(widths) * (0.45 + 0.3 * len(runs)))
    fig, axes = plt.subplots(
        1, len(panels), figsize=(fig_width, 5.0), gridspec_kw={"width_ratios": widths}, constrained_layout=True
    )
    width = 0.8 / max(1, len(runs))
    for ax, (metric, cats) in zip(axes, panels):
        x = np.arange(len(cats))
        for i, run in enumerate(runs):
            rows = [lookup.get((run.label, c, metric)) for c in cats]
            bars = ax.bar(
                x + (i - (len(runs) - 1) / 2) * width,
                [_mean(r) for r in rows],
                width,
                yerr=_err(rows),
                capsize=3,
                color=colours(i % 10),
                label=run.label,
            )
            if metric == "abstained":  # a rate of 0 draws no bar: print the numbers
                ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
        names = [f"overall\n({overall_name})" if c == "overall" else f"{c}\n{CATEGORY_NAMES[int(c)]}" for c in cats]
        ax.set_xticks(x, names, fontsize=8)
        title = "cat 5: abstention\nrate (↑ better)" if metric == "abstained" else LABELS[metric]
        ax.set_title(title)
        ax.set_ylim(0, 1.05 if metric in ("evidence_recall", "abstained") else None)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("mean with 95% CI")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=min(4, len(runs)), fontsize=9)
    fig.savefig(path, dpi=120)
    plt.close(fig)
