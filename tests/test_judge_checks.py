"""A judge you can check: lenient and strict prompts, any number of judges, canary answers made from gold answers
(vague-but-wrong, wrong entity) whose accept rate is reported beside J, and the judges' agreement (percent, Cohen's
kappa). Pure functions with hand-checked values; DummyLM judges for the runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from compile_support import CONF_DIR, ScriptedLM, answer, last, system
from hydra import compose, initialize_config_dir

from memtune.optimize.evaluation.agreement import agreement, cohens_kappa, percent_agreement
from memtune.optimize.evaluation.canaries import (
    answer_type,
    entities,
    entity_pool,
    proper_nouns,
    session_dates,
    vague_canary,
    wrong_entity_canary,
)
from memtune.optimize.evaluation.judge import Judge, JudgeAnswer, JudgeAnswerStrict

TURNS = ["I moved from Sweden to Boston last year.", "My friend Matt Patterson came along.", "Single and happy!"]
NAMES = proper_nouns(TURNS)


def test_names_are_capitalised_runs_after_a_lowercase_word():
    assert NAMES == {"Sweden", "Boston", "Matt Patterson"}  # not "Single" (only ever a sentence start), not "I"
    assert [(s, t) for _, _, s, t in entities("The week before 9 June 2023, in Boston", NAMES)] == [
        ("9 June 2023", "dmy"),
        ("Boston", "name"),
    ]
    assert [t for *_, t in entities("June 2023, 2022, 4 years, last week, Friday")] == [
        "my",
        "year",
        "number",
        "relative",
        "weekday",
    ]
    assert session_dates(["1:56 pm on 8 May, 2023", "no date"]) == ["8 May 2023"]


def test_vague_canaries_by_answer_type():
    assert answer_type("7 May 2023") == "date" and vague_canary("7 May 2023") == "sometime last year"
    assert vague_canary("2022") == "a while ago"  # "last year" could be right for a bare year
    assert vague_canary("4 years") == "several"
    assert vague_canary("Sweden", NAMES) == "someone or something they mentioned"
    assert vague_canary("Single", NAMES) == "a few different things"  # not a name: the conversation never says so
    assert vague_canary("pottery, camping") == "a few different things"


def test_wrong_entity_canaries_swap_for_another_of_the_same_type_from_the_conversation():
    pool = entity_pool(["7 May 2023", "25 May 2023", "2022", "4 years", "Sweden"], NAMES, ["Caroline"], ["8 May 2023"])
    assert pool == {
        "dmy": ["7 May 2023", "25 May 2023", "8 May 2023"],
        "my": [],
        "dm": [],
        "year": ["2022"],
        "name": ["Sweden", "Caroline"],
        "number": ["4"],
        "weekday": [],
        "relative": [],
    }
    canary = wrong_entity_canary("The week before 7 May 2023", pool, "conv:q1", NAMES)
    assert canary in ("The week before 25 May 2023", "The week before 8 May 2023")
    assert canary == wrong_entity_canary("The week before 7 May 2023", pool, "conv:q1", NAMES)  # deterministic
    assert wrong_entity_canary("Sweden", pool, "q", NAMES) == "Caroline"  # the only other name
    assert wrong_entity_canary("2022", pool, "q", NAMES) is None  # no other year in the conversation
    assert wrong_entity_canary("pottery, camping", pool, "q", NAMES) is None  # no entity to swap
    assert wrong_entity_canary("Sweden and Caroline", pool, "q", NAMES) is None  # never "Caroline and Caroline"


def test_agreement_and_kappa_by_hand():
    a = [True, True, False, False, None]
    b = [True, False, False, False, True]
    # 4 paired items, 3 alike: p_o = 0.75; p_a = 0.5, p_b = 0.25: p_e = 0.125 + 0.375 = 0.5; kappa = 0.25 / 0.5
    assert percent_agreement(a, b) == 0.75 and cohens_kappa(a, b) == 0.5
    assert agreement("x", a, "y", b) == {"a": "x", "b": "y", "n": 4, "percent_agreement": 0.75, "kappa": 0.5}
    assert cohens_kappa([True, True], [True, True]) is None  # p_e = 1: chance cannot be told apart
    assert cohens_kappa([True, False], [False, True]) == -1.0
    assert percent_agreement([None], [True]) is None
    with pytest.raises(ValueError, match="same items"):
        percent_agreement([True], [True, False])


def test_judge_prompts():
    assert Judge(lm=None).predict.signature.instructions == JudgeAnswer.instructions
    strict = Judge(lm=None, prompt="strict")
    assert strict.predict.signature.instructions == JudgeAnswerStrict.instructions and strict.name == "strict"
    assert "vaguer than the gold answer" in JudgeAnswerStrict.instructions
    with pytest.raises(ValueError, match=r"judge.prompt='harsh'.*\['lenient', 'strict'\]"):
        Judge(lm=None, prompt="harsh")


def judge_lm(messages):
    """Lenient prompt: everything CORRECT. Strict prompt: CORRECT only when the answer is the gold answer."""
    text = last(messages)
    gold = re.search(r"\[\[ ## gold_answer ## \]\]\n(.*?)\n\n", text, re.S).group(1)
    said = re.search(r"\[\[ ## generated_answer ## \]\]\n(.*?)\n\n", text, re.S).group(1)
    strict = "vaguer than the gold answer" in system(messages)
    return answer(reasoning="checked", label="CORRECT" if not strict or gold == said else "WRONG")


def test_eval_with_two_judges_reports_canaries_and_agreement(tmp_path, monkeypatch):
    monkeypatch.setattr("memtune.policies.lm.make_lm", lambda **kwargs: ScriptedLM(judge_lm))
    from memtune.optimize.evaluation.app import run

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "eval",
            overrides=[
                "dataset=fixture",
                "judge=openai",
                "judges=strict",
                f"cache_dir={tmp_path / 'cache'}",
                "progress=false",
                "judge_checks.canaries=6",
            ],
        )
    summary = run(cfg, tmp_path)
    checks = summary["judge_checks"]
    lenient, strict = checks["judges"]["lenient"], checks["judges"]["strict"]
    assert checks["main"] == "lenient" and lenient["J"] == summary["scores"]["overall"]["judge"] == 1.0
    assert lenient["canary_accept_rate"] == {"vague": 1.0, "wrong_entity": 1.0}  # the lenient judge takes anything
    assert strict["canary_accept_rate"] == {"vague": 0.0, "wrong_entity": 0.0}
    assert lenient["canaries"]["vague"] == 6 and strict["prompt"] == "strict"
    assert summary["judge"]["canary_accept_rate"] == lenient["canary_accept_rate"]  # beside J
    assert strict["J"] < 1.0  # the extractive answerer rarely says the gold answer word for word
    (pair,) = checks["agreement"]
    assert (pair["a"], pair["b"]) == ("lenient", "strict") and pair["percent_agreement"] == strict["J"]
    assert pair["kappa"] == 0.0  # the lenient judge says CORRECT to everything: its agreement is chance agreement
    rows = json.loads(json.dumps(summary))["judge_checks"]
    assert rows == checks and (tmp_path / "canaries.parquet").is_file()
    # the extra judge's calls are metered apart (its labels of the run's answers and its canaries) and
    # priced into the run's cost; the main judge's are cost.judge, as before
    calls = strict["cost"]["phases"]["judge"]["calls"]
    assert calls == summary["scores"]["overall"]["judge_n"] + sum(strict["canaries"].values()) == 12 + 8
    assert "cost" not in lenient
    usd = summary["cost"]["usd"]
    assert usd["judges"] == 0.0 and usd["models"]["judges"] == {"strict": "dummy"}  # DummyLM bills 0 tokens


def test_extra_judges_are_priced_into_the_run_total_and_spent():
    import warnings

    from memtune.optimize.evaluation.prices import MissingPriceWarning, Price, add_judges

    def cost():
        return {
            "usd": {"total": 1.0, "spent": 0.5, "missing_prices": [], "models": {"policy": "p", "judge": "j"}},
            "tokens": {"total": 1000, "spent": 400},
        }

    meter = {
        "phases": {
            "judge": {
                "calls": 3,
                "prompt_tokens": 2_000_000,
                "completion_tokens": 100_000,
                "replayed_prompt_tokens": 1_000_000,
                "replayed_completion_tokens": 0,
            }
        }
    }
    prices = {"m": Price(input=0.15, output=0.60)}
    c = cost()
    add_judges(c, {"strict": {"model": "openai/m", "cost": meter}}, prices)
    # total: (3M prompt x 0.15 + 0.1M x 0.60) / 1M = 0.51; spent: the replayed 1M is free -> 0.36
    assert c["usd"]["judges"] == 0.51 and c["usd"]["total"] == 1.51 and c["usd"]["spent"] == 0.86
    assert c["tokens"] == {"total": 1000 + 3_100_000, "spent": 400 + 2_100_000}
    c = cost()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        add_judges(c, {"strict": {"model": "unpriced", "cost": meter}}, prices)
    assert c["usd"]["judges"] is None and c["usd"]["total"] is None and c["usd"]["spent"] is None  # never $0
    assert c["usd"]["missing_prices"] == ["unpriced"] and any(w.category is MissingPriceWarning for w in caught)
    c = cost()
    add_judges(c, {}, prices)
    assert c == cost()  # no extra judge: nothing changes


def test_judges_without_a_main_judge_are_refused(tmp_path):
    from memtune.optimize.evaluation.judge_checks import build_judges

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("eval", overrides=["dataset=fixture", "judges=strict"])
    with pytest.raises(ValueError, match="set judge=openai too"):
        build_judges(cfg, None)
    assert build_judges(compose_none(), None) == []


def compose_none():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("eval", overrides=["dataset=fixture"])


def test_the_report_shows_canary_rates_beside_j_and_the_agreement():
    import polars as pl

    from memtune.optimize.report.judges import judge_sections
    from memtune.optimize.report.runs import Run

    checks = {
        "main": "lenient",
        "judges": {
            "lenient": {
                "prompt": "lenient",
                "model": "m",
                "J": 0.9,
                "canary_accept_rate": {"vague": 0.8, "wrong_entity": 0.5},
                "canaries": {"vague": 10, "wrong_entity": 8},
            },
            "strict": {
                "prompt": "strict",
                "model": "m",
                "J": 0.6,
                "canary_accept_rate": {"vague": 0.0, "wrong_entity": None},
                "canaries": {"vague": 10, "wrong_entity": 0},
            },
        },
        "agreement": [{"a": "lenient", "b": "strict", "n": 20, "percent_agreement": 0.7, "kappa": 0.4}],
    }
    runs = [Run(Path("a"), "a", {"judge_checks": checks}, pl.DataFrame()), Run(Path("b"), "b", {}, pl.DataFrame())]
    md = "\n".join(judge_sections(runs))
    assert "| a | lenient (J) | lenient | m | 0.900 | 0.800 (n=10) | 0.500 (n=8) |" in md
    assert "| a | strict | strict | m | 0.600 | 0.000 (n=10) | n/a (n=0) |" in md
    assert "| a | lenient | strict | 20 | 0.700 | 0.400 |" in md
    assert judge_sections(runs[1:]) == []  # no judge: no section


class SlowJudge:
    """A judge with no LM: CORRECT when the answer shares a word with the gold answer; it records how many of its
    calls overlap in time."""

    def __init__(self, name: str):
        import threading

        from memtune.policies.lm import CostMeter

        self.name, self.prompt, self.lm, self.meter = name, name, None, CostMeter()
        self._lock, self.in_flight, self.most_in_flight = threading.Lock(), 0, 0

    def score(self, qid, question, gold, prediction):
        import time

        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(0.01)
        with self._lock:
            self.in_flight -= 1
        return float(bool(set(str(gold).lower().split()) & set(str(prediction).lower().split())))


def test_judge_checks_run_judge_lm_max_concurrency_calls_at_once_with_the_same_labels():
    import polars as pl

    from memtune.optimize.data.locomo import load_locomo
    from memtune.optimize.evaluation.judge_checks import judge_checks

    dataset = load_locomo(Path(__file__).resolve().parents[1] / "data" / "fixture" / "fixture.json")
    rows = [
        {
            "qid": q.qid,
            "conversation_id": c.sample_id,
            "category": q.category,
            "question": q.question,
            "answer": q.answer,
            "prediction": ("the " + q.answer) if i % 2 else "something else",
            "answer_failed": False,
            "judge": None if q.category == 5 else float(i % 2),
            "judge_failed": False,
        }
        for c in dataset.conversations
        for i, q in enumerate(c.questions)
    ]
    frame = pl.DataFrame(rows)
    got = {}
    for workers in (1, 4):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("eval", overrides=["dataset=fixture", "judge=openai", f"judge.lm.max_concurrency={workers}"])
        main, extra = SlowJudge("main"), SlowJudge("extra")
        got[workers] = judge_checks(frame, dataset, main, [extra], cfg)
        assert extra.most_in_flight == workers  # the extra judge's labels and both judges' canaries, `workers` at once
    assert got[1] == got[4]  # the same labels, canary rows and agreement, in the same order
    assert got[4][0]["judges"]["extra"]["J"] == 0.5 and got[4][1]
