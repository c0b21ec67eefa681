"""memtune-report: the bootstrap functions on hand-checkable cases, and a report over two fake run dirs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from memtune.optimize.report.app import build_report, main
from memtune.optimize.report.runs import load_run
from memtune.optimize.report.stats import bootstrap_ci, paired_bootstrap, resample_means

# ---------------------------------------------------------------------------------------------------------------
# bootstrap


def test_constant_values_give_a_zero_width_ci_at_that_value():
    mean, lo, hi = bootstrap_ci([0.3] * 50, resamples=500, seed=1)
    assert lo == hi
    assert mean == pytest.approx(0.3, abs=1e-12) and lo == pytest.approx(0.3, abs=1e-12)


def test_ci_of_a_known_sample_contains_the_mean_and_is_sane():
    values = [0.0] * 50 + [1.0] * 50  # mean 0.5, standard error 0.05: the 95% CI is about 0.5 +- 0.1
    mean, lo, hi = bootstrap_ci(values, resamples=2000, seed=0)
    assert mean == 0.5
    assert lo < mean < hi
    assert 0.38 < lo < 0.44 and 0.56 < hi < 0.62


def test_a_single_value_and_a_wider_alpha():
    assert bootstrap_ci([0.7], resamples=100, seed=0) == (0.7, 0.7, 0.7)
    _, lo95, hi95 = bootstrap_ci(np.arange(20.0), resamples=1000, seed=3)
    _, lo50, hi50 = bootstrap_ci(np.arange(20.0), resamples=1000, seed=3, alpha=0.5)
    assert lo95 < lo50 < hi50 < hi95


def test_seeded_results_are_reproducible():
    rng = np.random.default_rng(42)
    values = rng.random(300)
    assert bootstrap_ci(values, 1000, seed=7) == bootstrap_ci(values, 1000, seed=7)
    assert bootstrap_ci(values, 1000, seed=7) != bootstrap_ci(values, 1000, seed=8)
    a, b = rng.random(300), rng.random(300)
    assert paired_bootstrap(a, b, 1000, seed=7) == paired_bootstrap(a, b, 1000, seed=7)


def test_resampling_in_blocks_keeps_memory_bounded(monkeypatch):
    """Many resamples of a large sample are drawn block by block; the result is still deterministic."""
    import memtune.optimize.report.stats as stats

    monkeypatch.setattr(stats, "_MAX_ELEMENTS", 1000)  # forces blocks of 2 rows for n=400
    values = np.random.default_rng(0).random(400)
    means = resample_means(values, resamples=101, seed=5)
    assert means.shape == (101,) and np.all((means > 0.3) & (means < 0.7))
    assert np.array_equal(means, resample_means(values, resamples=101, seed=5))


def test_paired_difference_of_identical_runs_is_exactly_zero():
    values = np.random.default_rng(1).random(200)
    assert paired_bootstrap(values, values.copy(), resamples=500, seed=0) == (0.0, 0.0, 0.0, 0.0)


def test_paired_difference_of_a_constant_shift():
    a = np.random.default_rng(2).random(100)
    diff, lo, hi, p_gt0 = paired_bootstrap(a, a + 0.25, resamples=500, seed=0)
    assert diff == pytest.approx(0.25) and lo == pytest.approx(0.25) and hi == pytest.approx(0.25)
    assert p_gt0 == 1.0
    # a shift that varies: a 10-point gain on half the questions, none on the rest
    b = a + np.where(np.arange(100) % 2 == 0, 0.1, 0.0)
    diff, lo, hi, p_gt0 = paired_bootstrap(a, b, resamples=1000, seed=0)
    assert diff == pytest.approx(0.05) and 0 < lo < 0.05 < hi and p_gt0 == 1.0


def test_bad_inputs_fail_loudly():
    with pytest.raises(ValueError, match="empty"):
        bootstrap_ci([], 100, 0)
    with pytest.raises(ValueError, match="non-finite"):
        bootstrap_ci([0.1, float("nan")], 100, 0)
    with pytest.raises(ValueError, match="length"):
        paired_bootstrap([0.1, 0.2], [0.1], 100, 0)


# ---------------------------------------------------------------------------------------------------------------
# fake runs


def make_run(
    root: Path,
    name: str,
    policy: str,
    f1: list[float],
    judge: bool = False,
    qids=None,
    drop: str | None = None,
    conversations=None,
    failed_answers=(),
    failed_judge=(),
    summary_extra: dict | None = None,
) -> Path:
    """A tiny memtune-eval run dir: 10 questions, two per category 1-5 (one conversation unless `conversations`).
    `failed_answers` / `failed_judge`: question indexes whose answer / judgement failed (scored as the eval does)."""
    run = root / name
    run.mkdir(parents=True)
    n = len(f1)
    categories = [1 + i % 5 for i in range(n)]
    judged = [judge and c != 5 for c in categories]
    frame = pl.DataFrame(
        {
            "qid": qids or [f"conv-1:q{i}" for i in range(n)],
            "conversation_id": conversations or ["conv-1"] * n,
            "category": categories,
            "category_name": [
                ["multi-hop", "temporal", "open-domain", "single-hop", "adversarial"][c - 1] for c in categories
            ],
            "f1": f1,
            "f1_squad": [min(1.0, x + 0.05) for x in f1],
            "bleu1": [x / 2 for x in f1],
            # question 2 (category 3) has no evidence
            "evidence_recall": [None if i == 2 else (i % 3) / 2 for i in range(n)],
            "judge": [
                (0.0 if i in failed_answers or i in failed_judge else float(x > 0.4)) if j else None
                for i, (x, j) in enumerate(zip(f1, judged))
            ],
            "judge_failed": [i in failed_judge for i in range(n)],
            "answer_failed": [i in failed_answers for i in range(n)],
            "abstained": [c == 5 and i % 2 == 0 and i not in failed_answers for i, c in enumerate(categories)],
            "context_tokens": [100 + 10 * i for i in range(n)],
            "n_retrieved": [5] * n,
            "seconds": [0.001 * (i + 1) for i in range(n)],
        },
        schema_overrides={"evidence_recall": pl.Float64, "judge": pl.Float64},
    )
    if drop:
        frame = frame.drop(drop)
    frame.write_parquet(run / "questions.parquet")
    phase = {
        "calls": 0,
        "cached_calls": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "failures": 0,
        "steps": n,
        "seconds_total": 0.01,
        "seconds_p50": 0.001,
        "seconds_p95": 0.002,
    }
    summary = {
        "policy": policy,
        "dataset": {"name": "fake", "sha256": "abc123", "questions": n},
        "scores": {},
        "judge": {"model": "fake-judge" if judge else None},
        "cost": {
            "memories_stored": 42,
            "ops": {"ADD": 42, "UPDATE": 1, "DELETE": 0, "NOOP": 3},
            "ingest": {
                "phases": {"extract": dict(phase, calls=7, prompt_tokens=700, completion_tokens=70), "decide": phase}
            },
            "answer": {"phases": {"answer": phase}},
            "judge": None,
        },
        "lm_requests": {},
        "ingest": {"turns": 20, "message_pairs": 10, "seconds": 2.0, "turns_per_s": 10.0, "cache_hit": False},
        **(summary_extra or {}),
    }
    (run / "summary.json").write_text(json.dumps(summary))
    return run


@pytest.fixture
def no_figures(monkeypatch):
    """The figures are checked once, end to end; the other report tests skip drawing them (speed)."""
    import memtune.optimize.report.app as report

    monkeypatch.setattr(report, "plot_quality_vs_tokens", lambda *args, **kwargs: None)
    monkeypatch.setattr(report, "plot_per_category", lambda *args, **kwargs: None)


F1_A = [0.0, 0.5, 1.0, 0.2, 0.0, 0.3, 0.6, 0.0, 0.9, 0.0]
F1_B = [0.1, 0.5, 1.0, 0.4, 0.0, 0.5, 0.6, 0.2, 0.9, 0.0]


def test_report_end_to_end(tmp_path, capsys):
    run_a = make_run(tmp_path, "run_a", "mem0_offline", F1_A)
    run_b = make_run(tmp_path, "run_b", "raw_turns", F1_B, judge=True)
    out = tmp_path / "report"
    main([str(run_a), str(run_b), "--out", str(out), "--resamples", "300", "--seed", "3"])

    for name in ("report.md", "report.parquet", "paired.parquet", "quality_vs_tokens.png", "per_category.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "quality_vs_tokens.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1] == str(out / "report.md")  # the path is printed last, after the report itself
    assert printed[0] == "# memtune report"

    table = pl.read_parquet(out / "report.parquet")
    assert {"run", "category", "metric", "mean", "ci_low", "ci_high", "n"} <= set(table.columns)
    assert set(table["run"]) == {"mem0_offline (run_a)", "raw_turns (run_b)"}
    for run_dir, label in ((run_a, "mem0_offline (run_a)"), (run_b, "raw_turns (run_b)")):
        q = pl.read_parquet(run_dir / "questions.parquet")
        mine = table.filter(pl.col("run") == label)

        def row(category, metric, mine=mine, label=label):
            hit = mine.filter((pl.col("category") == category) & (pl.col("metric") == metric))
            assert hit.height == 1, (label, category, metric)
            return hit.row(0, named=True)

        overall = q.filter(pl.col("category") <= 4)
        for metric in ("f1", "f1_squad", "bleu1", "context_tokens"):
            r = row("overall", metric)
            assert r["mean"] == pytest.approx(overall[metric].mean()) and r["n"] == 8
            assert r["ci_low"] <= r["mean"] <= r["ci_high"]
        r = row("overall", "evidence_recall")  # over the questions with evidence only
        assert r["n"] == 7 and r["mean"] == pytest.approx(overall["evidence_recall"].drop_nulls().mean())
        for category in (1, 2, 4):
            assert row(str(category), "f1")["mean"] == pytest.approx(
                q.filter(pl.col("category") == category)["f1"].mean()
            )
        r = row("5", "abstained")  # category 5 is scored by abstention, not F1
        assert r["mean"] == pytest.approx(q.filter(pl.col("category") == 5)["abstained"].cast(pl.Float64).mean())
        assert mine.filter((pl.col("category") == "5") & (pl.col("metric") == "f1")).height == 0
    judged = table.filter(pl.col("metric") == "judge")
    assert set(judged["run"]) == {"raw_turns (run_b)"}  # run_a has no judge scores: no rows, no zeros

    paired = pl.read_parquet(out / "paired.parquet")
    f1 = paired.filter((pl.col("category") == "overall") & (pl.col("metric") == "f1")).row(0, named=True)
    qa, qb = (pl.read_parquet(d / "questions.parquet").filter(pl.col("category") <= 4) for d in (run_a, run_b))
    assert f1["diff"] == pytest.approx(qb["f1"].mean() - qa["f1"].mean())
    assert f1["n"] == 8 and f1["ci_low"] >= 0 and f1["p_gt0"] > 0.5

    md = (out / "report.md").read_text()
    assert "raw_turns (run_b) − mem0_offline (run_a)" in md
    assert "CI excludes 0" in md and "Category 5 (adversarial)" in md
    assert "quality_vs_tokens.png" in md and "per_category.png" in md
    assert "| 7 (770) |" in md  # LM calls (prompt + completion tokens) of the extract phase, from summary.json
    assert "**yes**" in md  # run_b's F1 gain: the paired CI excludes 0


def test_identical_runs_pair_to_zero_and_the_report_says_so(tmp_path, no_figures):
    run_a = make_run(tmp_path, "a", "p", F1_A)
    run_b = make_run(tmp_path, "b", "p", F1_A)
    build_report([run_a, run_b], tmp_path / "out", resamples=200)
    paired = pl.read_parquet(tmp_path / "out" / "paired.parquet")
    assert paired.height > 0
    assert (paired["diff"] == 0).all() and (paired["ci_low"] == 0).all() and (paired["ci_high"] == 0).all()
    assert not paired["excludes_zero"].any()
    assert "No difference has a 95% CI that excludes 0" in (tmp_path / "out" / "report.md").read_text()


def test_baseline_option_and_adversarial_overall(tmp_path, no_figures):
    run_a = make_run(tmp_path, "a", "pa", F1_A)
    run_b = make_run(tmp_path, "b", "pb", F1_B)
    build_report([run_a, run_b], tmp_path / "out", baseline=run_b, resamples=100, include_adversarial=True)
    paired = pl.read_parquet(tmp_path / "out" / "paired.parquet")
    assert set(paired["baseline"]) == {"pb (b)"} and set(paired["run"]) == {"pa (a)"}
    table = pl.read_parquet(tmp_path / "out" / "report.parquet")
    overall_f1 = table.filter((pl.col("category") == "overall") & (pl.col("metric") == "f1"))
    assert overall_f1["n"].to_list() == [10, 10]  # categories 1-5


def test_mismatched_qids_raise_a_value_error_naming_the_problem(tmp_path, no_figures):
    run_a = make_run(tmp_path, "a", "p", F1_A)
    qids = [f"conv-1:q{i}" for i in range(8)] + ["conv-2:q0", "conv-2:q1"]
    run_b = make_run(tmp_path, "b", "p", F1_B, qids=qids)
    with pytest.raises(ValueError, match=r"4 qids differ \(2 only in the baseline, 2 only in b"):
        build_report([run_a, run_b], tmp_path / "out", resamples=50)


def test_a_missing_metric_column_names_the_column_and_the_run(tmp_path, capsys):
    run_a = make_run(tmp_path, "a", "p", F1_A)
    run_b = make_run(tmp_path, "b_no_bleu", "p", F1_B, drop="bleu1")
    with pytest.raises(ValueError, match=r"b_no_bleu/questions.parquet lacks column\(s\) 'bleu1'"):
        load_run(run_b)
    with pytest.raises(SystemExit) as exit_info:
        main([str(run_a), str(run_b), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "'bleu1'" in err and "b_no_bleu" in err


def test_nulls_in_a_metric_that_must_not_have_them_fail(tmp_path):
    run = make_run(tmp_path, "a", "p", F1_A)
    frame = pl.read_parquet(run / "questions.parquet").with_columns(
        pl.when(pl.col("qid") == "conv-1:q0").then(None).otherwise(pl.col("f1")).alias("f1")
    )
    frame.write_parquet(run / "questions.parquet")
    with pytest.raises(ValueError, match=r"column 'f1' has 1 null"):
        load_run(run)


def test_a_missing_run_file_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no summary.json"):
        load_run(tmp_path / "empty")
