"""What MemoryPolicy needs of each stage: the five stage interfaces in one place, as `typing.Protocol`s.

A stage variant is any class with these members (no base class to inherit); its knobs are a dataclass in its
family's file (extract.py, summarize.py, ...), built from the Hydra config conf/policy/<stage>/<variant>.yaml.
LLM-free variants are plain classes that time their work with `metering.timed(<phase>)`. LLM variants are also
DSPy programs (`LLMStage`): a `dspy.Module` with a `phase` name whose `forward()` takes and returns plain data, so
`dspy.Evaluate` and DSPy's optimisers run on it as it is and a bundle saves its module state; the method named here
is a thin adapter (records -> plain inputs, `self(...)`, plain outputs -> records) that also validates what the
stage returns. No method takes a meter: the policy meters its stage calls (policies/metering.py).

Only the knobs the policy and the Memory API read are named here (as protocols, not the family files' dataclasses):
this module is imported by policy.py, and a stage file it imported would count as ingestion code for the ingest
cache (optimize/evaluation/code_deps.py), so editing a retriever would re-ingest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import dspy
import numpy as np

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

    def extract(self, new: list[Message], recent: list[Message], summary: str) -> list[Fact]: ...


@runtime_checkable
class Summarizer(Protocol):
    """The rolling conversation summary the extractor reads: refreshed every `knobs.window` messages when
    `enabled`."""

    enabled: bool
    knobs: SummaryWindow

    def refresh(self, summary: str, pending: list[Message]) -> str: ...


@runtime_checkable
class Decider(Protocol):
    """Facts and the `knobs.similar_k` most similar stored memories of each -> ADD / UPDATE / DELETE / NOOP."""

    knobs: SimilarK

    def decide(self, facts: list[Fact], similar: list[list[MemoryRecord]]) -> list[Decision]: ...


@runtime_checkable
class Retriever(Protocol):
    """A question (and its embedding) -> the memories the answerer sees. The Memory API replaces `knobs.top_k` /
    `knobs.threshold` per call (dataclasses.replace on the knobs)."""

    knobs: TopK

    def retrieve(self, query: str, vector: np.ndarray, store: MemoryStore, scope: Scope) -> list[MemoryRecord]: ...


@runtime_checkable
class Answerer(Protocol):
    """A question and the retrieved memories -> a short answer; None when an LLM answerer failed after retries."""

    def answer(self, question: str, memories: list[MemoryRecord]) -> str | None: ...


@runtime_checkable
class LLMStage(Protocol):
    """An LLM stage as a DSPy program (also a `dspy.Module`): `stage(**plain inputs)` runs `forward` and returns a
    `dspy.Prediction` of plain data (the fields each class's docstring lists); it retries malformed LM output and
    raises `lm.LMStageError` after the last attempt. `phase` names it in the cost meter (extract, summarize,
    decide, answer, judge, graph_entities, graph_relations, graph_conflicts)."""

    phase: str

    def __call__(self, *args: Any, **kwargs: Any) -> dspy.Prediction: ...
