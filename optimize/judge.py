"""LLM-as-judge metric J: CORRECT / WRONG, generous on paraphrase and date format (mem0's evaluation judge,
mem0ai/mem0 evaluation/metrics/llm_judge.py, ACCURACY_PROMPT). The judge has its own LM, configured apart
from the policy's (conf/judge/), and its tokens are reported apart from the policy's cost."""

from __future__ import annotations

from typing import Literal

import dspy
from memtune.policies.lm import CostMeter, call_predictor


class JudgeAnswer(dspy.Signature):
    """Label a generated answer to a question about a conversation between two people as CORRECT or WRONG
    against the gold answer. Be generous: if the generated answer touches on the same topic as the gold
    answer, it is CORRECT. For time questions, if it refers to the same date or period as the gold answer it
    is CORRECT even when the format differs ("May 7th" vs "7 May") or it uses a relative reference that
    resolves to it. A generated answer that is missing, off-topic or contradicts the gold answer is WRONG."""

    question: str = dspy.InputField()
    gold_answer: str = dspy.InputField()
    generated_answer: str = dspy.InputField()
    reasoning: str = dspy.OutputField(desc="one short sentence")
    label: Literal["CORRECT", "WRONG"] = dspy.OutputField()


class Judge(dspy.Module):
    """J for one question: 1.0 CORRECT, 0.0 WRONG, None when the judge failed (recorded in the meter)."""

    def __init__(self, lm: dspy.LM, retries: int = 2):
        super().__init__()
        self.lm = lm
        self.retries = retries
        self.meter = CostMeter()
        self.predict = dspy.Predict(JudgeAnswer)

    def score(self, qid: str, question: str, gold: str, prediction: str) -> float | None:
        with dspy.context(lm=self.lm):
            result = call_predictor(
                self.predict,
                self.meter,
                "judge",
                item=qid,
                retries=self.retries,
                question=question,
                gold_answer=gold,
                generated_answer=prediction,
            )
        return None if result is None else float(result.label == "CORRECT")
