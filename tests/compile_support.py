"""Test helpers for compiling stages: a scripted DummyLM whose reply is a function of the whole prompt, and a two-
conversation copy of the fixture (tune on one, report on the other)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import dspy
from dspy.clients.engines.dummy_engine import AsyncDummyEngine, DummyEngine
from dspy.utils.dummies import DummyLM

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "memtune" / "conf"


def answer(**fields) -> dict:
    """One scripted LM answer: every value JSON-encoded as DummyLM writes it into the reply."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}


class _Engine(DummyEngine):
    def _complete_messages(self, messages):  # one scripted answer for these messages (tests call it from one thread)
        self.owner.answers = iter([self.owner.reply(messages)])
        return super()._complete_messages(messages)


class ScriptedLM(DummyLM):
    """DummyLM whose answer is `reply(messages) -> {field: value}`: it sees the system prompt (the instruction),
    the demos and the input, so a test can script an LM that does better under a better prompt."""

    def __init__(self, reply: Callable[[list[dict]], dict], adapter=None):
        super().__init__([], adapter=adapter)
        self.reply = reply
        self._engine_spec = _Engine(self)
        self._async_engine_spec = AsyncDummyEngine(self._engine_spec)

    def copy(self, **kwargs):
        copied = super().copy(**kwargs)
        copied.reply = self.reply
        copied._engine_spec = _Engine(copied)
        copied._async_engine_spec = AsyncDummyEngine(copied._engine_spec)
        return copied


def system(messages: list[dict]) -> str:
    return messages[0]["content"] if messages and messages[0]["role"] == "system" else ""


def last(messages: list[dict]) -> str:
    return messages[-1]["content"]


def proposer(instruction: str) -> DummyLM:
    """A proposer LM for GEPA (JSON adapter, `new_instruction`) and MIPROv2 (`proposed_instruction`)."""
    return DummyLM(
        [{"new_instruction": instruction, "proposed_instruction": instruction}] * 500, adapter=dspy.JSONAdapter()
    )


def two_conversation_fixture(tmp_path: Path) -> Path:
    """data/fixture/fixture.json plus a copy named fixture-2 (tune on fixture-1, hold out fixture-2)."""
    conversations = json.loads((ROOT / "data" / "fixture" / "fixture.json").read_text())
    copy = json.loads(json.dumps(conversations[0]))
    copy["sample_id"] = "fixture-2"
    path = tmp_path / "two.json"
    path.write_text(json.dumps([conversations[0], copy]))
    return path


def pipeline_reply(messages: list[dict]) -> dict:
    """Answers whichever LLM stage asks (by the first output field its system prompt names): one fact, one ADD,
    a summary, the answer "Lisbon"."""
    first = re.search(r"Your output fields are:\s*1\. `(\w+)`", system(messages))
    return {
        "facts": answer(facts=[{"fact": "Priya lives in Lisbon", "sources": [1]}]),
        "summary": answer(summary="Priya lives in Lisbon."),
        "operations": answer(operations=[{"event": "ADD", "text": "Priya lives in Lisbon"}]),
        "answer": answer(answer="Lisbon"),
    }[first.group(1) if first else "answer"]


def pipeline_make_lm(**kwargs) -> ScriptedLM:
    """Stands in for memtune.policies.lm.make_lm (monkeypatch): a pipeline LM for every configured LM."""
    return ScriptedLM(pipeline_reply)
