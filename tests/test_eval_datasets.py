"""`memtune-eval`'s run on the other dataset configs (in process, with the hashing test embedder): a LongMemEval
file (the tiny one in its format) and LOCOMO + the generated set as one dataset."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from conftest import HashEmbedder
from hydra import compose, initialize_config_module

import memtune.optimize.evaluation.ingest_cache as ingest_cache
from memtune.optimize.evaluation.app import run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def eval_run(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest_cache, "build_embedder", lambda cfg, cache_dir: HashEmbedder())

    def go(*overrides: str) -> tuple[dict, pl.DataFrame]:
        with initialize_config_module("memtune.conf", version_base="1.3"):
            cfg = compose("eval", overrides=[f"cache_dir={tmp_path / 'cache'}", "progress=false", *overrides])
        out = tmp_path / "run"
        out.mkdir()
        run(cfg, out)
        return json.loads((out / "summary.json").read_text()), pl.read_parquet(out / "questions.parquet")

    return go


def test_eval_on_a_longmemeval_file(eval_run):
    path = ROOT / "data" / "fixture" / "longmemeval_tiny.json"
    summary, frame = eval_run("dataset=longmemeval", f"dataset.path={path}")
    assert summary["dataset"]["name"] == "longmemeval" and summary["dataset"]["questions"] == 4
    scores = summary["scores"]
    assert set(scores) == {
        "5 adversarial",
        "24 temporal-reasoning",
        "25 knowledge-update",
        "26 multi-session",
        "overall",
    }
    assert scores["overall"]["n"] == 3  # the abstention question is reported apart, as LOCOMO's category 5
    assert sorted(frame["conversation_id"]) == sorted(["ku0001", "tr0002", "ssu0003_abs", "ms0004"])
    assert summary["ingest"]["turns"] == 21


def test_eval_on_locomo_and_the_generated_set_together(eval_run):
    summary, frame = eval_run("dataset=locomo_updates", "dataset.conversations=[upd-01]")
    assert summary["dataset"]["conversations"] == ["upd-01"]
    assert "locomo_dev.json + " in summary["dataset"]["path"]
    scores = summary["scores"]
    assert set(scores) == {"11 current", "12 history", "13 stable", "overall"}
    assert (
        scores["overall"]["n"] == frame.height == sum(scores[k]["n"] for k in ("11 current", "12 history", "13 stable"))
    )
    assert summary["config"]["overall_categories"] == [1, 2, 3, 4, 11, 12, 13]
