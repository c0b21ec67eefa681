"""A baseline the sweep's own overrides do not compose with is skipped with its reason, not fatal to the report.

Seen against the local model (experiments/llm-tuning): `memtune-sweep policy=mem0_llm ...
policy.extractor.recent_messages=2` ran all its trials, then crashed composing the `rag` baseline (its chunk
extractor has no recent_messages), and no report was written."""

from __future__ import annotations

import json

from test_sweep import sweep


def test_a_baseline_that_does_not_compose_is_skipped_and_the_report_is_written(tmp_path, capsys):
    result = sweep(
        tmp_path,
        "policy.extractor.min_words=3",  # the heuristic extractor's knob: policy=rag's chunk extractor has none
        "sweep.n_trials=1",
        "sweep.heldout.baselines=[{name:defaults,overrides:[]},{name:rag,overrides:['policy=rag']}]",
    )
    assert result["stopped"] == "complete" and result["finished"] == 1
    heldout = json.loads((tmp_path / "run" / "heldout.json").read_text())
    assert [b["name"] for b in heldout["baselines"]] == ["defaults"]
    assert heldout["baselines"][0]["tune"]["scores.overall.f1"] is not None
    [skipped] = heldout["skipped_baselines"]
    assert skipped["name"] == "rag" and skipped["overrides"] == ["policy=rag"] and "min_words" in skipped["reason"]
    assert "baseline rag skipped" in capsys.readouterr().err
    assert (tmp_path / "run" / "sweep.json").exists()
