"""Answer stage: question + retrieved memories -> a short answer.

Variants: `llm` (Mem0's answer call, memories shown with the time they were said) and the LLM-free
`extractive` baseline, which returns the best-matching span of the best memory (or its date for
"when" questions): LOCOMO answers are a few words, so returning a whole memory scores poorly on F1.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

import dspy

from ..lm import predict_with_retries
from ..metering import run_stage, timed
from ..types import MemoryRecord
from .signatures import AnswerQuestion

NOT_MENTIONED = "Not mentioned"


@dataclass
class AnswerKnobs:
    max_words: int = 6  # mem0's answer prompt asks for "less than 5-6 words"
    candidates: int = 3  # extractive: how many top memories to take spans from
    dates_for_when: bool = True  # extractive: answer "when ..." questions with the memory's date
    retries: int = 2


def memory_context(memories: Sequence[MemoryRecord]) -> list[dict]:
    """The items the answerer is shown: each memory with the time it was said; a graph triplet (Mem0g) also with
    when it held: valid_from, and invalid_since when a later triplet superseded it. A superseded vector memory
    (soft invalidation, retrieved with include_history) also says since when it no longer holds: invalid_since
    (its valid_from is its said_at, so a memory that still holds costs no extra tokens)."""
    return [_graph_context(m) if m.metadata.get("kind") == "graph" else _vector_context(m) for m in memories]


def _vector_context(m: MemoryRecord) -> dict:
    item = {"said_at": m.timestamp, "memory": m.text}
    if m.invalid_at:
        item["invalid_since"] = m.invalid_at
    return item


def render_context(memories: Sequence[MemoryRecord]) -> str:
    """THE text the answerer reads for `memories` (best first): the JSON list of their `memory_context` items.

    One definition for three uses: the LLM answerer's `memories` input (passed as this string; DSPy writes a
    string value into the prompt as it is, so the prompt equals what DSPy makes of the list itself), the
    evaluation's `context_tokens`, and the budget walk of `recall_ctx_<B>` (tokens of `render_context` of
    each leading prefix). Keep it that way: a budget counted on anything else stops being a budget."""
    return render_items(memory_context(memories))


def render_items(items: list[dict]) -> str:
    """`memory_context` items as the answerer reads them (see `render_context`)."""
    return json.dumps(items, ensure_ascii=False)


def _graph_context(m: MemoryRecord) -> dict:
    meta = m.metadata
    item = {
        "said_at": m.timestamp,
        "memory": f"{meta['source']} -- {meta['relation']} -- {meta['destination']}",
        "valid_from": meta.get("valid_from", ""),
    }
    if meta.get("invalidated_at"):
        item["invalid_since"] = meta["invalidated_at"]
    return item


_WORD = re.compile(r"[A-Za-z0-9']+")
_STOP = frozenset(
    "a an the and or but of to in on at for with by from as is are was were be been being do does did have has had "
    "i you he she it we they me him her us them my your his its our their this that these those what which who whom "
    "whose when where why how would will can could should shall may might must not no so if then than there here "
    "about into over after before up down out also just very really some any all more most much many such too".split()
)
_SPAN = re.compile(r"[.!?;,:()\[\]]\s*|\s+-\s+|\band\b|\bbut\b|\bbecause\b")
_TIME_OF_DAY = re.compile(r"^\s*\d{1,2}:\d{2}\s*(am|pm)\s+on\s+", re.IGNORECASE)


def _content(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


class ExtractiveAnswerer:
    """Pick the span of the top memories that best matches the question, minus the question's own words."""

    def __init__(self, **knobs):
        self.knobs = AnswerKnobs(**knobs)

    def answer(self, question: str, memories: list[MemoryRecord]) -> str:
        with timed("answer"):
            if not memories:
                return NOT_MENTIONED
            if self.knobs.dates_for_when and question.lower().lstrip().startswith("when"):
                return _TIME_OF_DAY.sub("", memories[0].timestamp).replace(",", "") or NOT_MENTIONED
            asked = set(_content(question))
            best, best_score = "", -1.0
            for rank, memory in enumerate(memories[: self.knobs.candidates]):
                text = memory.text.split(": ", 1)[-1]  # drop the "<speaker>: " prefix
                for span in _SPAN.split(text):
                    words = _content(span)
                    if not words:
                        continue
                    overlap = len(asked & set(words)) / len(set(words)) ** 0.5
                    new_words = [w for w in span.split() if w.lower().strip(".,!?'\"") not in asked]
                    score = overlap / (1 + rank) + (0.01 if new_words else -1)
                    if score > best_score:
                        best, best_score = " ".join(new_words) or span, score
            words = [w for w in best.split() if w.lower() not in _STOP] or best.split()
            return " ".join(words[: self.knobs.max_words]) or NOT_MENTIONED


class LLMAnswerer(dspy.Module):
    """Mem0's answer call: the question and the top-k memories with their timestamps.

    forward(question, memories=[{"said_at", "memory", ...}]) -> Prediction(answer): plain data, `memories` the
    `memory_context` items, best first (the prompt carries them as `render_context` writes them)."""

    phase = "answer"

    def __init__(self, **knobs):
        super().__init__()
        self.knobs = AnswerKnobs(**knobs)
        self.predict = dspy.Predict(AnswerQuestion)

    def forward(self, question: str, memories: list[dict]) -> dspy.Prediction:
        result = predict_with_retries(
            self.predict, self.phase, self.knobs.retries, question=question, memories=render_items(list(memories))
        )
        return dspy.Prediction(answer=str(result.answer or "").strip())

    def answer(self, question: str, memories: list[MemoryRecord]) -> str | None:
        """The answer, or None when the LM failed after its retries (recorded in the meter's failures): a failed
        answer is not an empty one, so the evaluation scores it 0 and never counts it as an abstention."""
        result = run_stage(self, question[:60], question=question, memories=memory_context(memories))
        return None if result is None else result.answer
