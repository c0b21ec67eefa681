"""report.md for `memtune-report`: runs, per-category means with CIs, paired differences and cost."""

from __future__ import annotations

import polars as pl

from ..data.types import CATEGORY_NAMES
from .cost import cost_sections
from .format import fmt_cell as _cell
from .format import md_table as _md_table
from .judges import judge_sections
from .runs import ANSWER_METRICS, LABELS, Run


def render_markdown(
    runs: list[Run],
    table: pl.DataFrame,
    paired: list[pl.DataFrame],
    costs: pl.DataFrame,
    baseline: Run,
    resamples: int,
    seed: int,
    include_adversarial: bool,
    overall_name: str | None = None,
) -> str:
    lookup = {(r["run"], r["category"], r["metric"]): r for r in table.iter_rows(named=True)}
    judged = [r for r in runs if r.has_judge()]
    overall_name = overall_name or ("1+2+3+4+5" if include_adversarial else "1+2+3+4")
    # the per-category rows: every category the runs have (LOCOMO 1-4, the generated set's 11-13, ...), 5 apart
    categories = sorted({r["category"] for r in table.iter_rows(named=True)} - {"overall", "5"}, key=int)
    answer_metrics = [m for m in ANSWER_METRICS if m not in ("context_tokens",) and (m != "judge" or judged)]
    digits = {"context_tokens": 1}

    lines = ["# memtune report", "", "## Runs", ""]
    lines += _md_table(
        ["run", "policy", "oracle", "run dir", "dataset", "questions", "judge"],
        [
            [
                r.label,
                r.policy,
                ("**yes**: " + ", ".join(f"{k}={v}" for k, v in r.oracle_stages.items())) if r.oracle else "no",
                f"`{r.path}`",
                f"{(r.summary.get('dataset') or {}).get('name', '?')} "
                f"(sha256 {str((r.summary.get('dataset') or {}).get('sha256', '?'))[:12]})",
                str(r.questions.height),
                str((r.summary.get("judge") or {}).get("model") or "none"),
            ]
            for r in runs
        ],
    )
    oracles = [r.label for r in runs if r.oracle]
    if oracles:
        lines += [
            "",
            "**ORACLE runs: " + ", ".join(oracles) + ".** A stage of theirs reads LOCOMO's annotations "
            "(e.g. `policy/extractor=observations` replays the annotated observation facts), which production "
            "never has: an upper bound for tuning the other stages, not a policy. Never report them as one.",
        ]
    shas = {(r.summary.get("dataset") or {}).get("sha256") for r in runs}
    if len(shas) > 1:
        lines += ["", "**Warning: the runs were made on different dataset files (sha256 differ).**"]
    lines += [
        "",
        f"Means over questions with percentile-bootstrap 95% CIs in brackets ({resamples} two-stage resamples, "
        f"seed {seed}: each resample draws the conversations with replacement, then the questions within each "
        "drawn conversation with replacement, because questions about one conversation succeed or fail together; "
        "resampling questions alone would give CIs that are too narrow). Evidence recall is over the questions "
        f"that have evidence; n is the number of questions a mean is over. **overall** = categories {overall_name}"
        + (" (mem0's convention)" if overall_name == "1+2+3+4" else "")
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
    if judged:
        lines += [
            "",
            "J's n is every question J is defined for: a judge failure or a failed answer counts WRONG there, so "
            "failures never shrink the denominator (the LM failures section gives the counts and J over the "
            "judged questions alone).",
        ]

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

    lines += ["", f"## Per category ({', '.join(categories)})", ""]
    header = ["category", "run", "n", *(LABELS[m] for m in answer_metrics), "context tokens/query"]
    rows = []
    for cat in categories:
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
            f"Paired over the same {n_q} questions (joined on qid); Δ = run − baseline; 95% paired two-stage "
            "bootstrap CI (conversations, then questions within them); "
            f"P(Δ>0) = share of the {resamples} resamples where the mean difference is > 0. "
            "**yes** in the last column: the CI excludes 0. For context tokens, Δ > 0 means the run "
            "spends more tokens (worse).",
            "",
        ]
        rows = []

        def order(cat: str) -> int:
            return -1 if cat == "overall" else int(cat)

        for row in sorted(
            frame.iter_rows(named=True), key=lambda r: (order(r["category"]), ANSWER_METRICS.index(r["metric"]))
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
            by_cat: dict[str, list[str]] = {}
            for row in cats.iter_rows(named=True):
                by_cat.setdefault(row["category"], []).append(says(row))
            if by_cat:
                lines += [
                    "",
                    "Per category, the CI excludes 0 for: "
                    + " | ".join(
                        f"cat {c}: " + ", ".join(v) for c, v in sorted(by_cat.items(), key=lambda cv: int(cv[0]))
                    )
                    + ".",
                ]
        else:
            lines += [
                "No difference has a 95% CI that excludes 0: at this sample size the runs are "
                "indistinguishable on every metric."
            ]
        lines += [""]

    lines += cost_sections(costs)
    lines += judge_sections(runs)
    lines += [
        "## Figures",
        "",
        "![quality vs context tokens](quality_vs_tokens.png)",
        "",
        "![per category](per_category.png)",
        "",
    ]
    return "\n".join(lines)
