"""A whole `memtune-eval dataset=fixture` run, as a user would start it, plus its failure modes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_eval(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MEMTUNE_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "memtune.optimize.evaluation.app",
            f"hydra.run.dir={tmp_path / 'run'}",
            "progress=false",
            *overrides,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    proc = run_eval(tmp, "dataset=fixture")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run", proc


def test_eval_writes_summary_and_per_question_parquet(fixture_run):
    run_dir, proc = fixture_run
    assert proc.stdout.strip().splitlines()[-1] == str(run_dir / "summary.json")  # the path is printed last
    summary = json.loads((run_dir / "summary.json").read_text())
    frame = pl.read_parquet(run_dir / "questions.parquet")
    assert frame.height == 15 == summary["dataset"]["questions"]
    scores = summary["scores"]
    assert set(scores) == {"1 multi-hop", "2 temporal", "3 open-domain", "4 single-hop", "5 adversarial", "overall"}
    assert scores["overall"]["n"] == 12  # categories 1-4; adversarial reported apart, as mem0 does
    for name in ("f1", "f1_squad", "bleu1", "evidence_recall"):
        assert 0.0 <= scores["overall"][name] <= 1.0
        # the overall figure is the mean over categories 1-4 of the per-question values
        expected = frame.filter(pl.col("category") <= 4)[name].mean()
        assert scores["overall"][name] == pytest.approx(expected, abs=1e-4)
    assert scores["overall"]["judge"] is None and "judge=openai" in summary["judge"]["reason"]
    cost = summary["cost"]
    assert cost["memories_stored"] > 0 and sum(cost["ops"].values()) >= cost["memories_stored"]
    assert cost["ingest"]["phases"]["extract"]["calls"] == 0  # offline policy: no LM calls at all
    assert cost["answer"]["phases"]["answer"]["steps"] == 15 and cost["answer"]["phases"]["answer"]["calls"] == 0
    assert summary["ingest"]["turns"] == 23 and summary["ingest"]["turns_per_s"] > 0
    assert summary["ingest"]["cache_hit"] is False
    assert summary["lm_requests"]["per_message_pair"]["extract"] == 0


def test_every_memory_keeps_turn_level_provenance(fixture_run):
    run_dir, _ = fixture_run
    frame = pl.read_parquet(run_dir / "questions.parquet")
    provenance = [p for row in frame["retrieved_provenance"].to_list() for p in row]
    assert provenance and all(len(p) == 1 for p in provenance)  # heuristic facts cite exactly their own turn


def test_unknown_conversation_is_a_clear_error(tmp_path):
    proc = run_eval(tmp_path, "dataset=fixture", "dataset.conversations=[conv-999]")
    assert proc.returncode != 0
    assert "conv-999" in proc.stderr and "fixture-1" in proc.stderr  # names the bad id and what exists


def test_llm_policy_without_lm_is_a_clear_error(tmp_path):
    proc = run_eval(tmp_path, "dataset=fixture", "policy=mem0_llm")
    assert proc.returncode != 0 and "need an LM" in proc.stderr


def test_ingestion_is_cached_by_ingestion_knobs_only(fixture_run):
    run_dir, _ = fixture_run
    tmp = run_dir.parent
    first = json.loads((run_dir / "summary.json").read_text())

    def rerun(name, *overrides):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "memtune.optimize.evaluation.app",
                f"hydra.run.dir={tmp / name}",
                "progress=false",
                "dataset=fixture",
                *overrides,
            ],
            cwd=ROOT,
            env={**os.environ, "MEMTUNE_CACHE_DIR": str(tmp / "cache")},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads((tmp / name / "summary.json").read_text())

    retrieval_only = rerun("k5", "policy.retriever.top_k=5")
    assert retrieval_only["ingest"]["cache_hit"] is True
    assert retrieval_only["ingest"]["key"] == first["ingest"]["key"]
    assert retrieval_only["cost"]["memories_stored"] == first["cost"]["memories_stored"]
    assert retrieval_only["scores"]["overall"]["n"] == first["scores"]["overall"]["n"]
    assert max(len(ids) for ids in pl.read_parquet(tmp / "k5" / "questions.parquet")["retrieved_ids"]) <= 5

    new_decider = rerun("t90", "policy.decider.update_threshold=0.9")
    assert new_decider["ingest"]["cache_hit"] is False and new_decider["ingest"]["key"] != first["ingest"]["key"]
