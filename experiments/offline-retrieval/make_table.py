"""The tables and plot of experiments/offline-retrieval/README.md, from the runs of run.sh.

Per arm (a run dir under runs/<split>/), categories 1-4 only, each metric per question from questions.parquet:
  recall_ctx_500  evidence recall of the leading retrieved items whose rendered context fits in 500 tokens
  recall_at_10    evidence recall of the top-10 retrieved items (`evidence_recall` on their provenance)
  f1, bleu1       mem0-F1 and BLEU-1 of the answer
A question without gold evidence has no recall (left out of the recall columns, as summary.json does). Each arm is
paired with the `defaults` arm on the same questions: mean difference with its 95% CI from the clustered bootstrap
(conversations, then questions within them: optimize/report/stats.py) and P(diff > 0).

    uv run python experiments/offline-retrieval/make_table.py [--split heldout|tune] [--base defaults]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from memtune.optimize.evaluation.metrics import evidence_recall  # noqa: E402
from memtune.optimize.report.stats import bootstrap_ci, paired_bootstrap  # noqa: E402

HERE = Path(__file__).resolve().parent
METRICS = ("recall_ctx_500", "recall_at_10", "f1", "bleu1")
LABELS = {"recall_ctx_500": "recall within 500 ctx tokens", "recall_at_10": "recall@10", "f1": "F1", "bleu1": "BLEU-1"}


def per_question(run_dir: Path) -> pl.DataFrame:
    """qid, conversation_id and the four metrics (null recall where a question has no evidence), categories 1-4."""
    q = pl.read_parquet(run_dir / "questions.parquet").filter(pl.col("category").is_in([1, 2, 3, 4]))
    at10 = [
        evidence_recall(list(ev), [list(p) for p in prov[:10]])
        for ev, prov in zip(q["evidence"].to_list(), q["retrieved_provenance"].to_list())
    ]
    return q.select("qid", "conversation_id", "recall_ctx_500", "f1", "bleu1", "context_tokens").with_columns(
        recall_at_10=pl.Series(at10, dtype=pl.Float64)
    )


def compare(base: pl.DataFrame, arm: pl.DataFrame, metric: str) -> dict:
    both = base.select("qid", "conversation_id", pl.col(metric).alias("a")).join(
        arm.select("qid", pl.col(metric).alias("b")), on="qid", how="inner"
    )
    both = both.drop_nulls(["a", "b"])
    clusters = both["conversation_id"].to_numpy()
    mean, lo, hi = bootstrap_ci(both["b"].to_numpy(), clusters=clusters)
    diff, dlo, dhi, p = paired_bootstrap(both["a"].to_numpy(), both["b"].to_numpy(), clusters=clusters)
    return {
        "n": both.height,
        "mean": mean,
        "lo": lo,
        "hi": hi,
        "diff": diff,
        "diff_lo": dlo,
        "diff_hi": dhi,
        "p_gt0": p,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="heldout")
    parser.add_argument("--base", default="defaults")
    parser.add_argument("--runs", default=None, help="runs dir (default runs/<split>)")
    args = parser.parse_args()
    runs = Path(args.runs) if args.runs else HERE / "runs" / args.split
    arms = sorted(p for p in runs.iterdir() if (p / "questions.parquet").exists())
    if not any(p.name == args.base for p in arms):
        raise SystemExit(f"{runs}/{args.base}/questions.parquet missing: run `bash run.sh {args.base}` first")
    base = per_question(runs / args.base)
    order = [args.base] + [p.name for p in arms if p.name != args.base]
    result = {name: {m: compare(base, per_question(runs / name), m) for m in METRICS} for name in order}
    tokens = {name: float(per_question(runs / name)["context_tokens"].mean()) for name in order}
    lines = [
        "| arm | " + " | ".join(LABELS[m] for m in METRICS) + " | ctx tokens |",
        "|---|" + "---|" * (len(METRICS) + 1),
    ]
    for name in order:
        cells = []
        for m in METRICS:
            r = result[name][m]
            cell = f"{r['mean']:.3f}"
            if name != args.base:
                cell += f" ({r['diff']:+.3f} [{r['diff_lo']:+.3f}, {r['diff_hi']:+.3f}])"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {tokens[name]:.0f} |")
    table = "\n".join(lines)
    print(f"{args.split}: n = {result[args.base]['f1']['n']} questions (categories 1-4)\n{table}")
    out = HERE / f"table_{args.split}.md"
    out.write_text(table + "\n")
    (HERE / f"table_{args.split}.json").write_text(json.dumps({"tokens": tokens, "arms": result}, indent=2) + "\n")
    plot(result, order[1:], args.base, HERE / f"levers_{args.split}.png", args.split)


def plot(result: dict, arms: list[str], base: str, path: Path, split: str) -> None:
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 0.5 * len(arms) + 1.5), sharey=True)
    y = np.arange(len(arms))
    for ax, m in zip(axes, METRICS):
        d = np.array([result[a][m]["diff"] for a in arms])
        lo = d - np.array([result[a][m]["diff_lo"] for a in arms])
        hi = np.array([result[a][m]["diff_hi"] for a in arms]) - d
        ax.errorbar(d, y, xerr=[lo, hi], fmt="o", capsize=3)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_title(f"{LABELS[m]} - {base}")
    axes[0].set_yticks(y, arms)
    fig.suptitle(f"each lever alone vs {base}, {split} split, paired clustered bootstrap 95% CI")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
