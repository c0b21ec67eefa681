"""`memtune-report`: compare `memtune-eval` runs with bootstrap confidence intervals and cost.

    memtune-report /tmp/dev_offline /tmp/dev_raw --out /tmp/report_dev
    memtune-report RUN_A RUN_B RUN_C --out DIR --baseline RUN_B --resamples 5000 --seed 1
    memtune-report RUN_A --out DIR --include-adversarial      # overall over categories 1-5

Each RUN_DIR is a `memtune-eval` output directory (summary.json + questions.parquet). Writes into DIR:

- report.md               per run and category: n, mean and percentile-bootstrap 95% CI (resampling questions) of
                          F1, SQuAD-F1, BLEU-1, evidence recall (questions with evidence only), J (when judged),
                          abstention; category 5 (adversarial: the right answer is to abstain) apart; cost per run;
                          paired differences of every run against the baseline (the first run unless --baseline)
- report.parquet          the long table: run, run_dir, policy, category, category_name, metric, mean, ci_low,
                          ci_high, n
- paired.parquet          the paired differences: run, baseline, category, metric, n, diff, ci_low, ci_high, p_gt0
- quality_vs_tokens.png   overall F1 and evidence recall against mean context tokens per query
- per_category.png        per-category bars with CI error bars, one colour per run

report.md is also printed, and its path is printed last.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from memtune.optimize.data import CATEGORY_NAMES

# Per-question columns that hold scores. Nulls are allowed only where the eval writes them on purpose.
QUALITY_METRICS = ("f1", "f1_squad", "bleu1", "evidence_recall", "judge", "abstained")
COST_METRICS = ("context_tokens",)
NULLABLE = {"evidence_recall": "the question has no evidence", "judge": "no judge scored it"}
REQUIRED_COLUMNS = ("qid", "category", *QUALITY_METRICS, *COST_METRICS)
# Category 5 (adversarial) has no gold answer (the eval sets it to ''): F1/BLEU/J are undefined there,
# abstaining is the right answer. Evidence recall still scores retrieval of the turns the question is about.
ADVERSARIAL_METRICS = ("abstained", "evidence_recall", "context_tokens")
ANSWER_METRICS = ("f1", "f1_squad", "bleu1", "evidence_recall", "judge", "abstained", "context_tokens")
LABELS = {"f1": "F1", "f1_squad": "F1 (SQuAD)", "bleu1": "BLEU-1", "evidence_recall": "evidence recall",
          "judge": "J (judge)", "abstained": "abstained", "context_tokens": "context tokens"}
LM_PHASES = (("ingest", "extract"), ("ingest", "summarize"), ("ingest", "decide"), ("answer", "answer"))
_MAX_ELEMENTS = 1 << 22  # cap on one (resamples x n) index block: 4M int32 indices = 16 MB, plus the gathered floats


# ---------------------------------------------------------------------------------------------------------------
# bootstrap (pure functions)


def _as_float_array(values, name: str = "values") -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError(f"{name}: cannot bootstrap an empty sample")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: {int((~np.isfinite(x)).sum())} non-finite values (NaN/inf); drop or fix them first")
    return x


def resample_means(values, resamples: int = 2000, seed: int = 0) -> np.ndarray:
    """Means of `resamples` bootstrap resamples (with replacement, same size) of `values`.

    Vectorised: draws a (rows, n) index matrix per block, blocks sized so one block holds at most ~4M indices
    (all 2,000 resamples of 1,400 questions fit in one block). Deterministic given (values, resamples, seed)."""
    x = _as_float_array(values)
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    n = x.size
    rng = np.random.default_rng(seed)
    out = np.empty(resamples, dtype=np.float64)
    rows = max(1, _MAX_ELEMENTS // n)
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n), dtype=np.int64 if n > 2**31 - 1 else np.int32)
        out[start:stop] = x[idx].mean(axis=1)
    return out


def bootstrap_ci(values, resamples: int = 2000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float, float]:
    """Sample mean and percentile-bootstrap (1 - alpha) CI over the items of `values` -> (mean, lo, hi)."""
    x = _as_float_array(values)
    means = resample_means(x, resamples, seed)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(x.mean()), float(lo), float(hi)


def paired_bootstrap(a, b, resamples: int = 2000, seed: int = 0,
                     alpha: float = 0.05) -> tuple[float, float, float, float]:
    """Paired difference b - a (item i of `a` and `b` is the same question) -> (mean diff, lo, hi, p_gt0).

    Resamples the per-item differences; p_gt0 is the share of resamples whose mean difference is > 0."""
    xa, xb = _as_float_array(a, "a"), _as_float_array(b, "b")
    if xa.shape != xb.shape:
        raise ValueError(f"paired samples differ in length: {xa.size} vs {xb.size}")
    d = xb - xa
    means = resample_means(d, resamples, seed)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(d.mean()), float(lo), float(hi), float((means > 0).mean())


# ---------------------------------------------------------------------------------------------------------------
# loading runs


@dataclass
class Run:
    path: Path
    label: str
    summary: dict
    questions: pl.DataFrame

    @property
    def policy(self) -> str:
        return str(self.summary["policy"])

    def has_judge(self) -> bool:
        return self.questions["judge"].is_not_null().any()


def _need(summary: dict, keys: tuple[str, ...], path: Path):
    """summary[k1][k2]...; a missing key fails naming it and the run dir."""
    node = summary
    for i, key in enumerate(keys):
        if not isinstance(node, dict) or key not in node:
            raise ValueError(f"{path}/summary.json has no {'.'.join(keys[: i + 1])!r} "
                             "(was it written by an older memtune-eval?)")
        node = node[key]
    return node


def load_run(run_dir: str | Path) -> tuple[dict, pl.DataFrame]:
    """Read and validate one run directory. Missing files, columns or unexpected nulls fail loudly."""
    path = Path(run_dir)
    for name in ("summary.json", "questions.parquet"):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path}: no {name} (expected a memtune-eval run directory)")
    summary = json.loads((path / "summary.json").read_text())
    _need(summary, ("policy",), path)
    frame = pl.read_parquet(path / "questions.parquet")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}/questions.parquet lacks column(s) {', '.join(map(repr, missing))}; "
                         f"a report needs {', '.join(REQUIRED_COLUMNS)}")
    if frame.height == 0:
        raise ValueError(f"{path}/questions.parquet has no questions")
    for col in (*QUALITY_METRICS, *COST_METRICS):
        if col in NULLABLE:
            continue
        nulls = frame[col].null_count()
        if nulls:
            raise ValueError(f"{path}/questions.parquet: column {col!r} has {nulls} null values")
    dupes = frame.height - frame["qid"].n_unique()
    if dupes:
        raise ValueError(f"{path}/questions.parquet: {dupes} duplicate qids")
    bad = sorted(set(frame["category"].unique().to_list()) - set(CATEGORY_NAMES))
    if bad:
        raise ValueError(f"{path}/questions.parquet: unknown categories {bad}")
    frame = frame.with_columns(pl.col(c).cast(pl.Float64) for c in (*QUALITY_METRICS, *COST_METRICS))
    return summary, frame


def load_runs(run_dirs: list[str | Path]) -> list[Run]:
    loaded = [(Path(d), *load_run(d)) for d in run_dirs]
    labels = [f"{s['policy']} ({p.name})" for p, s, _ in loaded]
    if len(set(labels)) < len(labels):  # e.g. Hydra's outputs/<date>/<time>: use two path parts
        labels = [f"{s['policy']} ({p.parent.name}/{p.name})" for p, s, _ in loaded]
    if len(set(labels)) < len(labels):
        labels = [f"{label} #{i + 1}" for i, label in enumerate(labels)]
    return [Run(p, label, s, q) for (p, s, q), label in zip(loaded, labels)]


# ---------------------------------------------------------------------------------------------------------------
# tables


def category_groups(include_adversarial: bool) -> list[tuple[str, str, tuple[int, ...], tuple[str, ...]]]:
    """(category, category_name, categories covered, metrics reported) for the per-category rows + overall."""
    groups = [(str(c), CATEGORY_NAMES[c], (c,), ADVERSARIAL_METRICS if c == 5 else ANSWER_METRICS)
              for c in sorted(CATEGORY_NAMES)]
    overall = (1, 2, 3, 4, 5) if include_adversarial else (1, 2, 3, 4)
    groups.append(("overall", "+".join(map(str, overall)), overall, ANSWER_METRICS))
    return groups


def metric_values(frame: pl.DataFrame, metric: str) -> np.ndarray:
    """The per-question values a metric is averaged over: nulls (no evidence / not judged) are left out."""
    return frame[metric].drop_nulls().to_numpy()


def summary_table(runs: list[Run], resamples: int = 2000, seed: int = 0,
                  include_adversarial: bool = False, alpha: float = 0.05) -> pl.DataFrame:
    """Long form: one row per (run, category, metric) with mean, CI and n (n = questions the mean is over)."""
    rows = []
    for run in runs:
        for category, name, cats, metrics in category_groups(include_adversarial):
            sub = run.questions.filter(pl.col("category").is_in(list(cats)))
            for metric in metrics:
                values = metric_values(sub, metric)
                mean = lo = hi = None
                if values.size:
                    mean, lo, hi = bootstrap_ci(values, resamples, seed, alpha)
                elif metric == "judge" or sub.height == 0:
                    continue  # not judged (no judge LM) / category absent from the split: no row, said in report.md
                rows.append({"run": run.label, "run_dir": str(run.path), "policy": run.policy, "category": category,
                             "category_name": name, "metric": metric, "mean": mean, "ci_low": lo, "ci_high": hi,
                             "n": int(values.size)})
    schema = {"run": pl.String, "run_dir": pl.String, "policy": pl.String, "category": pl.String,
              "category_name": pl.String, "metric": pl.String, "mean": pl.Float64, "ci_low": pl.Float64,
              "ci_high": pl.Float64, "n": pl.Int64}
    return pl.DataFrame(rows, schema=schema)


def check_same_questions(base: Run, other: Run) -> None:
    a, b = set(base.questions["qid"].to_list()), set(other.questions["qid"].to_list())
    if a != b:
        only_a, only_b = sorted(a - b), sorted(b - a)
        example = ", ".join((only_a + only_b)[:5])
        raise ValueError(
            f"cannot pair {other.path} with baseline {base.path}: {len(only_a) + len(only_b)} qids differ "
            f"({len(only_a)} only in the baseline, {len(only_b)} only in {other.path.name}; e.g. {example}). "
            "Paired differences need both runs on the same questions (same dataset, split and max_questions).")


def paired_table(base: Run, other: Run, resamples: int = 2000, seed: int = 0,
                 include_adversarial: bool = False, alpha: float = 0.05) -> pl.DataFrame:
    """Paired differences other - base per (category, metric), joined on qid."""
    check_same_questions(base, other)
    cols = ["qid", "category", *QUALITY_METRICS, *COST_METRICS]
    joined = base.questions.select(cols).join(other.questions.select(cols), on="qid", suffix="__other")
    rows = []
    for category, _, cats, metrics in category_groups(include_adversarial):
        sub = joined.filter(pl.col("category").is_in(list(cats)))
        for metric in metrics:
            pair = sub.select(metric, f"{metric}__other").drop_nulls()
            if pair.height == 0:
                continue
            diff, lo, hi, p_gt0 = paired_bootstrap(pair[metric].to_numpy(), pair[f"{metric}__other"].to_numpy(),
                                                   resamples, seed, alpha)
            rows.append({"run": other.label, "baseline": base.label, "category": category, "metric": metric,
                         "n": pair.height, "diff": diff, "ci_low": lo, "ci_high": hi, "p_gt0": p_gt0,
                         "excludes_zero": lo > 0 or hi < 0})
    schema = {"run": pl.String, "baseline": pl.String, "category": pl.String, "metric": pl.String, "n": pl.Int64,
              "diff": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64, "p_gt0": pl.Float64,
              "excludes_zero": pl.Boolean}
    return pl.DataFrame(rows, schema=schema)


def _phase(summary: dict, part: str, phase: str) -> dict:
    cost = (summary.get("cost") or {}).get(part) or {}
    return (cost.get("phases") or {}).get(phase) or {}


def cost_table(runs: list[Run]) -> pl.DataFrame:
    """One row per run, read from summary.json (and per-question latency from questions.parquet)."""
    rows = []
    for run in runs:
        s, q = run.summary, run.questions
        row = {"run": run.label,
               "memories_stored": _need(s, ("cost", "memories_stored"), run.path),
               "ops": " ".join(f"{k}={v}" for k, v in (_need(s, ("cost", "ops"), run.path) or {}).items()),
               "context_tokens_per_query": q["context_tokens"].mean(),
               "ingest_turns_per_s": _need(s, ("ingest", "turns_per_s"), run.path),
               "ingest_cache_hit": bool((s.get("ingest") or {}).get("cache_hit")),
               "answer_p50_s": _need(s, ("cost", "answer", "phases", "answer"), run.path).get("seconds_p50"),
               "answer_p95_s": _need(s, ("cost", "answer", "phases", "answer"), run.path).get("seconds_p95"),
               # whole query (embed + retrieve + answer), timed per question by the eval
               "query_p50_s": q["seconds"].quantile(0.5, "linear") if "seconds" in q.columns else None,
               "query_p95_s": q["seconds"].quantile(0.95, "linear") if "seconds" in q.columns else None}
        phases = [(*p, _phase(s, *p)) for p in LM_PHASES]
        judge = (s.get("cost") or {}).get("judge") or {}
        phases += [("judge", name, c) for name, c in (judge.get("phases") or {}).items()]
        for _, name, c in phases:
            row[f"lm_calls_{name}"] = c.get("calls", 0)
            row[f"lm_tokens_{name}"] = c.get("prompt_tokens", 0) + c.get("completion_tokens", 0)
        rows.append(row)
    return pl.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------------------
# markdown


def _num(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def _cell(row: dict | None, digits: int = 3) -> str:
    if row is None:
        return "—"
    if row["mean"] is None:
        return "n/a (n=0)"
    return f"{_num(row['mean'], digits)} [{_num(row['ci_low'], digits)}, {_num(row['ci_high'], digits)}]"


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _ms(seconds) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.2f}"


def render_markdown(runs: list[Run], table: pl.DataFrame, paired: list[pl.DataFrame], costs: pl.DataFrame,
                    baseline: Run, resamples: int, seed: int, include_adversarial: bool) -> str:
    lookup = {(r["run"], r["category"], r["metric"]): r for r in table.iter_rows(named=True)}
    judged = [r for r in runs if r.has_judge()]
    overall_name = "1+2+3+4+5" if include_adversarial else "1+2+3+4"
    answer_metrics = [m for m in ANSWER_METRICS if m not in ("context_tokens",) and (m != "judge" or judged)]
    digits = {"context_tokens": 1}

    lines = ["# memtune report", "", "## Runs", ""]
    lines += _md_table(["run", "policy", "run dir", "dataset", "questions", "judge"], [
        [r.label, r.policy, f"`{r.path}`",
         f"{(r.summary.get('dataset') or {}).get('name', '?')} "
         f"(sha256 {str((r.summary.get('dataset') or {}).get('sha256', '?'))[:12]})",
         str(r.questions.height), str((r.summary.get("judge") or {}).get("model") or "none")] for r in runs])
    shas = {(r.summary.get("dataset") or {}).get("sha256") for r in runs}
    if len(shas) > 1:
        lines += ["", "**Warning: the runs were made on different dataset files (sha256 differ).**"]
    lines += [
        "",
        f"Means over questions with percentile-bootstrap 95% CIs in brackets ({resamples} resamples of the "
        f"questions, seed {seed}). Evidence recall is over the questions that have evidence; n is the number of "
        f"questions a mean is over. **overall** = categories {overall_name}"
        + ("" if include_adversarial else " (mem0's convention)") + ". Category 5 (adversarial) is reported apart: "
        "its gold answer is empty and the right answer is to abstain, so F1/BLEU-1/J are not defined there.",
    ]
    if not judged:
        lines += ["", "J (LLM judge): not scored in any run (no judge LM configured; run memtune-eval with "
                      "judge=openai to score it)."]
    elif len(judged) < len(runs):
        lines += ["", "J (LLM judge): scored only in " + ", ".join(r.label for r in judged) + "."]

    lines += ["", f"## Overall (categories {overall_name})", ""]
    header = ["run", "n", *(LABELS[m] for m in answer_metrics), "context tokens/query",
              "cat 5 abstention (↑)"]
    rows = []
    for r in runs:
        n = lookup.get((r.label, "overall", "f1"))
        rows.append([r.label, str(n["n"]) if n else "0",
                     *(_cell(lookup.get((r.label, "overall", m))) for m in answer_metrics),
                     _cell(lookup.get((r.label, "overall", "context_tokens")), 1),
                     _cell(lookup.get((r.label, "5", "abstained")))])
    lines += _md_table(header, rows)

    lines += ["", "## Per category (1-4)", ""]
    header = ["category", "run", "n", *(LABELS[m] for m in answer_metrics), "context tokens/query"]
    rows = []
    for cat in ("1", "2", "3", "4"):
        for r in runs:
            n = lookup.get((r.label, cat, "f1"))
            if n is None:
                continue
            ev = lookup.get((r.label, cat, "evidence_recall"))
            cells = []
            for m in answer_metrics:
                cell = _cell(lookup.get((r.label, cat, m)))
                if m == "evidence_recall" and ev is not None and ev["n"] != n["n"]:
                    cell += f" (n={ev['n']})"
                cells.append(cell)
            rows.append([f"{cat} {CATEGORY_NAMES[int(cat)]}", r.label, str(n["n"]), *cells,
                         _cell(lookup.get((r.label, cat, "context_tokens")), 1)])
    lines += _md_table(header, rows)

    lines += ["", "## Category 5 (adversarial): the right answer is to abstain", ""]
    rows = []
    for r in runs:
        ab = lookup.get((r.label, "5", "abstained"))
        if ab is None:
            continue
        rows.append([r.label, str(ab["n"]), _cell(ab), _cell(lookup.get((r.label, "5", "evidence_recall"))),
                     _cell(lookup.get((r.label, "5", "context_tokens")), 1)])
    if rows:
        lines += _md_table(["run", "n", "abstention rate (↑)", "evidence recall", "context tokens/query"], rows)
        lines += ["", "Abstention on categories 1-4 (the `abstained` column above) should stay near 0: a policy "
                      "that always abstains would score 1.0 here."]
    else:
        lines += ["No category-5 questions in these runs."]

    lines += ["", "## Paired differences", ""]
    if not paired:
        lines += ["One run only: no paired differences.", ""]
    for frame in paired:
        if frame.height == 0:
            continue
        other = frame["run"][0]
        n_q = baseline.questions.height
        lines += [f"### {other} − {baseline.label}", "",
                  f"Paired over the same {n_q} questions (joined on qid); Δ = run − baseline; 95% paired-bootstrap "
                  f"CI; P(Δ>0) = share of the {resamples} resamples where the mean difference is > 0. "
                  "**yes** in the last column: the CI excludes 0. For context tokens, Δ > 0 means the run "
                  "spends more tokens (worse).", ""]
        rows = []
        order = {c: i for i, c in enumerate(["overall", "1", "2", "3", "4", "5"])}
        for row in sorted(frame.iter_rows(named=True), key=lambda r: (order[r["category"]],
                                                                        ANSWER_METRICS.index(r["metric"]))):
            d = digits.get(row["metric"], 3)
            cat = row["category"] if row["category"] == "overall" else \
                f"{row['category']} {CATEGORY_NAMES[int(row['category'])]}"
            rows.append([cat, LABELS[row["metric"]], str(row["n"]), f"{row['diff']:+.{d}f}",
                         f"[{row['ci_low']:+.{d}f}, {row['ci_high']:+.{d}f}]", f"{row['p_gt0']:.3f}",
                         "**yes**" if row["excludes_zero"] else "no"])
        lines += _md_table(["category", "metric", "n", "Δ mean", "95% CI", "P(Δ>0)", "CI excludes 0"], rows)
        sig = frame.filter(pl.col("excludes_zero"))
        lines += [""]
        if sig.height:
            def says(r: dict) -> str:
                return (f"{LABELS[r['metric']]} {'higher' if r['diff'] > 0 else 'lower'} "
                        f"(Δ {r['diff']:+.{digits.get(r['metric'], 3)}f})")

            top = sig.filter(pl.col("category") == "overall")
            cats = sig.filter(pl.col("category") != "overall")
            lines += [f"**Overall (categories {overall_name}), the 95% CI excludes 0 for**: "
                      + ("; ".join(says(r) for r in top.iter_rows(named=True)) if top.height else "nothing") + "."]
            by_cat = {}
            for r in cats.iter_rows(named=True):
                by_cat.setdefault(r["category"], []).append(says(r))
            if by_cat:
                lines += ["", "Per category, the CI excludes 0 for: " + " | ".join(
                    f"cat {c}: " + ", ".join(v) for c, v in sorted(by_cat.items())) + "."]
        else:
            lines += ["No difference has a 95% CI that excludes 0: at this sample size the runs are "
                      "indistinguishable on every metric."]
        lines += [""]

    lines += ["## Cost", ""]
    rows = []
    for c in costs.iter_rows(named=True):
        rows.append([c["run"], str(c["memories_stored"]), c["ops"], _num(c["context_tokens_per_query"], 1),
                     _num(c["ingest_turns_per_s"], 1) + (" (cached store)" if c["ingest_cache_hit"] else ""),
                     f"{_ms(c['answer_p50_s'])} / {_ms(c['answer_p95_s'])}",
                     f"{_ms(c['query_p50_s'])} / {_ms(c['query_p95_s'])}"])
    lines += _md_table(["run", "memories stored", "ops", "context tokens/query (all questions)",
                        "ingest turns/s", "answer step p50/p95 ms", "whole query p50/p95 ms"], rows)
    phase_cols = [c.removeprefix("lm_calls_") for c in costs.columns if c.startswith("lm_calls_")]
    lines += ["", "LM calls per phase (prompt + completion tokens in parentheses); cached calls count what the "
                  "original call cost:", ""]
    rows = [[c["run"], *(f"{c[f'lm_calls_{p}'] or 0} ({c[f'lm_tokens_{p}'] or 0})" for p in phase_cols)]
            for c in costs.iter_rows(named=True)]
    lines += _md_table(["run", *phase_cols], rows)
    lines += ["", "Ingest turns/s of a cached store is the speed measured when it was built. Answer step = the "
                  "answerer alone (summary.json); whole query = embed + retrieve + answer per question.", ""]
    lines += ["## Figures", "", "![quality vs context tokens](quality_vs_tokens.png)", "",
              "![per category](per_category.png)", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _err(rows: list[dict | None]) -> np.ndarray:
    return np.array([[0 if r is None or r["mean"] is None else r["mean"] - r["ci_low"] for r in rows],
                     [0 if r is None or r["mean"] is None else r["ci_high"] - r["mean"] for r in rows]])


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
            ax.errorbar(x["mean"], y["mean"], yerr=_err([y]), xerr=_err([x]), fmt="o", capsize=4, markersize=7,
                        color=colours(i % 10), label=run.label)
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
    panels = [("f1", ["1", "2", "3", "4", "overall"])]
    if any(r.has_judge() for r in runs):
        panels.append(("judge", ["1", "2", "3", "4", "overall"]))
    panels += [("evidence_recall", ["1", "2", "3", "4", "5", "overall"]), ("abstained", ["5"])]
    widths = [max(len(c), 1.8) for _, c in panels]
    fig_width = min(26.0, 2.0 + sum(widths) * (0.45 + 0.3 * len(runs)))
    fig, axes = plt.subplots(1, len(panels), figsize=(fig_width, 5.0),
                             gridspec_kw={"width_ratios": widths}, constrained_layout=True)
    width = 0.8 / max(1, len(runs))
    for ax, (metric, cats) in zip(axes, panels):
        x = np.arange(len(cats))
        for i, run in enumerate(runs):
            rows = [lookup.get((run.label, c, metric)) for c in cats]
            bars = ax.bar(x + (i - (len(runs) - 1) / 2) * width, [_mean(r) for r in rows], width,
                          yerr=_err(rows), capsize=3, color=colours(i % 10), label=run.label)
            if metric == "abstained":  # a rate of 0 draws no bar: print the numbers
                ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
        names = [f"overall\n({overall_name})" if c == "overall" else f"{c}\n{CATEGORY_NAMES[int(c)]}" for c in cats]
        ax.set_xticks(x, names, fontsize=8)
        title = "cat 5: abstention\nrate (↑ better)" if metric == "abstained" else LABELS[metric]
        ax.set_title(title)
        ax.set_ylim(0, 1.05 if metric in ("evidence_recall", "abstained") else None)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("mean with 95% CI")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=min(4, len(runs)),
               fontsize=9)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------------
# CLI


def build_report(run_dirs: list[str | Path], out: str | Path, baseline: str | Path | None = None,
                 resamples: int = 2000, seed: int = 0, include_adversarial: bool = False) -> Path:
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
    table = summary_table(runs, resamples, seed, include_adversarial)
    paired = [paired_table(base, r, resamples, seed, include_adversarial) for r in runs[1:]]
    costs = cost_table(runs)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    overall_name = "1-5" if include_adversarial else "1-4"
    table.write_parquet(out_dir / "report.parquet")
    if paired:
        pl.concat(paired).write_parquet(out_dir / "paired.parquet")
    else:
        (out_dir / "paired.parquet").unlink(missing_ok=True)  # never leave a stale comparison behind
    plot_quality_vs_tokens(runs, table, out_dir / "quality_vs_tokens.png", overall_name)
    plot_per_category(runs, table, out_dir / "per_category.png", overall_name)
    md = render_markdown(runs, table, paired, costs, base, resamples, seed, include_adversarial)
    (out_dir / "report.md").write_text(md)
    return out_dir / "report.md"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="memtune-report",
        description="Compare memtune-eval runs: per-category means with bootstrap 95%% CIs, cost, paired "
                    "differences against a baseline, and figures.")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="memtune-eval output directories (summary.json + questions.parquet)")
    parser.add_argument("--out", required=True, metavar="DIR", help="where to write report.md, parquet and PNGs")
    parser.add_argument("--baseline", metavar="RUN_DIR", default=None,
                        help="run the others are compared with (default: the first RUN_DIR)")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--include-adversarial", action="store_true",
                        help="overall over categories 1-5 instead of 1-4 (mem0's convention)")
    args = parser.parse_args(argv)
    if args.resamples < 1:
        parser.error("--resamples must be >= 1")
    try:
        path = build_report(args.run_dirs, args.out, args.baseline, args.resamples, args.seed,
                            args.include_adversarial)
    except (ValueError, FileNotFoundError) as err:
        parser.exit(2, f"memtune-report: error: {err}\n")
    print(path.read_text())
    print(path)


if __name__ == "__main__":
    main()
