"""Summary stage: the rolling conversation summary S that the extractor reads as context.

Mem0 (paper §2.1) refreshes S asynchronously over the whole history. Here the refresh runs every `window`
messages and folds those messages into the previous summary, so S still covers the whole history.
"""

from __future__ import annotations

from dataclasses import dataclass

import dspy

from ..lm import CostMeter, call_predictor
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

    def refresh(self, summary: str, pending: list[Message], meter: CostMeter) -> str:
        return summary


class LLMSummarizer(dspy.Module):
    """Rolling LLM summary, refreshed every `window` messages."""

    enabled = True

    def __init__(self, **knobs):
        super().__init__()
        self.knobs = SummaryKnobs(**knobs)
        if self.knobs.window < 1:
            raise ValueError(f"summarizer.window must be >= 1, got {self.knobs.window}")
        self.predict = dspy.Predict(SummarizeConversation)

    def refresh(self, summary: str, pending: list[Message], meter: CostMeter) -> str:
        result = call_predictor(
            self.predict,
            meter,
            "summarize",
            item=",".join(m.dia_id for m in pending[-2:]),
            retries=self.knobs.retries,
            previous_summary=summary,
            new_messages=[render(m) for m in pending],
        )
        return summary if result is None else str(result.summary or "").strip()
