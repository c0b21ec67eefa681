"""What MemoryPolicy needs of each stage: the five stage interfaces in one place, as `typing.Protocol`s.

A stage variant is any class with these members (no base class to inherit); its knobs are a dataclass in its
family's file (extract.py, summarize.py, ...), built from the Hydra config conf/policy/<stage>/<variant>.yaml. LLM
variants are also `dspy.Module`s (their module state is what a bundle saves); LLM-free ones are plain classes. Every
method takes the policy's `CostMeter` and records its own time (and LM calls) under its phase name.

Only the knobs the policy and the Memory API read are named here (as protocols, not the family files' dataclasses):
this module is imported by policy.py, and a stage file it imported would count as ingestion code for the ingest
cache (optimize/evaluation/code_deps.py), so editing a retriever would re-ingest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from ..lm import CostMeter
from ..types import Decision, Fact, MemoryRecord, Message, Scope

if TYPE_CHECKING:
    from ..store.store import MemoryStore


class SummaryWindow(Protocol):
    window: int  # messages per refresh


class SimilarK(Protocol):
    similar_k: int  # s: stored memories compared with each fact


class TopK(Protocol):
    """A dataclass (the Memory API replaces top_k / threshold per call with dataclasses.replace)."""

    __dataclass_fields__: ClassVar[dict[str, Any]]
    top_k: int
    threshold: float | None


@runtime_checkable
class Extractor(Protocol):
    """New messages (+ the last messages and the rolling summary as context) -> candidate facts, each citing the
    dia_ids of the turns it came from."""

    def extract(self, new: list[Message], recent: list[Message], summary: str, meter: CostMeter) -> list[Fact]: ...


@runtime_checkable
class Summarizer(Protocol):
    """The rolling conversation summary the extractor reads: refreshed every `knobs.window` messages when
    `enabled`."""

    enabled: bool
    knobs: SummaryWindow

    def refresh(self, summary: str, pending: list[Message], meter: CostMeter) -> str: ...


@runtime_checkable
class Decider(Protocol):
    """Facts and the `knobs.similar_k` most similar stored memories of each -> ADD / UPDATE / DELETE / NOOP."""

    knobs: SimilarK

    def decide(self, facts: list[Fact], similar: list[list[MemoryRecord]], meter: CostMeter) -> list[Decision]: ...


@runtime_checkable
class Retriever(Protocol):
    """A question (and its embedding) -> the memories the answerer sees. The Memory API replaces `knobs.top_k` /
    `knobs.threshold` per call (dataclasses.replace on the knobs)."""

    knobs: TopK

    def retrieve(
        self, query: str, vector: np.ndarray, store: MemoryStore, scope: Scope, meter: CostMeter
    ) -> list[MemoryRecord]: ...


@runtime_checkable
class Answerer(Protocol):
    """A question and the retrieved memories -> a short answer; None when an LLM answerer failed after retries."""

    def answer(self, question: str, memories: list[MemoryRecord], meter: CostMeter) -> str | None: ...
