"""report.md for `memtune-report`: runs, per-category means with CIs, paired differences and cost."""

from __future__ import annotations

import math

import polars as pl
from memtune.optimize.data import CATEGORY_NAMES
from memtune.optimize.report_runs import ANSWER_METRICS, LABELS, Run


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


def render_markdown(
    runs: list[Run],
    table: pl.DataFrame,
    paired: list[pl.DataFrame],
    costs: pl.DataFrame,
    baseline: Run,
    resamples: int,
    seed: int,
    include_adversarial: bool,
) -> str:
    lookup = {(r["run"], r["category"], r["metric"]): r for r in table.iter_rows(named=True)}
    judged = [r for r in runs if r.has_judge()]
    overall_name = "1+2+3+4+5" if include_adversarial else "1+2+3+4"
    answer_metrics = [m for m in ANSWER_METRICS if m not in ("context_tokens",) and (m != "judge" or judged)]
    digits = {"context_tokens": 1}

    lines = ["# memtune report", "", "## Runs", ""]
    lines += _md_table(
        ["run", "policy", "run dir", "dataset", "questions", "judge"],
        [
            [
                r.label,
                r.policy,
                f"`{r.path}`",
                f"{(r.summary.get('dataset') or {}).get('name', '?')} "
                f"(sha256 {str((r.summary.get('dataset') or {}).get('sha256', '?'))[:12]})",
                str(r.questions.height),
                str((r.summary.get("judge") or {}).get("model") or "none"),
            ]
            for r in runs
        ],
    )
    shas = {(r.summary.get("dataset") or {}).get("sha256") for r in runs}
    if len(shas) > 1:
        lines += ["", "**Warning: the runs were made on different dataset files (sha256 differ).**"]
    lines += [
        "",
        f"Means over questions with percentile-bootstrap 95% CIs in brackets ({resamples} resamples of the "
        f"questions, seed {seed}). Evidence recall is over the questions that have evidence; n is the number of "
        f"questions a mean is over. **overall** = categories {overall_name}"
        + ("" if include_adversarial else " (mem0's convention)")
        + ". Category 5 (adversarial) is reported apart: "
        "its gold answer is empty and the right answer is to abstain, so F1/BLEU-1/J are not defined there.",
    ]
    if not judged:
        lines += [
            "",
            "J (LLM judge): not scored in any run (no judge LM configured; run memtune-eval with "
            "judge=openai to score it).",
        ]
    elif len(judged) < len(runs):
        lines += ["", "J (LLM judge): scored only in " + ", ".join(r.label for r in judged) + "."]

    lines += ["", f"## Overall (categories {overall_name})", ""]
    header = ["run", "n", *(LABELS[m] for m in answer_metrics), "context tokens/query", "cat 5 abstention (↑)"]
    rows = []
    for r in runs:
        n = lookup.get((r.label, "overall", "f1"))
        rows.append(
            [
                r.label,
                str(n["n"]) if n else "0",
                *(_cell(lookup.get((r.label, "overall", m))) for m in answer_metrics),
                _cell(lookup.get((r.label, "overall", "context_tokens")), 1),
                _cell(lookup.get((r.label, "5", "abstained"))),
            ]
        )
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
            rows.append(
                [
                    f"{cat} {CATEGORY_NAMES[int(cat)]}",
                    r.label,
                    str(n["n"]),
                    *cells,
                    _cell(lookup.get((r.label, cat, "context_tokens")), 1),
                ]
            )
    lines += _md_table(header, rows)

    lines += ["", "## Category 5 (adversarial): the right answer is to abstain", ""]
    rows = []
    for r in runs:
        ab = lookup.get((r.label, "5", "abstained"))
        if ab is None:
            continue
        rows.append(
            [
                r.label,
                str(ab["n"]),
                _cell(ab),
                _cell(lookup.get((r.label, "5", "evidence_recall"))),
                _cell(lookup.get((r.label, "5", "context_tokens")), 1),
            ]
        )
    if rows:
        lines += _md_table(["run", "n", "abstention rate (↑)", "evidence recall", "context tokens/query"], rows)
        lines += [
            "",
            "Abstention on categories 1-4 (the `abstained` column above) should stay near 0: a policy "
            "that always abstains would score 1.0 here.",
        ]
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
        lines += [
            f"### {other} − {baseline.label}",
            "",
            f"Paired over the same {n_q} questions (joined on qid); Δ = run − baseline; 95% paired-bootstrap "
            f"CI; P(Δ>0) = share of the {resamples} resamples where the mean difference is > 0. "
            "**yes** in the last column: the CI excludes 0. For context tokens, Δ > 0 means the run "
            "spends more tokens (worse).",
            "",
        ]
        rows = []
        order = {c: i for i, c in enumerate(["overall", "1", "2", "3", "4", "5"])}
        for row in sorted(
            frame.iter_rows(named=True), key=lambda r: (order[r["category"]], ANSWER_METRICS.index(r["metric"]))
        ):
            d = digits.get(row["metric"], 3)
            cat = (
                row["category"]
                if row["category"] == "overall"
                else f"{row['category']} {CATEGORY_NAMES[int(row['category'])]}"
            )
            rows.append(
                [
                    cat,
                    LABELS[row["metric"]],
                    str(row["n"]),
                    f"{row['diff']:+.{d}f}",
                    f"[{row['ci_low']:+.{d}f}, {row['ci_high']:+.{d}f}]",
                    f"{row['p_gt0']:.3f}",
                    "**yes**" if row["excludes_zero"] else "no",
                ]
            )
        lines += _md_table(["category", "metric", "n", "Δ mean", "95% CI", "P(Δ>0)", "CI excludes 0"], rows)
        sig = frame.filter(pl.col("excludes_zero"))
        lines += [""]
        if sig.height:

            def says(r: dict) -> str:
                return (
                    f"{LABELS[r['metric']]} {'higher' if r['diff'] > 0 else 'lower'} "
                    f"(Δ {r['diff']:+.{digits.get(r['metric'], 3)}f})"
                )

            top = sig.filter(pl.col("category") == "overall")
            cats = sig.filter(pl.col("category") != "overall")
            lines += [
                f"**Overall (categories {overall_name}), the 95% CI excludes 0 for**: "
                + ("; ".join(says(r) for r in top.iter_rows(named=True)) if top.height else "nothing")
                + "."
            ]
            by_cat = {}
            for r in cats.iter_rows(named=True):
                by_cat.setdefault(r["category"], []).append(says(r))
            if by_cat:
                lines += [
                    "",
                    "Per category, the CI excludes 0 for: "
                    + " | ".join(f"cat {c}: " + ", ".join(v) for c, v in sorted(by_cat.items()))
                    + ".",
                ]
        else:
            lines += [
                "No difference has a 95% CI that excludes 0: at this sample size the runs are "
                "indistinguishable on every metric."
            ]
        lines += [""]

    lines += ["## Cost", ""]
    rows = []
    for c in costs.iter_rows(named=True):
        rows.append(
            [
                c["run"],
                str(c["memories_stored"]),
                c["ops"],
                _num(c["context_tokens_per_query"], 1),
                _num(c["ingest_turns_per_s"], 1) + (" (cached store)" if c["ingest_cache_hit"] else ""),
                f"{_ms(c['answer_p50_s'])} / {_ms(c['answer_p95_s'])}",
                f"{_ms(c['query_p50_s'])} / {_ms(c['query_p95_s'])}",
            ]
        )
    lines += _md_table(
        [
            "run",
            "memories stored",
            "ops",
            "context tokens/query (all questions)",
            "ingest turns/s",
            "answer step p50/p95 ms",
            "whole query p50/p95 ms",
        ],
        rows,
    )
    phase_cols = [c.removeprefix("lm_calls_") for c in costs.columns if c.startswith("lm_calls_")]
    lines += [
        "",
        "LM calls per phase (billed prompt + completion tokens in parentheses; calls answered from the "
        "DSPy cache bill 0 tokens):",
        "",
    ]
    rows = [
        [c["run"], *(f"{c[f'lm_calls_{p}'] or 0} ({c[f'lm_tokens_{p}'] or 0})" for p in phase_cols)]
        for c in costs.iter_rows(named=True)
    ]
    lines += _md_table(["run", *phase_cols], rows)
    lines += [
        "",
        "Ingest turns/s of a cached store is the speed measured when it was built. Answer step = the "
        "answerer alone (summary.json); whole query = embed + retrieve + answer per question.",
        "",
    ]
    lines += [
        "## Figures",
        "",
        "![quality vs context tokens](quality_vs_tokens.png)",
        "",
        "![per category](per_category.png)",
        "",
    ]
    return "\n".join(lines)
