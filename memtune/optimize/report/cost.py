"""The per-run cost and LM-failure table of `memtune-report` (from summary.json and questions.parquet), and its
report.md sections."""

from __future__ import annotations

import polars as pl

from .format import fmt_ms, fmt_num, md_table
from .runs import Run, _need

LM_PHASES = (("ingest", "extract"), ("ingest", "summarize"), ("ingest", "decide"), ("answer", "answer"))


def _phase(summary: dict, part: str, phase: str) -> dict:
    cost = (summary.get("cost") or {}).get(part) or {}
    return (cost.get("phases") or {}).get(phase) or {}


def cost_table(runs: list[Run]) -> pl.DataFrame:
    """One row per run, read from summary.json (and per-question latency from questions.parquet)."""
    rows = []
    for run in runs:
        s, q = run.summary, run.questions
        row = {
            "run": run.label,
            "memories_stored": _need(s, ("cost", "memories_stored"), run.path),
            "ops": " ".join(f"{k}={v}" for k, v in (_need(s, ("cost", "ops"), run.path) or {}).items()),
            "context_tokens_per_query": q["context_tokens"].mean(),
            "ingest_turns_per_s": _need(s, ("ingest", "turns_per_s"), run.path),
            "ingest_cache_hit": bool((s.get("ingest") or {}).get("cache_hit")),
            # LM failures (all questions): failed answers are scored 0, failed judgements count WRONG in J
            "answer_failures": int(q["answer_failed"].sum()),
            "judge_n": int(q["judge"].is_not_null().sum()),
            "n_judged": int((q["judge"].is_not_null() & ~q["answer_failed"] & ~q["judge_failed"]).sum()),
            "judge_failures": int(q["judge_failed"].sum()),
            "judge_judged_only": q.filter(
                pl.col("judge").is_not_null() & ~pl.col("answer_failed") & ~pl.col("judge_failed")
            )["judge"].mean(),
            "answer_p50_s": _need(s, ("cost", "answer", "phases", "answer"), run.path).get("seconds_p50"),
            "answer_p95_s": _need(s, ("cost", "answer", "phases", "answer"), run.path).get("seconds_p95"),
            # whole query (embed + retrieve + answer), timed per question by the eval
            "query_p50_s": q["seconds"].quantile(0.5, "linear") if "seconds" in q.columns else None,
            "query_p95_s": q["seconds"].quantile(0.95, "linear") if "seconds" in q.columns else None,
        }
        phases = [(*p, _phase(s, *p)) for p in LM_PHASES]
        judge = (s.get("cost") or {}).get("judge") or {}
        phases += [("judge", name, c) for name, c in (judge.get("phases") or {}).items()]
        for _, name, c in phases:
            row[f"lm_calls_{name}"] = c.get("calls", 0)
            row[f"lm_tokens_{name}"] = c.get("prompt_tokens", 0) + c.get("completion_tokens", 0)
        rows.append(row)
    return pl.DataFrame(rows)


def cost_sections(costs: pl.DataFrame) -> list[str]:
    """report.md's "LM failures" and "Cost" sections, one row per run of `cost_table`."""
    lines: list[str] = []
    lines += ["## LM failures", ""]
    rows = [
        [
            c["run"],
            str(c["answer_failures"]),
            str(c["judge_n"]),
            str(c["n_judged"]),
            str(c["judge_failures"]),
            fmt_num(c["judge_judged_only"]),
        ]
        for c in costs.iter_rows(named=True)
    ]
    lines += md_table(
        [
            "run",
            "failed answers (scored 0, not abstentions)",
            "J over n questions",
            "judged",
            "judge failures (WRONG in J)",
            "J over judged only",
        ],
        rows,
    )
    lines += [
        "",
        "All questions (categories 1-5). A failed answer is an LM answer that stayed malformed after its retries "
        "(cost.answer.failures in summary.json): it scores 0 on F1/BLEU-1/J and is never an abstention.",
        "",
    ]
    lines += ["## Cost", ""]
    rows = []
    for c in costs.iter_rows(named=True):
        rows.append(
            [
                c["run"],
                str(c["memories_stored"]),
                c["ops"],
                fmt_num(c["context_tokens_per_query"], 1),
                fmt_num(c["ingest_turns_per_s"], 1) + (" (cached store)" if c["ingest_cache_hit"] else ""),
                f"{fmt_ms(c['answer_p50_s'])} / {fmt_ms(c['answer_p95_s'])}",
                f"{fmt_ms(c['query_p50_s'])} / {fmt_ms(c['query_p95_s'])}",
            ]
        )
    lines += md_table(
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
    lines += md_table(["run", *phase_cols], rows)
    lines += [
        "",
        "Ingest turns/s of a cached store is the speed measured when it was built. Answer step = the "
        "answerer alone (summary.json); whole query = embed + retrieve + answer per question.",
        "",
    ]
    return lines
