"""A compiled program (memtune-compile's output) as a knob value: `policy.<stage>.program=<name>` loads the state at
build time (unknown names and prompt knobs it was not compiled under are refused), the ingestion cache key sees it,
and an exported bundle carries it: the loaded bundle sends the compiled prompts byte for byte, without the programs
directory it was exported from."""

from __future__ import annotations

import json
import os

import dspy
import pytest
from compile_support import CONF_DIR, answer
from dspy.utils.dummies import DummyLM
from hydra import compose, initialize_config_dir

from memtune.policies.build import build_policy
from memtune.policies.runtime.bundle import load_policy
from memtune.policies.runtime.bundle_config import bundle_config
from memtune.policies.runtime.bundle_save import policy_modules, save_bundle
from memtune.policies.stages.decide import LLMDecider
from memtune.policies.stages.extract import LLMExtractor
from memtune.policies.stages.programs import available_programs, save_program
from memtune.policies.types import Message, Scope

COMPILED = "Extract facts, compiled."
LM_ANSWERS = {
    "I run every morning": answer(facts=[{"fact": "Carla runs every morning", "sources": [1]}]),
    "Carla runs every morning": answer(operations=[{"event": "ADD", "text": "Carla runs every morning"}]),
}


def compiled_extractor(programs, name="tuned", **knobs) -> LLMExtractor:
    module = LLMExtractor(**knobs)
    module.predict.signature = module.predict.signature.with_instructions(COMPILED)
    module.predict.demos = [
        dspy.Example(
            new_messages=["1. [1 May 2023] Ann: I moved to Oslo."],
            recent_messages=[],
            summary="",
            facts=[{"fact": "Ann moved to Oslo", "sources": [1]}],
        )
    ]
    save_program(module, programs, "extractor", name, {"prompt_knobs": {"instruction": module.knobs.instruction}})
    return module


def compose_eval(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("export", overrides=["policy=mem0_llm", "lm=openai", *overrides])


def test_program_knob_loads_the_compiled_state(tmp_path):
    compiled_extractor(tmp_path)
    assert available_programs(tmp_path, "extractor") == ["tuned"]
    built = LLMExtractor(program="tuned", programs_dir=str(tmp_path))
    assert built.predict.signature.instructions == COMPILED and len(built.predict.demos) == 1
    assert built.dump_state() != LLMExtractor().dump_state()  # so the ingestion cache key differs (it hashes states)
    lm = DummyLM(LM_ANSWERS)
    with dspy.context(lm=lm):
        built(new_messages=["[4 May 2023] Carla: I run every morning."])
    prompt = json.dumps(lm.history[0]["messages"])
    assert COMPILED in prompt and "I moved to Oslo" in prompt


def test_unknown_program_and_mismatched_prompt_knobs_are_refused(tmp_path):
    compiled_extractor(tmp_path)
    with pytest.raises(ValueError, match=r"unknown extractor program 'nope'.*\['tuned'\]"):
        LLMExtractor(program="nope", programs_dir=str(tmp_path))
    with pytest.raises(ValueError, match="program name"):
        LLMExtractor(program="../../etc/passwd", programs_dir=str(tmp_path))
    compiled_extractor(tmp_path, name="terse-based", instruction="terse")
    LLMExtractor(program="terse-based", programs_dir=str(tmp_path))  # the default instruction: the program replaces it
    with pytest.raises(ValueError, match="compiled with instruction='terse'.*policy.extractor.instruction='atomic'"):
        LLMExtractor(program="terse-based", programs_dir=str(tmp_path), instruction="atomic")
    decider = LLMDecider(allowed_ops="add_update")
    save_program(decider, tmp_path, "decider", "upd", {"prompt_knobs": {"allowed_ops": "add_update"}})
    LLMDecider(allowed_ops="add_update", program="upd", programs_dir=str(tmp_path))
    with pytest.raises(ValueError, match="compiled with allowed_ops='add_update'"):
        LLMDecider(program="upd", programs_dir=str(tmp_path))  # allowed_ops=all: the prompt would lie
    with pytest.raises(ValueError, match="stage 'decider', not 'extractor'"):
        (tmp_path / "extractor" / "upd.json").write_text((tmp_path / "decider" / "upd.json").read_text())
        (tmp_path / "extractor" / "upd.meta.json").write_text((tmp_path / "decider" / "upd.meta.json").read_text())
        LLMExtractor(program="upd", programs_dir=str(tmp_path))


def test_compiled_program_is_exported_in_a_bundle_and_served_without_the_programs_dir(tmp_path, embedder, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-used")
    programs = tmp_path / "programs"
    compiled_extractor(programs)
    cfg = compose_eval("policy.extractor.program=tuned", f"policy.extractor.programs_dir={programs}")
    policy = build_policy(cfg, tmp_path / "store-a", embedder=embedder)
    assert policy.extractor.predict.signature.instructions == COMPILED
    config = bundle_config(cfg)
    assert config["policy"]["extractor"]["program"] == "tuned"  # the record of which program was selected
    info = save_bundle(
        tmp_path / "bundle", config, embedder_id=embedder.id, embedder_dim=embedder.dim, stages=policy_modules(policy)
    )
    state = json.loads((tmp_path / "bundle" / info.modules["extractor"]["path"]).read_text())
    assert state["predict"]["signature"]["instructions"] == COMPILED and len(state["predict"]["demos"]) == 1

    os.rename(programs, tmp_path / "gone")  # production has no programs directory: the bundle carries the state
    pair, scope = [Message("Carla", "I run every morning.", "D1:1", "4 May 2023")], Scope(user_id="carla")
    policy.lm = DummyLM(LM_ANSWERS)
    loaded, _ = load_policy(info.path, tmp_path / "store-b", lm=DummyLM(LM_ANSWERS), embedder=embedder)
    assert [e.text for e in policy.add(pair, scope)] == [e.text for e in loaded.add(pair, scope)]
    prompts = [json.dumps(p.lm.history[0]["messages"]) for p in (policy, loaded)]
    assert prompts[0] == prompts[1] and COMPILED in prompts[1]
    # building fresh from the bundle config (no stages given) needs the programs dir: refused clearly (Hydra wraps
    # the stage's ValueError in its InstantiationException)
    with pytest.raises(Exception, match="unknown extractor program 'tuned'"):
        save_bundle(tmp_path / "bundle2", config, embedder_id=embedder.id, embedder_dim=embedder.dim)
