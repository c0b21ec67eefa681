"""The prompt library: instruction variants of the LLM stages, one file each (policies/stages/prompts/<kind>/<name>.md,
package data), selected by name (`policy.extractor.instruction=terse`). See prompts/README.md.

A variant replaces only the instruction of the stage's signature (`Signature.with_instructions`): the input and
output fields, their descriptions and the output format stay, so every variant parses the same way."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import dspy

KINDS = ("extract", "answer", "decide")


def _folder(kind: str):
    if kind not in KINDS:
        raise ValueError(f"no prompt library for {kind!r}; the library has {list(KINDS)}")
    return resources.files(__package__).joinpath("prompts", kind)


def available(kind: str) -> list[str]:
    """The variant names of one stage kind, sorted."""
    return sorted(p.name[:-3] for p in _folder(kind).iterdir() if p.name.endswith(".md"))


@lru_cache(maxsize=64)
def load_instruction(kind: str, name: str) -> str:
    """The instruction text of variant `name` (its file, surrounding whitespace stripped)."""
    names = available(kind)
    if name not in names:
        raise ValueError(
            f"unknown {kind} instruction {name!r}: the prompt library (policies/stages/prompts/{kind}/) has {names}"
        )
    text = _folder(kind).joinpath(f"{name}.md").read_text(encoding="utf-8").strip()
    if not text:
        raise ValueError(f"policies/stages/prompts/{kind}/{name}.md is empty: write the instruction into it")
    return text


def use_instruction(predict: dspy.Predict, kind: str, name: str) -> None:
    """Give `predict` the instruction of variant `name` (its signature keeps its fields)."""
    predict.signature = predict.signature.with_instructions(load_instruction(kind, name))
