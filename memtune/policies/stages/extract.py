"""Extraction stage: new message pair (+ rolling summary, + last m messages) -> candidate facts.

Variants: `llm` (the Mem0 extraction call), and LLM-free baselines: `heuristic` (sentence/clause split,
small talk dropped), `verbatim` (the turn itself) and `chunks` (fixed-size chunks of turns, the RAG baseline;
verbatim is chunks of one turn). Every fact carries the dia_ids of the turns it came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import dspy

from ..lm import predict_with_retries
from ..metering import run_stage, timed
from ..provenance import SourceStats, cite
from ..types import Fact, Message
from .dates import parse_when, resolve_relative
from .instructions import use_instruction
from .programs import DEFAULT_DIR, load_program
from .signatures import ExtractFacts


@dataclass
class ExtractionKnobs:
    recent_messages: int = 10  # m: Mem0 paper §2.1 uses the last m=10 messages as extraction context
    min_words: int = 4  # heuristic: sentences shorter than this are dropped as small talk
    speaker_prefix: bool = True  # heuristic: prefix facts with "<speaker>: " so they name the person
    retries: int = 2  # llm: retries of a malformed answer before the pair is recorded and skipped
    chunk_turns: int = 1  # chunks (RAG baseline): turns per stored chunk; 1 = raw turns
    # heuristic, chunks: write after each relative date what it means from the day the message was said ("yesterday"
    # -> "yesterday (7 May 2023)"; stages/dates.py). Off: the text as said (the paper's extractor is an LLM that
    # sees the timestamp instead).
    resolve_dates: bool = False
    instruction: str = "mem0"  # llm: prompt library variant (prompts/extract/<name>.md); mem0 = the signature's own
    program: str | None = None  # llm: a compiled program state (memtune-compile) loaded at build time
    programs_dir: str = DEFAULT_DIR  # llm: where compiled programs live (<programs_dir>/extractor/<name>.json)


def render(message: Message) -> str:
    """A message as the LLM stages see it: '[timestamp] speaker: text'."""
    stamp = f"[{message.timestamp}] " if message.timestamp else ""
    return f"{stamp}{message.speaker}: {message.text}"


def number(lines: list[str]) -> list[str]:
    """Rendered messages as an LLM stage that cites its sources sees them: 'n. [timestamp] speaker: text', n from 1
    (small models copy a short number more reliably than a dia_id)."""
    return [f"{n}. {line}" for n, line in enumerate(lines, 1)]


def numbered(messages: list[Message]) -> list[str]:
    return number([render(m) for m in messages])


class ChunkExtractor:
    """RAG baseline: store raw text in chunks of `chunk_turns` turns (sliding windows that end at each new
    message pair, so consecutive chunks overlap by chunk_turns - pair size). Provenance lists every turn."""

    def __init__(self, **knobs):
        self.knobs = ExtractionKnobs(**knobs)
        if self.knobs.chunk_turns < 1:
            raise ValueError(f"extractor.chunk_turns must be >= 1, got {self.knobs.chunk_turns}")

    def extract(self, new: list[Message], recent: list[Message], summary: str) -> list[Fact]:
        size = self.knobs.chunk_turns
        with timed("extract"):
            if size <= len(new):
                windows = [new[i : i + size] for i in range(0, len(new), size)]
            else:
                windows = [(list(recent) + list(new))[-size:]]
            return [
                Fact(
                    "\n".join(f"{m.speaker}: {self._text(m)}" for m in w),
                    tuple(m.dia_id for m in w if m.dia_id),
                    w[-1].timestamp,
                )
                for w in windows
            ]

    def _text(self, message: Message) -> str:
        return _dated(message.text, message, self.knobs.resolve_dates)


def _dated(text: str, message: Message, resolve: bool) -> str:
    """`text` with its relative dates resolved from the message's timestamp when `resolve` is on."""
    return resolve_relative(text, parse_when(message.timestamp)) if resolve and message.timestamp else text


_SENTENCE = re.compile(r"(?<=[.!?])\s+|\s*\n+\s*")
_CLAUSE = re.compile(r";\s+|,\s+(?:but|and|so)\s+")
_SMALL_TALK = re.compile(
    r"^(hi|hey|hello|thanks|thank you|wow|great|awesome|cool|nice|congrats|congratulations|bye|see you|"
    r"take care|that's (great|awesome|amazing|cool)|sounds (great|good|fun)|glad|haha|lol|yeah|yes|no|ok|okay)\b",
    re.IGNORECASE,
)


class HeuristicExtractor:
    """Split each message into sentences (and long sentences into clauses); drop small talk and questions."""

    def __init__(self, **knobs):
        self.knobs = ExtractionKnobs(**knobs)

    def extract(self, new: list[Message], recent: list[Message], summary: str) -> list[Fact]:
        facts = []
        with timed("extract"):
            for message in new:
                for sentence in _SENTENCE.split(message.text):
                    for clause in _CLAUSE.split(sentence) if len(sentence.split()) > 25 else [sentence]:
                        clause = clause.strip()
                        if self._keep(clause):
                            clause = _dated(clause, message, self.knobs.resolve_dates)
                            facts.append(_fact(message, clause, self.knobs.speaker_prefix))
        return facts

    def _keep(self, clause: str) -> bool:
        words = clause.split()
        if len(words) < self.knobs.min_words or clause.endswith("?"):
            return False
        return not (_SMALL_TALK.match(clause) and len(words) < 2 * self.knobs.min_words)


class LLMExtractor(dspy.Module):
    """Mem0's extraction call: the new pair, the rolling summary and the last m messages -> facts.

    forward(new_messages, recent_messages, summary) -> Prediction(facts=[{"text", "sources"}]): plain data, messages
    rendered '[timestamp] speaker: text' (numbered here; the last m = knobs.recent_messages of recent_messages are
    shown); each fact's `sources` are the numbers of the new messages it cites, as the LM gave them. `extract` maps
    them to dia_ids (provenance.cite: invalid sources dropped, none valid -> the whole pair, counted in
    `sources`)."""

    phase = "extract"

    def __init__(self, **knobs):
        super().__init__()
        self.knobs = ExtractionKnobs(**knobs)
        self.predict = dspy.Predict(ExtractFacts)
        use_instruction(self.predict, "extract", self.knobs.instruction)
        if self.knobs.program:
            load_program(self, "extractor", self.knobs.program, self.knobs.programs_dir, self.knobs)
        self.sources = SourceStats()  # facts extracted, pair fallbacks, dropped sources (reported by the evaluation)

    def forward(
        self, new_messages: list[str], recent_messages: list[str] | None = None, summary: str = ""
    ) -> dspy.Prediction:
        m = self.knobs.recent_messages
        result = predict_with_retries(
            self.predict,
            self.phase,
            self.knobs.retries,
            summary=summary,
            recent_messages=list(recent_messages or [])[-m:] if m else [],
            new_messages=number(list(new_messages)),
        )
        facts = [
            {"text": item.fact.strip(), "sources": _as_list(item.sources)}
            for item in result.facts or []
            if item.fact.strip()
        ]
        return dspy.Prediction(facts=facts)

    def extract(self, new: list[Message], recent: list[Message], summary: str) -> list[Fact]:
        result = run_stage(
            self,
            ",".join(x.dia_id for x in new),
            new_messages=[render(x) for x in new],
            recent_messages=[render(x) for x in recent],
            summary=summary,
        )
        if result is None:
            return []
        stamp = new[-1].timestamp if new else ""
        return [Fact(f["text"], cite(f["sources"], new, self.sources), stamp) for f in result.facts]


def _as_list(sources: Any) -> list:
    return [] if sources is None else list(sources) if isinstance(sources, (list, tuple)) else [sources]


class ObservationExtractor:
    """ORACLE, not a policy: replays LOCOMO's GPT-written `observation` facts for the new turns.

    Production has no such annotations. Use it only to tune deciders and retrievers on realistic facts
    offline; never report it as a policy. `observations` maps dia_id -> list of (fact, provenance)."""

    oracle = True

    def __init__(self, observations: dict[str, list[tuple[str, tuple[str, ...]]]] | None = None, **knobs):
        self.knobs = ExtractionKnobs(**knobs)
        self.observations = observations or {}

    def extract(self, new: list[Message], recent: list[Message], summary: str) -> list[Fact]:
        with timed("extract"):
            return [Fact(text, prov, m.timestamp) for m in new for text, prov in self.observations.get(m.dia_id, [])]


def _fact(message: Message, text: str, prefix: bool) -> Fact:
    text = text.strip()
    return Fact(
        f"{message.speaker}: {text}" if prefix and message.speaker else text,
        (message.dia_id,) if message.dia_id else (),
        message.timestamp,
    )
