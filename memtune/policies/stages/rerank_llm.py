"""A reranker scorer that asks an LM (through DSPy, the policy's `lm`), listwise or pointwise.

* listwise: one call with the numbered memories; the LM returns memory numbers, most useful first. Score of the
  memory at position p of that ranking: n - p; memories it left out score -1 (after every ranked one; among
  themselves they keep the fused order, the sort being stable). Numbers out of range or repeated are ignored.
* pointwise: one call per memory, a relevance from 0 to 10.

Malformed output is retried with a fresh rollout (bypassing DSPy's cache of the bad answer), `retries` times; then
the scorer raises and the reranker stage (rerank.py) counts the failure and keeps the fused order. The policy
refuses to build a retriever with this scorer and no LM (policy.py).
"""

from __future__ import annotations

from typing import Literal

import dspy


class RankMemories(dspy.Signature):
    """Rank the memories by how useful each one is for answering the question about the conversation's
    speakers. Return the numbers of the useful memories, most useful first."""

    question: str = dspy.InputField()
    memories: list[str] = dspy.InputField(desc="numbered memories: 'n. text'")
    ranking: list[int] = dspy.OutputField(desc="memory numbers, most useful first")


class RateMemory(dspy.Signature):
    """How useful is this memory for answering the question about the conversation's speakers? 0 = useless,
    10 = it answers the question."""

    question: str = dspy.InputField()
    memory: str = dspy.InputField()
    relevance: int = dspy.OutputField(desc="an integer from 0 to 10")


class LLMScorer(dspy.Module):
    def __init__(self, mode: Literal["listwise", "pointwise"] = "listwise", retries: int = 1):
        super().__init__()
        if mode not in ("listwise", "pointwise"):
            raise ValueError(f"LLMScorer mode must be 'listwise' or 'pointwise', got {mode!r}")
        self.mode, self.retries = mode, int(retries)
        self.rank = dspy.Predict(RankMemories)
        self.rate = dspy.Predict(RateMemory)

    phase = "rerank"  # its LM calls are metered under this phase (policies/metering.py)

    def score(self, query: str, texts: list[str]) -> list[float]:
        return list(self(query=query, texts=list(texts)).scores) if texts else []

    def forward(self, query: str, texts: list[str]) -> dspy.Prediction:
        """Plain data in and out: one relevance score per text (higher: more relevant)."""
        if self.mode == "pointwise":
            return dspy.Prediction(scores=[float(self._call(self._rate, query, t)) for t in texts])
        return dspy.Prediction(scores=self._call(self._listwise, query, texts))

    def _call(self, fn, *args):
        error: Exception | None = None
        for attempt in range(self.retries + 1):
            config = {} if attempt == 0 else {"rollout_id": attempt, "temperature": 1.0}
            try:
                return fn(*args, config=config)
            except Exception as exc:  # malformed output, schema violations, endpoint errors: retry, then raise
                error = exc
        assert error is not None
        raise error

    def _rate(self, query: str, text: str, config: dict) -> int:
        value = int(self.rate(question=query, memory=text, config=config).relevance)
        if not 0 <= value <= 10:
            raise ValueError(f"relevance {value} is not in 0..10")
        return value

    def _listwise(self, query: str, texts: list[str], config: dict) -> list[float]:
        numbered = [f"{i}. {t}" for i, t in enumerate(texts, 1)]
        ranking = self.rank(question=query, memories=numbered, config=config).ranking or []
        scores = [-1.0] * len(texts)
        position = 0
        for number in ranking:
            if isinstance(number, int) and 1 <= number <= len(texts) and scores[number - 1] == -1.0:
                scores[number - 1] = float(len(texts) - position)
                position += 1
        if position == 0:
            raise ValueError(f"the ranking names no listed memory: {ranking!r}")
        return scores
