"""Categories beyond LOCOMO's 1-5 (the generated set's 11-13, LongMemEval's 21-26) flow through scoring and
memtune-report: per-category rows, the overall row the runs were made with, paired differences."""

from __future__ import annotations

import json

import polars as pl
import pytest
from test_report import F1_A, F1_B, make_run

from memtune.optimize.evaluation.evaluate import score_table, summary_dict
from memtune.optimize.report.app import build_report, run_overall
from memtune.optimize.report.runs import load_runs

UPDATES = {11: "current", 12: "history", 13: "stable"}


def updates_run(root, name, policy, f1, overall=(11, 12, 13)):
    """make_run's 10 questions, recategorised as 11, 12, 13, 11, 12, ... (no category 5)."""
    run = make_run(root, name, policy, f1, summary_extra={"config": {"overall_categories": list(overall)}})
    frame = pl.read_parquet(run / "questions.parquet")
    cats = [11 + i % 3 for i in range(frame.height)]
    frame = frame.with_columns(
        pl.Series("category", cats), pl.Series("category_name", [UPDATES[c] for c in cats]), abstained=False
    )
    frame.write_parquet(run / "questions.parquet")
    return run


def test_score_table_groups_the_update_kinds_and_their_overall():
    frame = pl.DataFrame(
        {"category": [11, 11, 12, 13], "category_name": ["current", "current", "history", "stable"]}
        | {m: [1.0, 0.0, 0.5, 1.0] for m in ("f1", "f1_squad", "bleu1", "evidence_recall", "context_tokens")}
        | {"judge": [None] * 4, "abstained": [False] * 4, "answer_failed": [False] * 4, "judge_failed": [False] * 4}
        | {f"recall_ctx_{b}": [1.0] * 4 for b in (250, 500, 1000, 2000)},
        schema_overrides={"judge": pl.Float64},
    )
    scores = summary_dict(score_table(frame, (11, 12, 13)))
    assert set(scores) == {"11 current", "12 history", "13 stable", "overall"}
    assert scores["11 current"]["f1"] == 0.5 and scores["11 current"]["n"] == 2
    assert scores["overall"]["n"] == 4 and scores["overall"]["f1"] == pytest.approx(0.625)
    assert summary_dict(score_table(frame, (1, 2, 3, 4)))["overall"]["n"] == 0  # LOCOMO's overall: none of them


def test_report_over_update_runs(tmp_path):
    a = updates_run(tmp_path, "a", "mem0_offline", F1_A)
    b = updates_run(tmp_path, "b", "supersede", F1_B)
    md = build_report([a, b], tmp_path / "out", resamples=200).read_text()
    assert "## Overall (categories 11+12+13)" in md and "(mem0's convention)" not in md
    assert "## Per category (11, 12, 13)" in md
    assert "| 11 current | mem0_offline (a) | 4 |" in md and "| 13 stable | supersede (b) | 3 |" in md
    table = pl.read_parquet(tmp_path / "out" / "report.parquet")
    overall = table.filter((pl.col("category") == "overall") & (pl.col("metric") == "f1"))
    assert overall["n"].to_list() == [10, 10] and overall["category_name"].to_list() == ["11+12+13"] * 2
    assert overall["mean"].to_list() == pytest.approx([sum(F1_A) / 10, sum(F1_B) / 10])
    paired = pl.read_parquet(tmp_path / "out" / "paired.parquet")
    assert set(paired["category"]) == {"overall", "11", "12", "13"}
    assert (tmp_path / "out" / "per_category.png").stat().st_size > 0


def test_runs_with_different_overall_rows_are_not_compared(tmp_path):
    a = updates_run(tmp_path, "a", "mem0_offline", F1_A)
    locomo = make_run(tmp_path, "l", "mem0_offline", F1_A)  # no config: LOCOMO's 1-4
    assert run_overall(load_runs([locomo])) == (1, 2, 3, 4)
    assert run_overall(load_runs([a])) == (11, 12, 13)
    with pytest.raises(ValueError, match=r"different categories \[\(1, 2, 3, 4\), \(11, 12, 13\)\]"):
        build_report([a, locomo], tmp_path / "out")
    summary = json.loads((locomo / "summary.json").read_text())
    assert "config" not in summary
