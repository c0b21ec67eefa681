"""The offline defaults since issue 14: `memtune-eval` with no overrides (policy=mem0_offline) runs exactly the tuned
`after` arm of experiments/offline-retrieval (so the two cannot drift apart silently), export and serve take the same
policy, and the switch moved nothing else: the paper's LLM policy (mem0_llm), the baselines (rag, raw_turns,
full_context) and the defaults before (mem0_offline_v0, what the committed experiments pin) resolve to the policy
they resolved to on main before the switch (b7c20cf), recorded in tests/presets_before_issue14.json.

The file holds what `uv run python tests/test_offline_defaults.py mem0_llm mem0_offline rag raw_turns full_context`
prints (the same composition and build as resolved_policy below), run on b7c20cf's code and conf: regenerate it only
for a change that is meant to move those presets, and say so in its commit.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from memtune.optimize.sweep.app import CONF_DIR
from memtune.policies.runtime.bundle_config import bundle_config

HERE = Path(__file__).resolve().parent
BEFORE = json.loads((HERE / "presets_before_issue14.json").read_text())
ENV = ("OPENAI_BASE_URL", "MEMTUNE_LM_MODEL", "MEMTUNE_JUDGE_MODEL", "MEMTUNE_JUDGE_BASE_URL", "MEMTUNE_PROGRAMS_DIR")
STAGES = ("extractor", "summarizer", "decider", "retriever", "answerer")
AFTER = "experiment=offline-retrieval/after"


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def composed(app: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(app, overrides=overrides)


def resolved_policy(overrides: list[str], app: str = "eval") -> dict:
    """The composed policy node and each stage's knobs as built from it (what a run uses, code defaults included)."""
    cfg = composed(app, overrides)
    knobs = {}
    for stage in STAGES:
        built = getattr(instantiate(cfg.policy[stage]), "knobs", None)
        knobs[stage] = dataclasses.asdict(built) if dataclasses.is_dataclass(built) else None
    return {"config": OmegaConf.to_container(cfg.policy, resolve=True), "knobs": knobs}


def test_memtune_eval_with_no_overrides_runs_the_after_arm():
    default, after = composed("eval", []), composed("eval", [AFTER])
    assert default.policy.name == "mem0_offline"
    assert OmegaConf.to_container(default.policy, resolve=True) == OmegaConf.to_container(after.policy, resolve=True)
    assert resolved_policy([]) == resolved_policy([AFTER])
    # everything else is the base config too: the arm adds only its held-out conversations
    rest = OmegaConf.to_container(after, resolve=True)
    assert rest["dataset"].pop("conversations") == ["conv-43", "conv-44", "conv-47"]
    base = OmegaConf.to_container(default, resolve=True)
    base["dataset"].pop("conversations")
    assert base == rest


def test_the_after_arm_spells_out_every_tuned_knob_it_runs():
    """after.yaml keeps its knob lines (explicit pins: a retune is a one-line edit there), and they are what runs."""
    text = (CONF_DIR / "experiment" / "offline-retrieval" / "after.yaml").read_text()
    knobs = resolved_policy([AFTER])["knobs"]
    pinned = {
        ("extractor", "resolve_dates"): True,
        ("extractor", "min_words"): 2,
        ("decider", "update_threshold"): 0.95,
        ("decider", "supersede"): True,
        ("decider", "invalidation"): "soft",
        ("retriever", "include_history"): "when_asked",
        ("retriever", "slot_rank"): True,
        ("retriever", "top_k"): 32,
        ("retriever", "threshold"): 0.3,
        ("retriever", "hybrid"): True,
        ("retriever", "fusion"): "weighted",
        ("retriever", "keyword_weight"): 0.25,
        ("retriever", "keyword_depth"): 50,
        ("retriever", "dense_depth"): 70,
        ("retriever", "recency_weight"): 0.0,
        ("retriever", "date_filter"): "boost",
        ("retriever", "date_boost"): 1.75,
        ("retriever", "dedup_threshold"): 0.9,
        ("retriever", "mmr_lambda"): 0.7,
        ("retriever", "rerank"): True,
        ("retriever", "rerank_depth"): 70,
        ("answerer", "render"): "lines_date",
        ("answerer", "rank_weight"): 1.0,
        ("answerer", "fresh_weight"): 0.4,
        ("answerer", "candidates"): 8,
        ("answerer", "pool"): 32,
        ("answerer", "join_margin"): 0.6,
        ("answerer", "span_weight"): 1.75,
        ("answerer", "dated_bonus"): 1.0,
    }
    for (stage, knob), value in pinned.items():
        assert f"    {knob}: " in text, f"after.yaml no longer pins policy.{stage}.{knob}"
        assert knobs[stage][knob] == value, (stage, knob)
    assert "override /policy/answerer: question_aware" in text
    assert composed("eval", []).policy.answerer._target_.endswith("QuestionAwareAnswerer")


def test_export_and_serve_take_the_same_default_policy():
    """memtune-export with no source writes the base config's policy into the bundle (the Memory API and the servers
    load it); its retriever's top_k is what a search without top_k returns (serve default_top_k: null)."""
    exported = bundle_config(composed("export", []))["policy"]
    assert exported == OmegaConf.to_container(composed("eval", [AFTER]).policy, resolve=True)
    assert exported["retriever"]["top_k"] == 32 and composed("serve", []).default_top_k is None


def test_the_memory_api_over_the_default_policy_runs_every_tuned_stage(tmp_path, embedder):
    """The served default (what `memtune-export` with no overrides bundles): relative dates resolved at add, search
    through the hybrid retriever (the store's full-text index) above the 0.3 cut-off, a question-aware "when" answer
    in LOCOMO's style, and the context rendered one memory a line with its day."""
    from serve_support import make_memory

    from memtune.policies.stages.answer import context_renderer

    memory = make_memory(tmp_path / "store", embedder)
    try:
        said = {"role": "Alice", "content": "I moved to Lisbon yesterday with my two cats.", "timestamp": "8 May 2023"}
        [event] = memory.add([{**said, "dia_id": "D1:1"}], user_id="u1")
        text = "Alice: I moved to Lisbon yesterday (7 May 2023) with my two cats."
        assert event["event"] == "ADD" and event["memory"] == text
        [hit] = memory.search("Where does Alice live? Lisbon", user_id="u1")
        assert hit["memory"] == text and hit["score"] >= 0.3 and memory.policy.retriever.knobs.hybrid
        answer, shown = memory.policy.answer("When did Alice move to Lisbon?", memory.policy.store.get_all()[0].scope)
        assert answer == "7 May 2023"
        assert context_renderer(memory.policy.answerer)(shown) == f"[8 May 2023] {text}"
    finally:
        memory.close()


@pytest.mark.parametrize("preset", ["mem0_llm", "rag", "raw_turns", "full_context"])
def test_the_papers_policy_and_the_baselines_did_not_move(preset):
    assert resolved_policy([f"policy={preset}"]) == BEFORE[preset]


def test_the_defaults_before_are_mem0_offline_as_it_was():
    now = resolved_policy(["policy=mem0_offline_v0"])
    assert now["config"].pop("name") == "mem0_offline_v0"
    was = json.loads(json.dumps(BEFORE["mem0_offline"]))
    assert was["config"].pop("name") == "mem0_offline"
    assert now == was


def test_the_switch_moved_the_offline_default_and_nothing_reads_the_old_one_by_accident():
    """The snapshot is of the old defaults (a test against an empty or regenerated-after file would pass anyway)."""
    old, new = BEFORE["mem0_offline"]["knobs"], resolved_policy([])["knobs"]
    assert (
        old["retriever"]["top_k"] == 30 and old["retriever"]["hybrid"] is False and old["answerer"]["render"] == "json"
    )
    assert new["retriever"]["top_k"] == 32 and new["retriever"]["hybrid"] is True
    assert BEFORE["mem0_llm"]["config"]["retriever"]["top_k"] == 30  # mem0's LOCOMO evaluation


def snapshot(presets: list[str]) -> dict:  # pragma: no cover - the generator of the pinned file
    out = {}
    for name in presets:
        for var in ENV:
            os.environ.pop(var, None)
        out[name] = resolved_policy([f"policy={name}"])
    return out


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(snapshot(sys.argv[1:]), indent=1, sort_keys=True))
