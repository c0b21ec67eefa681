"""Memory health and currency metrics: pure functions with hand-computed values, their place in summary.json and
MLflow, the stages they depend on, and sweep constraints on them."""

from __future__ import annotations

import math

import numpy as np
import optuna
import polars as pl
import pytest
from omegaconf import OmegaConf

from memtune.optimize.evaluation.currency import currency_summary
from memtune.optimize.evaluation.health import (
    DUPLICATE_COSINE,
    contradiction_pairs,
    duplicate_clusters,
    duplicate_flags,
    health_summary,
    is_stale,
    slope,
    store_health,
    turn_statements,
)
from memtune.optimize.sweep.constraints import Constraint, constraints_from, set_constraints
from memtune.optimize.sweep.knob_deps import moved_by
from memtune.optimize.sweep.run_record import summary_metrics
from memtune.policies.store.changes import Change
from memtune.policies.types import Scope


def v(x: float, y: float) -> np.ndarray:
    return np.array([x, y], np.float32) / np.hypot(x, y)


def test_duplicates_within_a_group_at_the_cut_off():
    # cos(a, b) = 0.96 >= 0.95; cos(a, c) = 0; d equals a but lives in another scope
    vectors = np.stack([v(1, 0), v(0.96, 0.28), v(0, 1), v(1, 0)])
    flags = duplicate_flags(vectors, ["s1", "s1", "s1", "s2"])
    assert flags.tolist() == [True, True, False, False] and DUPLICATE_COSINE == 0.95
    assert duplicate_flags(vectors, ["s1", "s1", "s1", "s2"], cutoff=0.97).tolist() == [False] * 4
    # a chain a-b-e (cos(a, e) = 0.8432 < 0.95, each step >= 0.95) is one cluster; c-f another
    e = v(0.8432, 0.5376)
    f = v(0.05, 1)
    clusters = duplicate_clusters(np.stack([v(1, 0), v(0.96, 0.28), v(0, 1), e, f]), ["s"] * 5)
    assert clusters == [[0, 1, 3], [2, 4]]
    assert duplicate_flags(np.zeros((0, 2), np.float32), []).tolist() == []


def test_contradiction_pairs_need_one_scope_one_person_one_slot():
    texts = [
        "Alice: I live in Lisbon",
        "Alice: I moved to Porto last year",
        "Bob: I live in Lisbon",
        "Alice: I love hiking",
        "Alice: Porto is my home",  # restates 1
        "Alice: I live in Faro",
    ]
    groups = ["c1", "c1", "c1", "c1", "c1", "c2"]
    assert contradiction_pairs(texts, groups) == [(0, 1), (0, 4)]


def test_a_memory_is_stale_when_a_later_turn_ends_its_value():
    order, statements = turn_statements(
        [
            ("D1:1", "Alice", "I live in Lisbon. I love hiking."),
            ("D1:2", "Bob", "I live in Lisbon too."),
            ("D2:1", "Alice", "Big news! I moved to Porto."),
            ("D2:2", "Alice", "Porto is my home now."),
        ]
    )
    assert order == {"D1:1": 0, "D1:2": 1, "D2:1": 2, "D2:2": 3} and len(statements) == 4
    assert is_stale("Alice: I live in Lisbon.", ("D1:1",), order, statements)
    assert not is_stale("Alice: I moved to Porto.", ("D2:1",), order, statements)  # restated later, not ended
    assert not is_stale("Bob: I live in Lisbon too.", ("D1:2",), order, statements)  # another person
    assert not is_stale("Alice: I love hiking.", ("D1:1",), order, statements)  # no slot
    assert not is_stale("Alice: I live in Lisbon.", (), order, statements)  # no known turn
    # the yardstick is the conversation, not the store: a policy cannot hide staleness by marking or not marking
    assert is_stale("Alice: I live in Lisbon.", ("D1:1", "unknown"), order, statements)


def test_slope_is_least_squares():
    assert slope([2, 4, 6]) == pytest.approx(2.0)
    assert slope([1, 1, 4]) == pytest.approx(1.5)  # x = 1..3: cov 3 / var 2
    assert slope([5]) is None and slope([]) is None


def frame(rows: list[tuple[str, int, int, bool | None, bool | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema=["category_name", "n_memories", "n_stale", "first_hit", "hit_at_5"],
        orient="row",
    )


def test_health_summary_pools_conversations_and_leaves_history_out_of_staleness():
    per = [
        {"turns": 50, "memories": 10, "stored": 12, "duplicates": 2, "contradictions": 1, "growth": [4, 7, 10]},
        {"turns": 150, "memories": 30, "stored": 30, "duplicates": 0, "contradictions": 0, "growth": [10, 30]},
    ]
    f = frame([("current", 10, 2, True, True), ("history", 10, 9, False, True), ("stable", 5, 0, True, True)])
    h = health_summary(per, f)
    assert h["memories"] == 40 and h["stored"] == 42
    assert h["duplicate_rate"] == 0.05  # 2 of 40
    assert h["contradictions"] == 1 and h["contradictions_per_100_memories"] == 2.5
    assert h["stale_retrieval_rate"] == round(2 / 15, 4)  # history questions left out: 2 of 10 + 5
    assert h["memories_per_100_turns"] == 20.0 and h["stored_per_100_turns"] == 21.0
    assert h["growth"] == [[4, 7, 10], [10, 30]] and h["growth_slope"] == 11.5  # mean of 3 and 20
    empty = health_summary(
        [{"turns": 5, "memories": 0, "stored": 0, "duplicates": 0, "contradictions": 0, "growth": [0]}], f.clear()
    )
    assert empty["duplicate_rate"] == 0.0 and empty["stale_retrieval_rate"] == 0.0 and empty["growth_slope"] is None
    with pytest.raises(KeyError):  # a missing fact fails loudly
        health_summary([{"turns": 1, "memories": 1}], f)
    with pytest.raises(pl.exceptions.ColumnNotFoundError):
        health_summary(per, f.drop("n_stale"))


def test_currency_from_the_question_frame():
    f = frame(
        [
            ("current", 3, 0, True, True),
            ("current", 3, 1, False, True),
            ("current", 3, 0, None, None),  # no evidence: not counted
            ("history", 3, 0, False, True),
            ("history", 3, 0, False, False),
            ("multi-hop", 3, 0, True, True),
        ]
    )
    assert currency_summary(f) == {
        "current_first": 0.5,
        "current_top5": 1.0,
        "n_current": 2,
        "history_first": 0.0,
        "history_top5": 0.5,
        "n_history": 2,
    }
    assert currency_summary(frame([("multi-hop", 3, 0, True, True)])) == {}  # LOCOMO: no currency block


def test_store_health_of_one_scope(tmp_path, embedder):
    from memtune.policies.store.store import MemoryStore

    store = MemoryStore(tmp_path / "s", dim=embedder.dim, embedder_id=embedder.id)
    scope = Scope("c1")
    texts = ["Alice: I live in Lisbon", "Alice: I live in Lisbon", "Alice: I moved to Porto", "Bob: I like tea"]
    ids = [mid for _, mid, _ in store.apply([Change("ADD", t, embedder.embed([t])[0], scope=scope) for t in texts])]
    store.apply([Change("ADD", "other scope", embedder.embed(["x"])[0], scope=Scope("c2"))])
    h = store_health(store, scope, turns=8, growth=[2, 4])
    assert h == {
        "scope": "c1",
        "turns": 8,
        "memories": 4,
        "stored": 4,
        "duplicates": 2,
        "contradictions": 2,
        "growth": [2, 4],
    }
    store.apply([Change("INVALIDATE", memory_id=ids[0], scope=scope)])  # invalid memories are not counted
    h = store_health(store, scope, turns=8, growth=[2, 4])
    assert (h["memories"], h["stored"], h["duplicates"], h["contradictions"]) == (3, 4, 0, 1)


def test_health_and_currency_reach_mlflow_and_their_stages():
    summary = {
        "scores": {},
        "health": {"duplicate_rate": 0.25, "growth": [[1, 2]], "growth_slope": 1.0, "stale_retrieval_rate": 0.1},
        "currency": {"current_first": 0.9, "n_current": 10},
    }
    metrics = summary_metrics(summary)
    assert metrics["health.duplicate_rate"] == 0.25 and metrics["currency.current_first"] == 0.9
    assert metrics["health.growth_slope"] == 1.0 and not any("growth." in k for k in metrics)  # lists skipped
    assert moved_by("health.duplicate_rate") == {"ingest"} == moved_by("health.growth_slope")
    assert moved_by("health.stale_retrieval_rate") == {"ingest", "retrieve"} == moved_by("currency.history_top5")


# ---- sweep constraints --------------------------------------------------------------------------------------------
def cfg(constraints) -> OmegaConf:
    return OmegaConf.create({"sweep": {"constraints": constraints}})


def test_constraints_config():
    got = constraints_from(cfg([{"metric": "health.duplicate_rate", "max": 0.05}, {"metric": "a.b", "min": 1}]))
    assert got == [Constraint("health.duplicate_rate", max=0.05), Constraint("a.b", min=1.0)]
    assert got[0].violation({"health": {"duplicate_rate": 0.08}}) == pytest.approx(0.03)
    assert got[1].violation({"a": {"b": 3}}) == -2.0
    assert constraints_from(OmegaConf.create({"sweep": {}})) == []
    for bad, words in [
        ([{"max": 1}], "give {metric"),
        ([{"metric": "x", "max": 1, "min": 0}], "exactly one of max or min"),
        ([{"metric": "x"}], "exactly one of max or min"),
        ([{"metric": "x", "max": "low"}], "must be a number"),
        ([{"metric": "x", "max": 1, "maxx": 2}], "unknown key"),
    ]:
        with pytest.raises(ValueError, match=words):
            constraints_from(cfg(bad))
    with pytest.raises(KeyError, match="no 'health'"):
        got[0].violation({"scores": {}})  # a metric missing from the run fails loudly
    with pytest.raises(ValueError, match="not a number"):
        got[0].violation({"health": {"duplicate_rate": None}})


@pytest.mark.parametrize("sampler", [optuna.samplers.TPESampler, optuna.samplers.NSGAIISampler])
def test_infeasible_trials_never_win(sampler):
    """The best recall comes with too many duplicates: the study's best (and Pareto front) skips it."""
    limit = [Constraint("health.duplicate_rate", max=0.05)]
    study = optuna.create_study(directions=["maximize"], sampler=sampler(seed=0))

    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        summary = {"health": {"duplicate_rate": x / 10}, "scores": {"overall": {"evidence_recall": x}}}
        set_constraints(trial, limit, summary)
        return x

    study.optimize(objective, n_trials=20)
    best = study.best_trial
    assert best.params["x"] <= 0.5 and all(c <= 0 for c in best.constraints.values())
    assert max(t.params["x"] for t in study.trials) > 0.5  # a better, infeasible trial existed
    assert math.isclose(best.constraints["health.duplicate_rate<=0.05"], best.params["x"] / 10 - 0.05)


def test_a_sweep_with_a_constraint_records_it_on_every_trial(tmp_path):
    """A real tiny sweep: the constraint's metric keeps its ingestion knobs sampled, each trial carries the limit's
    violation, trials.parquet says which trials kept it, and only feasible trials can be the study's best."""
    from test_sweep import sweep

    space = {
        "name": "tiny-limits",
        "knobs": [
            {"target": "policy.decider.supersede", "type": "categorical", "choices": [True, False]},
            {"target": "policy.retriever.top_k", "type": "int", "low": 1, "high": 10},
        ],
    }

    def edit(c):
        c.search_space = space
        c.sweep.enqueue = []

    result = sweep(
        tmp_path,
        "sweep.n_trials=2",
        "sweep=budget",  # one objective: recall_ctx_1000 (retrieval); the limit is on an ingestion metric
        "sweep.constraints=[{metric: health.memories_per_100_turns, max: 1.0}]",
        edit=edit,
    )
    trials = pl.read_parquet(tmp_path / "run" / "trials.parquet")
    # sampled although the objective is a retrieval metric: the constraint's metric depends on it
    assert result["finished"] == 2 and "param.policy.decider.supersede" in trials.columns
    column = "constraint.health.memories_per_100_turns<=1.0"
    assert trials[column].to_list() and all(x > 0 for x in trials[column].to_list())  # every trial stores more
    assert trials["feasible"].to_list() == [False, False]
    study = optuna.load_study(study_name=result["study"], storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    with pytest.raises(ValueError, match="No feasible trials"):
        _ = study.best_trial


def test_restated_values_stored_once(tmp_path):
    import json as _json

    from memtune.optimize.evaluation.restated import load_timelines, restated_counts
    from memtune.policies.types import MemoryRecord

    def m(mid, text, prov, invalid=""):
        return MemoryRecord(mid, text, Scope("c"), provenance=prov, invalid_at=invalid)

    timelines = [
        {"values": [{"value": "Porto", "stated": "D1:1", "restated": ["D3:1"]}]},  # once
        {"values": [{"value": "by bus", "stated": "D1:2", "restated": ["D2:2"]}]},  # twice: restatement stored again
        {"values": [{"value": "Kia Niro", "stated": "D1:3", "restated": ["D4:1"]}]},  # lost: 0
        {"values": [{"value": "vegan", "stated": "D1:4", "restated": []}]},  # never restated: not counted
        {
            "values": [
                {"value": "Lisbon", "stated": "D1:5", "restated": ["D2:5"]},
                {"value": "Faro", "stated": "D5:1", "restated": []},
            ]
        },
    ]
    memories = [
        m("1", "Ana: I live in Porto. I love tea.", ("D1:1",)),
        m("2", "Ana: I love tea.", ("D1:1",)),  # cites the turn, not the value: not a copy
        m("3", "Ana: My commute is by bus.", ("D1:2",)),
        m("4", "Ana: I still commute by bus.", ("D2:2",)),
        m("5", "Ana: The Kia Niro still runs fine.", ("D4:1",), invalid="x"),  # invalid: does not hold it
    ]
    assert restated_counts(memories, timelines) == (3, 1)
    data = tmp_path / "set.json"
    data.write_text("[]")
    assert load_timelines(str(data), "abc") is None  # no label file
    (tmp_path / "set.labels.json").write_text(
        _json.dumps({"conversations_sha256": "abc", "timelines": {"c": timelines}})
    )
    assert load_timelines(str(data), "abc") == {"c": timelines}
    with pytest.raises(ValueError, match="regenerate both"):
        load_timelines(str(data), "other")
    summary = currency_summary(frame([]), [{"restated": (3, 1)}, {"restated": (1, 1)}, {}])
    assert summary == {"restated_once": 0.5, "n_restated": 4}


def test_merged_ingestion_without_health_facts_is_null_not_made_up():
    from memtune.optimize.sweep.scoring import merge_ingest

    def facts(**extra):
        base = {"message_pairs": 1, "seconds": 1.0, "turns": 2, "memories_stored": 1, "ops": {}, "cost": {"phases": {}}}
        return base | extra

    h = {"turns": 2, "memories": 1, "stored": 1, "duplicates": 0, "contradictions": 0, "growth": [1]}
    assert merge_ingest([facts(health=[h]), facts(health=[h])], ["a", "b"])["health"] == [h, h]
    assert merge_ingest([facts(health=[h]), facts()], ["a", "b"])["health"] is None  # an old ingest.json
