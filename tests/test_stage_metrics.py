"""Stage metrics (optimize/compile/metrics.py) with hand-computed values, the loopholes they close (many facts, one
long fact, an add-everything decider), and the devsets they are computed on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from compile_support import ROOT
from omegaconf import OmegaConf

from memtune.optimize.compile.devsets import answer_examples, decision_examples, extraction_examples
from memtune.optimize.compile.metrics import (
    FactScore,
    decision_correct,
    decision_report,
    fact_score,
    greedy_matches,
    micro_fact_score,
    predicted_operation,
)
from memtune.optimize.data.load import load_from_config
from memtune.policies.embed.minilm import MiniLMEmbedder


def test_greedy_one_to_one_matching_takes_the_highest_cosine_first():
    sim = np.array([[0.9, 0.8, 0.1], [0.85, 0.7, 0.2], [0.3, 0.66, 0.64]])
    # (0,0) 0.9 first; then (1,0) is taken by column 0, (0,1) by row 0; (1,1) 0.7; (2,1) taken; (2,2) 0.64 < 0.65
    assert greedy_matches(sim, 0.65) == [(0, 0), (1, 1)]
    assert greedy_matches(sim, 0.6) == [(0, 0), (1, 1), (2, 2)]
    assert greedy_matches(np.zeros((0, 3)), 0.5) == []
    assert greedy_matches(np.array([[0.7, 0.7]]), 0.5) == [(0, 0)]  # a tie: the lower silver index


def test_fact_scores_by_hand():
    one_hot = {"a": [1, 0, 0], "a2": [1, 0, 0], "b": [0, 1, 0], "c": [0, 0, 1], "x": [0.6, 0.8, 0]}
    embed = lambda texts: np.array([one_hot[t] for t in texts], dtype=float)  # noqa: E731
    score, matches = fact_score(["a", "x", "c"], ["a", "b"], embed, 0.65)  # x.b = 0.8, x.a = 0.6 < 0.65
    assert matches == [(0, 0), (1, 1)] and (score.matched, score.extracted, score.silver) == (2, 3, 2)
    assert (score.precision, score.recall, score.f) == (2 / 3, 1.0, pytest.approx(0.8))
    dup, _ = fact_score(["a", "a2", "a"], ["a"], embed, 0.65)  # the same fact three times: one match
    assert (dup.precision, dup.recall, dup.f) == (1 / 3, 1.0, pytest.approx(0.5))
    assert fact_score([], [], embed)[0].f == 1.0  # nothing to find, nothing found
    assert fact_score(["a"], [], embed)[0].f == 0.0 and fact_score([], ["a"], embed)[0].f == 0.0
    micro = micro_fact_score([FactScore(2, 3, 2), FactScore(0, 1, 0), FactScore(1, 1, 3)])
    assert (micro["precision"], micro["recall"]) == (3 / 5, 3 / 5) and micro["f"] == pytest.approx(0.6)


@pytest.fixture(scope="module")
def minilm():
    return MiniLMEmbedder()


SILVER = [
    "Priya lives in Lisbon.",
    "Priya adopted a cat named Pixel.",
    "Priya is a vegetarian.",
    "Priya teaches middle school science.",
]


def test_the_extraction_metric_cannot_be_gamed_by_many_facts_or_one_long_fact(minilm):
    good, _ = fact_score(
        ["Priya lives in Lisbon", "Priya has a cat called Pixel", "Priya is vegetarian", "Priya teaches science"],
        SILVER,
        minilm.embed,
    )
    assert good.f == 1.0
    spam, _ = fact_score(SILVER * 5 + ["Priya likes things.", "Priya said hello."], SILVER, minilm.embed)
    assert spam.recall == 1.0 and spam.precision == pytest.approx(4 / 22) and spam.f < 0.31
    long, _ = fact_score([" ".join(SILVER)], SILVER, minilm.embed)
    assert long.matched <= 1 and long.recall <= 0.25 and long.f <= 0.4
    vague, _ = fact_score(["Priya talked about her life."], SILVER, minilm.embed)
    assert vague.matched == 0


def test_decision_resolution_and_correctness_by_hand():
    assert predicted_operation(None) == ("FAILED", None, "")
    assert predicted_operation([]) == ("NOOP", None, "")
    assert predicted_operation([{"event": "NOOP", "id": 2}]) == ("NOOP", None, "")
    assert predicted_operation([{"event": "UPDATE", "id": 1, "text": "t"}]) == ("UPDATE", 1, "t")
    assert predicted_operation([{"event": "DELETE", "id": 1}, {"event": "ADD", "text": "new"}]) == ("UPDATE", 1, "new")
    assert predicted_operation([{"event": "ADD", "text": "a"}, {"event": "ADD", "text": "b"}])[0] == "MULTI"
    ok = [{"event": "UPDATE", "id": 3, "text": "Maya commutes to work on foot."}]
    assert decision_correct("UPDATE", 3, "on foot", ok) == ("UPDATE", True)
    assert decision_correct("UPDATE", 2, "on foot", ok) == ("UPDATE", False)  # the wrong memory
    assert decision_correct("UPDATE", 3, "by train", ok) == ("UPDATE", False)  # the text lost the new value
    assert decision_correct("NOOP", 3, "by bus", []) == ("NOOP", True)
    assert decision_correct("ADD", None, "Peru", [{"event": "ADD", "text": "Maya plans a trip to Peru."}]) == (
        "ADD",
        True,
    )
    assert decision_correct("ADD", None, "Peru", None) == ("FAILED", False)


def test_decision_report_by_hand_and_an_add_everything_decider_is_exposed():
    outcomes = [
        ("ADD", "ADD", True),
        ("ADD", "ADD", True),
        ("UPDATE", "UPDATE", True),
        ("UPDATE", "ADD", False),
        ("NOOP", "NOOP", True),
        ("NOOP", "UPDATE", False),
    ]
    r = decision_report(outcomes)
    assert r["n"] == 6 and r["accuracy"] == pytest.approx(4 / 6)
    assert r["per_op"]["ADD"] == {
        "precision": 2 / 3,
        "recall": 1.0,
        "f1": pytest.approx(0.8),
        "expected": 2,
        "predicted": 3,
        "correct": 2,
    }
    assert r["per_op"]["UPDATE"]["precision"] == 0.5 and r["per_op"]["UPDATE"]["recall"] == 0.5
    assert r["per_op"]["NOOP"]["f1"] == pytest.approx(2 / 3)
    assert r["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    # always ADD on the label file's mix (140 ADD, 119 UPDATE, 128 NOOP): macro F1 far below a real decider's
    add_all = decision_report(
        [("ADD", "ADD", True)] * 140 + [("UPDATE", "ADD", False)] * 119 + [("NOOP", "ADD", False)] * 128
    )
    assert add_all["accuracy"] == pytest.approx(140 / 387) and add_all["macro_f1"] == pytest.approx(
        (2 * 140 / 387 / (140 / 387 + 1)) / 3
    )


@pytest.fixture(scope="module")
def updates():
    return load_from_config(OmegaConf.create({"name": "updates", "path": str(ROOT / "data/updates/updates.json")}))


def test_decision_devset_replays_the_store_a_correct_decider_holds(updates):
    labels = ROOT / "data/updates/updates.labels.json"
    examples = decision_examples(updates.conversations, labels, seed=0)
    rows = json.loads(Path(labels).read_text())["decisions"]
    assert len(examples) == len(rows) == 387
    assert [e.expected_op for e in examples].count("UPDATE") == 119
    for example, row in zip(examples, rows):
        assert len(example.new_facts) == 1 and row["value"].lower() in example.new_facts[0].lower()
        shown = {m["id"]: m["text"] for m in example.existing_memories}
        assert sorted(shown) == list(range(len(shown)))
        if row["op"] == "UPDATE":  # the memory to update holds the previous value
            assert row["previous"].lower() in shown[example.expected_target].lower()
        if row["op"] == "NOOP":  # the memory restated holds the same value
            assert row["value"].lower() in shown[example.expected_target].lower()
    first = examples[0]
    assert first.existing_memories == [] and first.expected_op == "ADD" and first.expected_target is None


def test_extraction_and_answer_devsets_on_the_fixture():
    fixture = load_from_config(OmegaConf.create({"name": "fixture", "path": str(ROOT / "data/fixture/fixture.json")}))
    examples = extraction_examples(fixture.conversations)
    assert len(examples) == 12  # 23 turns in 3 sessions, pairs never span two sessions: 4 + 4 + 4
    first = examples[1]
    assert first.dia_ids == ["D1:3", "D1:4"] and first.silver == [
        "Priya lives in Lisbon.",
        "Priya adopted a cat named Pixel.",
    ]
    assert first.recent_messages == examples[0].new_messages and first.summary == ""
    answers = answer_examples(fixture.conversations)
    assert answers and all(a.category in (1, 2, 3, 4) and a.memories for a in answers)
    q = answers[0]
    assert q.question == "Which cities has Priya lived in?" and [m["memory"][:6] for m in q.memories] == [
        "Priya:",
        "Priya:",
    ]
