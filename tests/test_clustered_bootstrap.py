"""The two-stage (clustered) bootstrap: conversations first, then questions within them. Hand-checkable cases,
and the report's CIs and paired differences use the questions' conversations as the clusters."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from test_report import F1_A, F1_B, make_run

from memtune.optimize.report.app import build_report
from memtune.optimize.report.stats import bootstrap_ci, paired_bootstrap, resample_means


def test_two_constant_conversations_resample_to_zero_half_or_one():
    """Conversation A: 10 questions scored 0; B: 10 scored 1. Stage 1 draws (A, A), (A, B), (B, A) or (B, B) with
    probability 1/4 each; stage 2 cannot change a constant conversation. So every resample mean is 0, 0.5 or 1,
    with probabilities 1/4, 1/2, 1/4, and the 95% CI is [0, 1]. Resampling the 20 questions alone gives
    Binomial(20, 1/2)/20, whose 95% CI is about [0.3, 0.7]: too narrow for two conversations."""
    values = [0.0] * 10 + [1.0] * 10
    clusters = ["A"] * 10 + ["B"] * 10
    means = resample_means(values, resamples=4000, seed=0, clusters=clusters)
    assert set(np.unique(means)) == {0.0, 0.5, 1.0}
    assert (means == 0.5).mean() == pytest.approx(0.5, abs=0.03)
    assert (means == 0.0).mean() == pytest.approx(0.25, abs=0.03)
    assert bootstrap_ci(values, 4000, seed=0, clusters=clusters) == (0.5, 0.0, 1.0)
    _, lo, hi = bootstrap_ci(values, 4000, seed=0)  # naive: questions as if independent
    assert 0.25 <= lo <= 0.35 and 0.65 <= hi <= 0.75


def test_unequal_conversations_weigh_by_their_questions():
    """A: 1 question scored 1; B: 3 questions scored 0. Draws: (A, A) -> 1, (A, B)/(B, A) -> 1/4, (B, B) -> 0."""
    means = resample_means([1.0, 0.0, 0.0, 0.0], resamples=2000, seed=1, clusters=["A", "B", "B", "B"])
    assert set(np.unique(means)) == {0.0, 0.25, 1.0}


def test_within_conversation_spread_is_resampled_too():
    """One conversation: stage 1 always draws it, stage 2 is the plain question bootstrap (same spread)."""
    values = [0.0] * 50 + [1.0] * 50
    _, lo, hi = bootstrap_ci(values, 2000, seed=0, clusters=["c"] * 100)
    assert 0.38 < lo < 0.44 and 0.56 < hi < 0.62


def test_clustered_ci_is_wider_when_conversations_differ_and_holds_the_mean():
    rng = np.random.default_rng(0)
    conv_means = [0.1, 0.3, 0.5, 0.7, 0.9]  # conversations that differ: most of the variance is between them
    values = np.concatenate([np.clip(m + 0.05 * rng.standard_normal(40), 0, 1) for m in conv_means])
    clusters = np.repeat([f"conv-{i}" for i in range(5)], 40)
    mean, lo, hi = bootstrap_ci(values, 2000, seed=7, clusters=clusters)
    naive_mean, naive_lo, naive_hi = bootstrap_ci(values, 2000, seed=7)
    assert mean == naive_mean == pytest.approx(values.mean())
    assert lo < mean < hi
    assert (hi - lo) > 3 * (naive_hi - naive_lo)
    assert bootstrap_ci(values, 2000, seed=7, clusters=clusters) == (mean, lo, hi)  # deterministic with a seed
    assert bootstrap_ci(values, 2000, seed=8, clusters=clusters) != (mean, lo, hi)


def test_blocks_do_not_change_the_distribution(monkeypatch):
    import memtune.optimize.report.stats as stats

    values = np.random.default_rng(3).random(60)
    clusters = np.repeat(["a", "b", "c"], 20)
    monkeypatch.setattr(stats, "_MAX_ELEMENTS", 200)  # 3 clusters x 20 -> blocks of 3 resamples
    means = resample_means(values, resamples=301, seed=2, clusters=clusters)
    assert means.shape == (301,) and np.array_equal(means, resample_means(values, 301, seed=2, clusters=clusters))
    assert np.all((means >= values.min()) & (means <= values.max()))


def test_paired_difference_concentrated_in_one_conversation_is_not_certain():
    """Run b gains 0.5 on every question of conv-0 and nothing elsewhere (3 conversations of 10): a naive paired
    bootstrap calls the gain certain (CI excludes 0), the clustered one draws resamples without conv-0 (diff 0)."""
    a = np.zeros(30)
    b = np.where(np.arange(30) < 10, 0.5, 0.0)
    clusters = np.repeat(["conv-0", "conv-1", "conv-2"], 10)
    diff, lo, hi, p_gt0 = paired_bootstrap(a, b, 2000, seed=0, clusters=clusters)
    assert diff == pytest.approx(0.5 / 3) and lo == 0.0 and hi > diff
    assert p_gt0 == pytest.approx(1 - (2 / 3) ** 3, abs=0.03)  # P(conv-0 drawn at least once in 3 draws)
    _, naive_lo, _, _ = paired_bootstrap(a, b, 2000, seed=0)
    assert naive_lo > 0


def test_cluster_labels_must_match_the_values():
    with pytest.raises(ValueError, match="3 labels for 2 values"):
        bootstrap_ci([0.1, 0.2], 10, 0, clusters=["a", "b", "c"])


def test_report_cis_resample_conversations(tmp_path, monkeypatch):
    import memtune.optimize.report.app as report

    monkeypatch.setattr(report, "plot_quality_vs_tokens", lambda *args, **kwargs: None)
    monkeypatch.setattr(report, "plot_per_category", lambda *args, **kwargs: None)
    conversations = ["conv-1"] * 5 + ["conv-2"] * 5
    run_a = make_run(tmp_path, "a", "pa", F1_A, conversations=conversations)
    run_b = make_run(tmp_path, "b", "pb", F1_B, conversations=conversations)
    md = build_report([run_a, run_b], tmp_path / "out", resamples=500, seed=4).read_text()
    assert "two-stage resamples" in md and "draws the conversations with replacement, then the questions" in md
    assert "paired two-stage bootstrap CI (conversations, then questions within them)" in md

    table = pl.read_parquet(tmp_path / "out" / "report.parquet")
    row = table.filter((pl.col("run") == "pa (a)") & (pl.col("category") == "overall") & (pl.col("metric") == "f1"))
    q = pl.read_parquet(run_a / "questions.parquet").filter(pl.col("category") <= 4)
    expected = bootstrap_ci(q["f1"].to_numpy(), 500, 4, clusters=q["conversation_id"].to_numpy())
    assert (row["mean"][0], row["ci_low"][0], row["ci_high"][0]) == pytest.approx(expected)
    assert expected != pytest.approx(bootstrap_ci(q["f1"].to_numpy(), 500, 4))  # the clusters made a difference

    paired = pl.read_parquet(tmp_path / "out" / "paired.parquet")
    got = paired.filter((pl.col("category") == "overall") & (pl.col("metric") == "f1")).row(0, named=True)
    qb = pl.read_parquet(run_b / "questions.parquet").filter(pl.col("category") <= 4)
    want = paired_bootstrap(q["f1"], qb["f1"], 500, 4, clusters=q["conversation_id"].to_numpy())
    assert (got["diff"], got["ci_low"], got["ci_high"], got["p_gt0"]) == pytest.approx(want)
