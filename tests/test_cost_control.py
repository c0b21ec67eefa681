"""Cost control: the price table and dollars per phase (null, never 0, for an unpriced model), memtune-eval's
summary.json and MLflow figures, the dry run's projection (arithmetic by hand, and within 15% of a full fixture
run), parallel answers and judging equal to sequential ones, and sweep.budget_usd stopping a sweep. The LM is the
deterministic fake OpenAI server (benchmarks/fake_openai.py) on a local port."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pytest

from memtune.optimize.evaluation.prices import (
    MissingPriceWarning,
    Price,
    load_prices,
    price_for,
    usd_section,
)
from memtune.optimize.evaluation.projection import (
    ConversationCounts,
    Step,
    project_answers,
    project_ingest,
    project_wall,
)
from memtune.optimize.sweep.app import CONF_DIR

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from fake_openai import serve_in_thread  # noqa: E402


# ------------------------------------------------------------------------------------------------------ prices
def test_price_table_lookup_and_dollars_by_hand():
    prices = load_prices()
    mini = price_for("openai/gpt-4o-mini", prices)
    assert mini == Price(0.15, 0.60, 0.075)
    assert price_for("openai/gpt-4o-mini-2024-07-18", prices) == mini  # a dated snapshot: the undated price
    assert price_for("openai/local", prices) == Price(0.0, 0.0)
    assert price_for("openai/some-new-model", prices) is None and price_for(None, prices) is None
    # 800k uncached + 200k cached prompt tokens, 100k completion tokens at gpt-4o-mini:
    # 0.8 x 0.15 + 0.2 x 0.075 + 0.1 x 0.60 = 0.12 + 0.015 + 0.06
    assert mini.usd(1_000_000, 100_000, cached=200_000) == pytest.approx(0.195)
    assert Price(1.0, 2.0).usd(1_000_000, 0, cached=500_000) == pytest.approx(1.0)  # no cached price: input price


def test_a_malformed_price_file_names_the_entry(tmp_path):
    bad = tmp_path / "prices.yaml"
    bad.write_text("models:\n  my-model: {input: 1.0}\n")
    with pytest.raises(ValueError, match="my-model"):
        load_prices(bad)
    bad.write_text("models:\n  my-model: {input: 1.0, output: 2.0, outptu: 3}\n")
    with pytest.raises(ValueError, match="unknown keys"):
        load_prices(bad)


def row(calls, prompt, completion, cached=0):
    return {"calls": calls, "prompt_tokens": prompt, "completion_tokens": completion, "cached_prompt_tokens": cached}


COST = {
    "ingest": {"phases": {"extract": row(10, 1_000_000, 0), "decide": row(10, 0, 1_000_000), "embed": {"calls": 0}}},
    "answer": {"phases": {"answer": row(5, 2_000_000, 0)}},
    "judge": {"phases": {"judge": row(5, 1_000_000, 1_000_000)}},
}


def test_usd_per_phase_total_and_spent():
    prices = {"m": Price(1.0, 2.0), "j": Price(0.5, 0.5)}
    usd = usd_section(COST, "openai/m", "openai/j", prices)
    assert (usd["extract"], usd["decide"], usd["answer"], usd["judge"]) == (1.0, 2.0, 2.0, 1.0)
    assert usd["ingest"] == 3.0 and usd["total"] == 6.0 and usd["spent"] == 6.0 and usd["missing_prices"] == []
    # the ingestion came from the ingestion cache: the config still costs 6, this run paid 3
    assert usd_section(COST, "openai/m", "openai/j", prices, ingest_this_run={})["spent"] == 3.0


def test_an_unpriced_model_gets_null_dollars_and_a_warning_never_zero():
    prices = {"m": Price(1.0, 2.0)}
    with pytest.warns(MissingPriceWarning, match="'openai/judge-x'.*prices.yaml"):
        usd = usd_section(COST, "openai/m", "openai/judge-x", prices)
    assert usd["judge"] is None and usd["total"] is None and usd["spent"] is None
    assert usd["ingest"] == 3.0 and usd["missing_prices"] == ["openai/judge-x"]
    # an unpriced model that billed nothing (every call a cache hit) costs exactly 0, with no warning
    free = {"ingest": {"phases": {"extract": row(3, 0, 0)}}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert usd_section(free, "openai/unknown", None, {})["total"] == 0.0


# -------------------------------------------------------------------------------------------- the projection
def test_projection_arithmetic_by_hand():
    """One conversation of 10 pairs, 4 sampled: extraction calls 1 per pair, decisions at the second half's rate,
    tokens per call from the second half (pairs 2 and 3)."""
    steps = [
        Step("extract", "c", 0, 1, 100, 10),
        Step("extract", "c", 1, 1, 100, 10),
        Step("extract", "c", 2, 1, 200, 20),
        Step("extract", "c", 3, 1, 300, 20),
        Step("decide", "c", 1, 1, 50, 5),
        Step("decide", "c", 3, 1, 150, 15),  # second half: 1 decision in 2 pairs, 150 + 15 tokens a call
        Step("summarize", "c", 3, 1, 400, 40),
        Step("answer", "c", None, 2, 1000, 10),  # two questions answered, 500 prompt tokens a call
        Step("judge", "c", None, 1, 80, 8),  # one of them judged
    ]
    counts = [
        ConversationCounts(
            "c",
            pairs=10,
            pairs_sampled=4,
            folds=5,
            folds_sampled=1,
            questions=6,
            questions_sampled=2,
            judged=4,
            judged_sampled=1,
            memories_sampled=8,
            retrieved_sampled=4.0,
            context_tokens_sampled=200.0,
        )
    ]
    ingest = project_ingest(steps, counts)["c"]
    # extract: 4 sampled calls (700 / 60 tokens) + 6 more at the second half's 250 / 20 per call
    assert ingest["extract"] == {
        "calls": 10,
        "prompt_tokens": 700 + 6 * 250,
        "completion_tokens": 60 + 6 * 20,
        "cached_prompt_tokens": 0,
    }
    # decide: 2 sampled + 6 pairs x (1 call / 2 pairs) = 3 more at 150 / 15
    assert ingest["decide"]["calls"] == 5 and ingest["decide"]["prompt_tokens"] == 200 + 3 * 150
    # summarize: 5 refreshes in the whole conversation, 1 sampled: 4 more at 400 / 40
    assert ingest["summarize"]["calls"] == 5 and ingest["summarize"]["prompt_tokens"] == 400 + 4 * 400
    answers = project_answers(steps, counts, top_k=10)["c"]
    # store: 8 memories / 4 pairs x 10 pairs = 20 -> top-10 retrieved (4 in the sample) at 50 tokens a memory
    assert answers["answer"]["calls"] == 6 and answers["answer"]["prompt_tokens"] == 6 * (500 + 6 * 50)
    assert answers["judge"] == {"calls": 4, "prompt_tokens": 320, "completion_tokens": 32, "cached_prompt_tokens": 0}
    latency = {"extract": 1.0, "decide": 2.0, "summarize": 1.0, "answer": 1.0, "judge": 1.0}
    wall = project_wall({"c": ingest}, {"c": answers}, counts, latency, 0.1, 0.0, concurrency=4)
    # LM seconds 10 + 10 + 5 = 25, / 4 = 6.25; chain 10 x (0.5 x 2 + 0.1) = 11 -> chain-bound
    assert wall["ingest_bound"] == "chain" and wall["ingest_seconds"] == 11.0
    assert wall["answer_seconds"] == 2.5  # (6 + 4) x 1 s / 4
    assert (
        project_wall({"c": ingest}, {"c": answers}, counts, latency, 0.1, 0.0, concurrency=1)["total_seconds"] == 36.0
    )


# ------------------------------------------------------------------------------------- memtune-eval end to end
def eval_cfg(url: str, tmp: Path, *overrides: str):
    from hydra import compose, initialize_config_dir

    base = [
        "dataset=fixture",
        "policy=mem0_llm",
        "policy.summarizer.window=4",  # a refresh every 2 pairs: the fixture's 12 pairs refresh 6 times
        "lm=openai",
        f"lm.api_base={url}",
        "lm.model=openai/gpt-4o-mini",
        "lm.cache=false",
        "judge=openai",
        f"judge.lm.api_base={url}",
        "judge.lm.model=openai/gpt-4o-mini",
        "judge.lm.cache=false",
        f"cache_dir={tmp / 'cache'}",
        "ingest_cache=false",
        "progress=false",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="eval", overrides=[*base, *overrides])


def measured(summary: dict) -> dict:
    return {
        p: (r["calls"], r["prompt_tokens"], r["completion_tokens"])
        for part in ("ingest", "answer", "judge")
        for p, r in (summary["cost"][part] or {}).get("phases", {}).items()
        if r.get("calls")
    }


@pytest.fixture(scope="module")
def fixture_runs(tmp_path_factory):
    """The fixture through mem0_llm + judge at lm.max_concurrency 1 and 8, and a dry run sampling 4 of its 12 pairs
    and 4 of its 15 questions."""
    import polars as pl

    from memtune.optimize.evaluation.app import run

    tmp = tmp_path_factory.mktemp("cost")
    out = {}
    with serve_in_thread(latency=0.01) as url:
        for n in (8, 1):
            (tmp / f"c{n}").mkdir()
            summary = run(eval_cfg(url, tmp, f"lm.max_concurrency={n}"), tmp / f"c{n}")
            out[n] = (summary, pl.read_parquet(tmp / f"c{n}" / "questions.parquet"))
        (tmp / "dry").mkdir()
        cfg = eval_cfg(url, tmp, "dry_run=true", "dry_run_sample.pairs=4", "dry_run_sample.questions=4")
        out["dry"] = run(cfg, tmp / "dry")
    return tmp, out


def test_parallel_answers_and_judging_equal_the_sequential_run(fixture_runs):
    _, out = fixture_runs
    (par, par_frame), (seq, seq_frame) = out[8], out[1]
    assert par["scores"] == seq["scores"] and par["cost"]["ops"] == seq["cost"]["ops"]
    assert measured(par) == measured(seq) and par["cost"]["usd"] == seq["cost"]["usd"]
    # memory health from the per-session store sizes and stale retrievals (health.py), as the sequential run has it
    assert par["health"] is not None and par["health"] == seq["health"] and par.get("currency") == seq.get("currency")
    cols = ["qid", "prediction", "judge", "f1", "evidence_recall", "retrieved_provenance", "context_tokens"]
    cols += ["n_stale", "first_hit", "hit_at_5", "question_type"]
    assert par_frame.select(cols).rows() == seq_frame.select(cols).rows()
    checks = seq["judge_checks"]["judges"][seq["judge_checks"]["main"]]
    canaries = sum(checks["canaries"].values()) + sum(checks["canary_failures"].values())
    assert canaries > 0 and par["judge_checks"] == seq["judge_checks"]
    # categories 1-4 judged, then the canaries (judge_checks.py), every call billed
    assert seq["cost"]["judge"]["phases"]["judge"]["calls"] == 12 + canaries


def test_summary_dollars_are_the_billed_tokens_at_the_table_prices(fixture_runs):
    from memtune.optimize.sweep.run_record import summary_metrics

    _, out = fixture_runs
    summary = out[1][0]
    usd = summary["cost"]["usd"]
    by_hand = {p: (prompt * 0.15 + completion * 0.60) / 1e6 for p, (_, prompt, completion) in measured(summary).items()}
    for phase, value in by_hand.items():
        assert usd[phase] == pytest.approx(value, abs=1e-6)
    assert usd["total"] == pytest.approx(sum(by_hand.values()), abs=1e-5) and usd["total"] > 0
    assert usd["spent"] == usd["total"]  # no ingestion cache: this run paid everything
    assert summary["cost"]["tokens"]["total"] == sum(p + c for _, p, c in measured(summary).values())
    metrics = summary_metrics(summary)  # what the sweep logs to MLflow for a trial
    assert metrics["cost.usd.total"] == pytest.approx(usd["total"]) and "cost.usd.extract" in metrics


def test_dry_run_projects_the_full_fixture_run_within_15_percent(fixture_runs):
    tmp, out = fixture_runs
    dry, (full, _) = out["dry"], out[1]
    assert (tmp / "dry" / "dry_run.json").exists()
    assert dry["sample"]["pairs"] == 4 and dry["sample"]["questions"] == 4 and dry["dataset"]["pairs"] == 12
    truth = measured(full)
    projected = dry["projection"]["phases"]
    assert set(projected) == set(truth)
    assert {p: projected[p]["calls"] for p in truth} == {p: c for p, (c, _, _) in truth.items()}
    tokens = sum(p + c for _, p, c in truth.values())
    got = dry["projection"]["total"]["prompt_tokens"] + dry["projection"]["total"]["completion_tokens"]
    error = (got - tokens) / tokens
    print(f"dry run on the fixture: projected {got:,.0f} tokens, measured {tokens:,} ({error:+.1%})")
    assert abs(error) <= 0.15, (got, tokens)
    assert dry["dataset"]["canaries"] == truth["judge"][0] - 12  # the canaries, counted before any answer exists
    assert dry["projection"]["total"]["usd"] == pytest.approx(full["cost"]["usd"]["total"], rel=0.15)
    assert set(dry["wall"]) == {"1", "8"} and dry["wall"]["8"]["total_seconds"] <= dry["wall"]["1"]["total_seconds"]


# ------------------------------------------------------------------------------------------------- the budget
def llm_sweep(tmp_path, url: str, model: str) -> list[str]:
    """A retrieval-only sweep of the paper's LLM policy on the fixture, against the fake server at `url`, uncached."""
    return [
        f"cache_dir={tmp_path / 'cache'}",
        "dataset=fixture",
        f"sweep.storage=sqlite:///{tmp_path / 'optuna.db'}",
        "sweep.tune_conversations=null",
        "sweep.holdout_conversations=null",
        "sweep.heldout.enabled=false",
        "tracking=none",
        "search_space=retrieval_only",
        "policy=mem0_llm",
        "lm=openai",
        f"lm.api_base={url}",
        f"lm.model=openai/{model}",
        "lm.cache=false",
    ]


def test_sweep_budget_stops_starting_trials_and_prints_spend(tmp_path, capsys):
    from hydra import compose, initialize_config_dir

    from memtune.optimize.sweep.app import run_sweep

    with serve_in_thread() as url:
        base = [*llm_sweep(tmp_path, url, "gpt-4o-mini"), "sweep.n_trials=5"]
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            probe = compose(config_name="sweep", overrides=[*base, "sweep.study_name=probe"])
        # the first trial's projection is a dry run of the base config; its sample is the whole fixture here
        from memtune.optimize.data.locomo import load_locomo
        from memtune.optimize.evaluation.dry_run import dry_run

        one = dry_run(probe, load_locomo("data/fixture/fixture.json"), tmp_path / "probe", progress=False)
        trial_usd = one["projection"]["total"]["usd"]
        assert trial_usd > 0
        # room for the dry run's sample and one trial, not for a second: 1 trial runs, then the sweep stops
        budget = 2.5 * trial_usd
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="sweep", overrides=[*base, f"sweep.budget_usd={budget}"])
            result = run_sweep(cfg, tmp_path / "run", [*base, f"sweep.budget_usd={budget}"])
    printed = capsys.readouterr().out
    assert result["stopped"] == "budget" and result["finished"] == 1
    assert "[sweep] spent so far: $" in printed and f"of ${budget:.2f} budget" in printed
    assert "would exceed it: no more trials start" in printed
    import optuna

    study = optuna.load_study(study_name=str(cfg.sweep.study_name), storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    (trial,) = [t for t in study.trials if t.state.name == "COMPLETE"]
    spent = study.user_attrs["dry_run_usd"] + trial.user_attrs["usd_spent"]
    assert 0 < spent <= budget and trial.user_attrs["tokens_spent"] > 0


def test_a_budget_with_an_unpriced_model_is_refused(tmp_path):
    from hydra import compose, initialize_config_dir

    from memtune.optimize.sweep.app import run_sweep

    with serve_in_thread() as url:
        base = [
            *llm_sweep(tmp_path, url, "no-such-model"),
            "sweep.budget_usd=1.0",
            "dry_run_sample.pairs=2",
            "dry_run_sample.questions=1",
        ]
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="sweep", overrides=base)
            with pytest.warns(MissingPriceWarning), pytest.raises(ValueError, match="no price.*prices.yaml"):
                run_sweep(cfg, tmp_path / "run", base)


def test_sweep_dry_run_projects_trials_and_runs_none(tmp_path):
    from hydra import compose, initialize_config_dir

    from memtune.optimize.sweep.app import run_sweep

    data = json.loads((ROOT / "data" / "fixture" / "fixture.json").read_text())
    twin = json.loads(json.dumps(data[0])) | {"sample_id": "fixture-2"}
    (tmp_path / "two.json").write_text(json.dumps([data[0], twin]))
    with serve_in_thread() as url:
        base = [
            f"cache_dir={tmp_path / 'cache'}",
            f"dataset.path={tmp_path / 'two.json'}",
            f"sweep.storage=sqlite:///{tmp_path / 'optuna.db'}",
            "sweep.tune_conversations=[fixture-1]",
            "sweep.holdout_conversations=[fixture-2]",
            "sweep.heldout.baselines=[]",
            "sweep.n_trials=10",
            "tracking=none",
            "policy=mem0_llm",
            "lm=openai",
            f"lm.api_base={url}",
            "lm.model=openai/gpt-4o-mini",
            "dry_run=true",
            "dry_run_sample.pairs=4",
            "dry_run_sample.questions=4",
            "policy.summarizer.window=4",
        ]
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            out = run_sweep(compose(config_name="sweep", overrides=base), tmp_path / "run", base)
    assert not (tmp_path / "optuna.db").exists()  # no study, no trial
    saved = json.loads((tmp_path / "run" / "sweep_dry_run.json").read_text())
    trial = saved["trial"]["total"]["usd"]
    assert trial > 0 and saved["n_trials"] == 10
    assert saved["sweep_usd"]["upper"] == pytest.approx(10 * trial + saved["report_rescoring_usd"], abs=1e-3)
    assert saved["sweep_usd"]["lower"] < saved["sweep_usd"]["upper"]
    assert out["dry_run"]["dataset"]["conversations"] == ["fixture-1", "fixture-2"]
