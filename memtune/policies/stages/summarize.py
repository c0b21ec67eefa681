"""Summary stage: the rolling conversation summary S that the extractor reads as context.

Mem0 (paper §2.1) refreshes S asynchronously over the whole history. Here the refresh runs every `window`
messages and folds those messages into the previous summary, so S still covers the whole history.
"""

from __future__ import annotations

from dataclasses import dataclass

import dspy

from ..lm import predict_with_retries
from ..metering import run_stage
from ..types import Message
from .extract import render
from .signatures import SummarizeConversation


@dataclass
class SummaryKnobs:
    window: int = 20  # messages per refresh; the paper gives no number (asynchronous refresh over all history)
    retries: int = 2


class NoSummarizer:
    """Summary disabled: the extractor gets an empty summary."""

    enabled = False

    def __init__(self, **knobs):
        self.knobs = SummaryKnobs(**knobs)

    def refresh(self, summary: str, pending: list[Message]) -> str:
        return summary


class LLMSummarizer(dspy.Module):
    """Rolling LLM summary, refreshed every `window` messages.

    forward(previous_summary, new_messages) -> Prediction(summary): plain data, messages rendered
    '[timestamp] speaker: text'. `refresh` keeps the previous summary when the LM gave no usable answer."""

    enabled = True
    phase = "summarize"

    def __init__(self, **knobs):
        super().__init__()
        self.knobs = SummaryKnobs(**knobs)
        if self.knobs.window < 1:
            raise ValueError(f"summarizer.window must be >= 1, got {self.knobs.window}")
        self.predict = dspy.Predict(SummarizeConversation)

    def forward(self, previous_summary: str, new_messages: list[str]) -> dspy.Prediction:
        result = predict_with_retries(
            self.predict,
            self.phase,
            self.knobs.retries,
            previous_summary=previous_summary,
            new_messages=list(new_messages),
        )
        return dspy.Prediction(summary=str(result.summary or "").strip())

    def refresh(self, summary: str, pending: list[Message]) -> str:
        result = run_stage(
            self,
            ",".join(m.dia_id for m in pending[-2:]),
            previous_summary=summary,
            new_messages=[render(m) for m in pending],
        )
        return summary if result is None else result.summary
