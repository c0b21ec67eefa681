"""Compiled program states of the LLM stages: what memtune-compile writes and the `program` knob loads.

    <programs_dir>/<stage>/<name>.json       the module state (instructions, demos): `module.save(save_program=False)`,
                                            JSON, never pickle
    <programs_dir>/<stage>/<name>.meta.json  how it was made: optimizer, trainset, metric before/after, LM, date,
                                            and `prompt_knobs`, the stage knobs its prompt was compiled under

`policy.extractor.program=<name>` (also decider, answerer) loads the state into the stage when it is built, so the
ingestion cache key (which hashes every stage's `dump_state()`) and an exported bundle (modules/<stage>.json)
carry it. A program replaces the stage's instruction variant; a knob that shapes the prompt (`instruction`,
`allowed_ops`) set to something other than what the program was compiled under is refused, naming both.
`programs_dir` (a stage knob) defaults to ./programs, or $MEMTUNE_PROGRAMS_DIR (conf/policy/<stage>/llm.yaml).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dspy

STAGES = ("extractor", "decider", "answerer")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
DEFAULT_DIR = "programs"


def _check_name(stage: str, name: str) -> None:
    if stage not in STAGES:
        raise ValueError(f"no compiled programs for stage {stage!r}: programs exist for {list(STAGES)}")
    if not NAME.match(str(name)) or name.endswith((".json", ".meta")):
        raise ValueError(
            f"program name {name!r}: use letters, digits and . _ + - (no path, no .json), e.g. gepa-2026-11-30"
        )


def program_path(programs_dir: str | Path, stage: str, name: str) -> Path:
    _check_name(stage, name)
    return Path(programs_dir) / stage / f"{name}.json"


def meta_path(programs_dir: str | Path, stage: str, name: str) -> Path:
    return program_path(programs_dir, stage, name).with_suffix(".meta.json")


def available_programs(programs_dir: str | Path, stage: str) -> list[str]:
    folder = Path(programs_dir) / stage
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(".json")] for p in folder.glob("*.json") if not p.name.endswith(".meta.json"))


def save_program(
    module: dspy.Module, programs_dir: str | Path, stage: str, name: str, metadata: Mapping[str, Any]
) -> Path:
    """Write the module state and its metadata; returns the state file. An existing program is replaced."""
    path = program_path(programs_dir, stage, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    module.save(str(path), save_program=False)
    meta = {"stage": stage, "name": name, **dict(metadata)}
    meta_path(programs_dir, stage, name).write_text(json.dumps(meta, indent=2, default=str))
    return path


def read_metadata(programs_dir: str | Path, stage: str, name: str) -> dict:
    path = meta_path(programs_dir, stage, name)
    if not path.is_file():
        raise ValueError(f"{path} is missing: a compiled program is its state file and this metadata file")
    return json.loads(path.read_text())


def load_program(module: dspy.Module, stage: str, name: str, programs_dir: str | Path, knobs: Any) -> dict:
    """Load program `name` into `module` (a stage of kind `stage`); returns its metadata.

    Refused with the fix: an unknown name (the available ones are listed), a program of another stage, and a
    prompt knob (`metadata["prompt_knobs"]`) whose value in `knobs` differs from the one it was compiled under
    (a knob still at its default is fine for `instruction`: the program replaces it)."""
    path = program_path(programs_dir, stage, name)
    if not path.is_file():
        found = available_programs(programs_dir, stage)
        raise ValueError(
            f"unknown {stage} program {name!r}: no {path} (programs in {Path(programs_dir) / stage}: {found}). "
            f"Compile one with memtune-compile stage={stage} name={name}, or set programs_dir"
        )
    meta = read_metadata(programs_dir, stage, name)
    if meta.get("stage") != stage:
        raise ValueError(f"{path} is a program of stage {meta.get('stage')!r}, not {stage!r}")
    for knob, compiled in (meta.get("prompt_knobs") or {}).items():
        value = getattr(knobs, knob, None)
        default = getattr(type(knobs), knob, None)
        if value != compiled and not (knob == "instruction" and value == default):
            raise ValueError(
                f"{stage} program {name!r} was compiled with {knob}={compiled!r} but the policy sets "
                f"policy.{stage}.{knob}={value!r}: set it to {compiled!r}, or drop the program"
            )
    try:
        module.load(str(path))
    except Exception as err:  # a state that does not fit the module's predictors, or broken JSON
        raise ValueError(f"{path} does not fit the {stage} stage ({type(err).__name__}: {err})") from err
    return meta
