"""memtune-report says what a number stands on: LM failures counted apart, J's denominator, oracle runs labelled."""

from __future__ import annotations

import polars as pl
import pytest
from test_report import F1_A, F1_B, make_run

from memtune.optimize.report.app import build_report
from memtune.optimize.report.runs import load_runs


@pytest.fixture(autouse=True)
def no_figures(monkeypatch):
    import memtune.optimize.report.app as report

    monkeypatch.setattr(report, "plot_quality_vs_tokens", lambda *args, **kwargs: None)
    monkeypatch.setattr(report, "plot_per_category", lambda *args, **kwargs: None)


def test_lm_failures_have_their_own_counts_and_j_keeps_its_denominator(tmp_path):
    """Run b: question 0 (category 1) failed to answer, question 1 (category 2) failed to be judged.
    Judged categories 1-4: questions 0-3 and 5-8 (8). J counts both failures WRONG: n 8, labelled 6."""
    f1 = [0.0 if i == 0 else x for i, x in enumerate(F1_B)]
    run_a = make_run(tmp_path, "a", "pa", F1_A, judge=True)
    run_b = make_run(tmp_path, "b", "pb", f1, judge=True, failed_answers=(0,), failed_judge=(1,))
    md = build_report([run_a, run_b], tmp_path / "out", resamples=100).read_text()

    table = pl.read_parquet(tmp_path / "out" / "report.parquet")
    j = table.filter((pl.col("run") == "pb (b)") & (pl.col("category") == "overall") & (pl.col("metric") == "judge"))
    q = pl.read_parquet(run_b / "questions.parquet").filter(pl.col("category") <= 4)
    assert j["n"][0] == 8 and j["mean"][0] == pytest.approx(q["judge"].mean())
    labelled = [x > 0.4 for i, x in enumerate(f1) if i % 5 != 4 and i not in (0, 1)]
    assert q["judge"].sum() == sum(labelled)  # the two failures add nothing to the numerator

    section = md.split("## LM failures")[1].split("## Cost")[0]
    # run, failed answers, J over n, judged, judge failures, J over judged only
    assert f"| pb (b) | 1 | 8 | 6 | 1 | {sum(labelled) / 6:.3f} |" in section
    assert "| pa (a) | 0 | 8 | 8 | 0 |" in section
    assert "never an abstention" in section and "a judge failure or a failed answer counts WRONG" in md


def test_an_oracle_run_is_labelled_and_flagged(tmp_path):
    oracle = {"oracle": True, "oracle_stages": {"extractor": "observations"}}
    run_a = make_run(tmp_path, "a", "mem0_offline", F1_A)
    run_b = make_run(tmp_path, "b", "mem0_offline", F1_B, summary_extra=oracle)
    # a summary.json from before the flag: the resolved config says it replays observations
    old = {"config": {"policy": {"extractor": {"_target_": "memtune.policies.stages.extract.ObservationExtractor"}}}}
    run_c = make_run(tmp_path, "c", "mem0_offline", F1_B, summary_extra=old)
    runs = load_runs([run_a, run_b, run_c])
    assert [r.label for r in runs] == [
        "mem0_offline (a)",
        "mem0_offline [ORACLE: observations] (b)",
        "mem0_offline [ORACLE: observations] (c)",
    ]
    assert [r.oracle for r in runs] == [False, True, True]
    md = build_report([run_a, run_b, run_c], tmp_path / "out", resamples=50).read_text()
    assert "| mem0_offline [ORACLE: observations] (b) | mem0_offline [ORACLE: observations] |" in md
    assert "**yes**: extractor=observations" in md
    assert "**ORACLE runs: mem0_offline [ORACLE: observations] (b), mem0_offline [ORACLE: observations] (c).**" in md
    assert "### mem0_offline [ORACLE: observations] (b) − mem0_offline (a)" in md
    table = pl.read_parquet(tmp_path / "out" / "report.parquet")
    assert set(table.filter(pl.col("run").str.contains("ORACLE"))["policy"]) == {"mem0_offline [ORACLE: observations]"}
