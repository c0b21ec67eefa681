"""`memtune-report`: compare `memtune-eval` runs with bootstrap confidence intervals and cost.

    memtune-report /tmp/dev_offline /tmp/dev_raw --out /tmp/report_dev
    memtune-report RUN_A RUN_B RUN_C --out DIR --baseline RUN_B --resamples 5000 --seed 1
    memtune-report RUN_A --out DIR --include-adversarial      # overall over categories 1-5

Each RUN_DIR is a `memtune-eval` output directory (summary.json + questions.parquet). Writes into DIR:

- report.md               per run and category: n, mean and percentile-bootstrap 95% CI (two-stage: resampling
                          conversations, then questions within them; optimize/report/stats.py) of F1, SQuAD-F1, BLEU-1,
                          evidence recall (questions with evidence only), J (when judged; judge failures and failed
                          answers count WRONG), abstention; category 5 (adversarial: the right answer is to abstain)
                          apart; LM failures; cost per run; paired differences of every run against the baseline
                          (the first run unless --baseline). Oracle runs are labelled "<policy> [ORACLE: <stage>]".
- report.parquet          the long table: run, run_dir, policy, category, category_name, metric, mean, ci_low,
                          ci_high, n
- paired.parquet          the paired differences: run, baseline, category, metric, n, diff, ci_low, ci_high, p_gt0
- quality_vs_tokens.png   overall F1 and evidence recall against mean context tokens per query
- per_category.png        per-category bars with CI error bars, one colour per run

report.md is also printed, and its path is printed last.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from ..data.types import CATEGORY_NAMES
from .cost import cost_table
from .markdown import render_markdown
from .plots import plot_per_category, plot_quality_vs_tokens
from .runs import (
    ADVERSARIAL_METRICS,
    ANSWER_METRICS,
    COST_METRICS,
    QUALITY_METRICS,
    Run,
    load_runs,
)
from .stats import bootstrap_ci, paired_bootstrap

# ---------------------------------------------------------------------------------------------------------------
# tables


def category_groups(
    include_adversarial: bool, overall: Sequence[int] = (1, 2, 3, 4)
) -> list[tuple[str, str, tuple[int, ...], tuple[str, ...]]]:
    """(category, category_name, categories covered, metrics reported) for the per-category rows + overall.
    `overall`: the runs' overall categories (`overall_categories`); include_adversarial adds 5."""
    groups: list[tuple[str, str, tuple[int, ...], tuple[str, ...]]] = [
        (str(c), CATEGORY_NAMES[c], (c,), ADVERSARIAL_METRICS if c == 5 else ANSWER_METRICS)
        for c in sorted(CATEGORY_NAMES)
    ]
    cats = tuple(sorted(set(overall) | ({5} if include_adversarial else set())))
    groups.append(("overall", "+".join(map(str, cats)), cats, ANSWER_METRICS))
    return groups


def run_overall(runs: Sequence[Run]) -> tuple[int, ...]:
    """The categories of the runs' overall row (summary.json config.overall_categories; LOCOMO's 1-4 when absent).
    Runs on datasets with different overall categories are not compared: ValueError."""
    found = {
        tuple(sorted(int(c) for c in ((r.summary.get("config") or {}).get("overall_categories") or (1, 2, 3, 4))))
        for r in runs
    }
    if len(found) > 1:
        raise ValueError(
            f"the runs' overall rows cover different categories {sorted(found)}: they were made on different "
            "datasets. Fix: report runs of one dataset together (or runs made with the same overall_categories)."
        )
    return found.pop() if found else (1, 2, 3, 4)


def metric_values(frame: pl.DataFrame, metric: str) -> np.ndarray:
    """The per-question values a metric is averaged over: nulls (no evidence / not judged) are left out."""
    return frame[metric].drop_nulls().to_numpy()


def metric_sample(frame: pl.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(`metric_values`, the conversation of each value): the clusters of the two-stage bootstrap."""
    rows = frame.select(metric, "conversation_id").drop_nulls(metric)
    return rows[metric].to_numpy(), rows["conversation_id"].to_numpy()


def summary_table(
    runs: list[Run],
    resamples: int = 2000,
    seed: int = 0,
    include_adversarial: bool = False,
    alpha: float = 0.05,
    overall: Sequence[int] = (1, 2, 3, 4),
) -> pl.DataFrame:
    """Long form: one row per (run, category, metric) with mean, CI and n (n = questions the mean is over)."""
    rows = []
    for run in runs:
        for category, name, cats, metrics in category_groups(include_adversarial, overall):
            sub = run.questions.filter(pl.col("category").is_in(list(cats)))
            for metric in metrics:
                values, clusters = metric_sample(sub, metric)
                mean = lo = hi = None
                if values.size:
                    mean, lo, hi = bootstrap_ci(values, resamples, seed, alpha, clusters=clusters)
                elif metric == "judge" or sub.height == 0:
                    continue  # not judged (no judge LM) / category absent from the split: no row, said in report.md
                rows.append(
                    {
                        "run": run.label,
                        "run_dir": str(run.path),
                        "policy": run.policy,
                        "category": category,
                        "category_name": name,
                        "metric": metric,
                        "mean": mean,
                        "ci_low": lo,
                        "ci_high": hi,
                        "n": int(values.size),
                    }
                )
    schema = {
        "run": pl.String,
        "run_dir": pl.String,
        "policy": pl.String,
        "category": pl.String,
        "category_name": pl.String,
        "metric": pl.String,
        "mean": pl.Float64,
        "ci_low": pl.Float64,
        "ci_high": pl.Float64,
        "n": pl.Int64,
    }
    return pl.DataFrame(rows, schema=schema)


def check_same_questions(base: Run, other: Run) -> None:
    a, b = set(base.questions["qid"].to_list()), set(other.questions["qid"].to_list())
    if a != b:
        only_a, only_b = sorted(a - b), sorted(b - a)
        example = ", ".join((only_a + only_b)[:5])
        raise ValueError(
            f"cannot pair {other.path} with baseline {base.path}: {len(only_a) + len(only_b)} qids differ "
            f"({len(only_a)} only in the baseline, {len(only_b)} only in {other.path.name}; e.g. {example}). "
            "Paired differences need both runs on the same questions (same dataset, split and max_questions)."
        )


def paired_table(
    base: Run,
    other: Run,
    resamples: int = 2000,
    seed: int = 0,
    include_adversarial: bool = False,
    alpha: float = 0.05,
    overall: Sequence[int] = (1, 2, 3, 4),
) -> pl.DataFrame:
    """Paired differences other - base per (category, metric), joined on qid."""
    check_same_questions(base, other)
    cols = ["qid", "conversation_id", "category", *QUALITY_METRICS, *COST_METRICS]
    joined = base.questions.select(cols).join(other.questions.select(cols), on="qid", suffix="__other")
    rows = []
    for category, _, cats, metrics in category_groups(include_adversarial, overall):
        sub = joined.filter(pl.col("category").is_in(list(cats)))
        for metric in metrics:
            pair = sub.select(metric, f"{metric}__other", "conversation_id").drop_nulls()
            if pair.height == 0:
                continue
            diff, lo, hi, p_gt0 = paired_bootstrap(
                pair[metric].to_numpy(),
                pair[f"{metric}__other"].to_numpy(),
                resamples,
                seed,
                alpha,
                clusters=pair["conversation_id"].to_numpy(),
            )
            rows.append(
                {
                    "run": other.label,
                    "baseline": base.label,
                    "category": category,
                    "metric": metric,
                    "n": pair.height,
                    "diff": diff,
                    "ci_low": lo,
                    "ci_high": hi,
                    "p_gt0": p_gt0,
                    "excludes_zero": lo > 0 or hi < 0,
                }
            )
    schema = {
        "run": pl.String,
        "baseline": pl.String,
        "category": pl.String,
        "metric": pl.String,
        "n": pl.Int64,
        "diff": pl.Float64,
        "ci_low": pl.Float64,
        "ci_high": pl.Float64,
        "p_gt0": pl.Float64,
        "excludes_zero": pl.Boolean,
    }
    return pl.DataFrame(rows, schema=schema)


# ---------------------------------------------------------------------------------------------------------------
# CLI


def build_report(
    run_dirs: list[str | Path],
    out: str | Path,
    baseline: str | Path | None = None,
    resamples: int = 2000,
    seed: int = 0,
    include_adversarial: bool = False,
) -> Path:
    """Write report.md, report.parquet, paired.parquet and the two PNGs into `out`; returns report.md's path."""
    dirs = [Path(d) for d in run_dirs]
    if baseline is not None:
        resolved = [d.resolve() for d in dirs]
        b = Path(baseline)
        if b.resolve() in resolved:  # the baseline goes first
            dirs.insert(0, dirs.pop(resolved.index(b.resolve())))
        else:
            dirs.insert(0, b)
    runs = load_runs(dirs)
    base = runs[0]
    overall = run_overall(runs)
    table = summary_table(runs, resamples, seed, include_adversarial, overall=overall)
    paired = [paired_table(base, r, resamples, seed, include_adversarial, overall=overall) for r in runs[1:]]
    costs = cost_table(runs)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    overall_name = category_groups(include_adversarial, overall)[-1][1]
    table.write_parquet(out_dir / "report.parquet")
    if paired:
        pl.concat(paired).write_parquet(out_dir / "paired.parquet")
    else:
        (out_dir / "paired.parquet").unlink(missing_ok=True)  # never leave a stale comparison behind
    plot_quality_vs_tokens(runs, table, out_dir / "quality_vs_tokens.png", overall_name)
    plot_per_category(runs, table, out_dir / "per_category.png", overall_name)
    md = render_markdown(runs, table, paired, costs, base, resamples, seed, include_adversarial, overall_name)
    (out_dir / "report.md").write_text(md)
    return out_dir / "report.md"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="memtune-report",
        description="Compare memtune-eval runs: per-category means with bootstrap 95%% CIs, cost, paired "
        "differences against a baseline, and figures.",
    )
    parser.add_argument(
        "run_dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="memtune-eval output directories (summary.json + questions.parquet)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="where to write report.md, parquet and PNGs")
    parser.add_argument(
        "--baseline",
        metavar="RUN_DIR",
        default=None,
        help="run the others are compared with (default: the first RUN_DIR)",
    )
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument(
        "--include-adversarial",
        action="store_true",
        help="overall over categories 1-5 instead of 1-4 (mem0's convention)",
    )
    args = parser.parse_args(argv)
    if args.resamples < 1:
        parser.error("--resamples must be >= 1")
    try:
        path = build_report(args.run_dirs, args.out, args.baseline, args.resamples, args.seed, args.include_adversarial)
    except (ValueError, FileNotFoundError) as err:
        parser.exit(2, f"memtune-report: error: {err}\n")
    print(path.read_text())
    print(path)


if __name__ == "__main__":
    main()
