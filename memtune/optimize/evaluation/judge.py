"""LLM-as-judge metric J: CORRECT / WRONG. Two prompts, both in this project's words: `lenient` (the default), generous
on paraphrase and date format like mem0's evaluation judge (mem0ai/mem0 evaluation/metrics/llm_judge.py,
ACCURACY_PROMPT), and `strict`, which wants the gold answer's specific content (`judge.prompt=strict`). The judge
has its own LM, configured apart from the policy's (conf/judge/), and its tokens are reported apart from the
policy's cost. How lenient a judge is, and how far judges agree: optimize/evaluation/judge_checks.py."""

from __future__ import annotations

from typing import Literal

import dspy

from ...policies.lm import CostMeter, predict_with_retries
from ...policies.metering import metering, run_stage


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


class JudgeAnswerStrict(dspy.Signature):
    """Label a generated answer to a question about a conversation between two people as CORRECT or WRONG
    against the gold answer. It is CORRECT only when it gives the same specific information as the gold answer:
    the same person, place, thing, number or date, at least as precise as the gold answer (another date format or
    other words for the same thing are fine). It is WRONG when it is vaguer than the gold answer ("a city",
    "sometime last year", "someone", "several"), names another person, place, thing, number or date, hedges
    between answers, leaves out part of a gold answer that lists several things, contradicts the gold answer, or
    is missing."""

    question: str = dspy.InputField()
    gold_answer: str = dspy.InputField()
    generated_answer: str = dspy.InputField()
    reasoning: str = dspy.OutputField(desc="one short sentence")
    label: Literal["CORRECT", "WRONG"] = dspy.OutputField()


PROMPTS = {"lenient": JudgeAnswer, "strict": JudgeAnswerStrict}


class Judge(dspy.Module):
    """J for one question: 1.0 CORRECT, 0.0 WRONG, None when the judge failed (recorded in `self.meter`).

    forward(question, gold_answer, generated_answer) -> Prediction(label: "CORRECT" | "WRONG", reasoning): plain
    data, a DSPy program like the policy's LLM stages (a judge can be evaluated and compiled on its own). `score`
    runs it with the judge's own LM and meters it into the judge's own meter, apart from the policy's cost."""

    phase = "judge"

    def __init__(self, lm: dspy.LM, retries: int = 2, prompt: str = "lenient", name: str | None = None):
        super().__init__()
        if prompt not in PROMPTS:
            raise ValueError(f"judge.prompt={prompt!r}: choose one of {sorted(PROMPTS)}")
        self.lm = lm
        self.retries = retries
        self.prompt = prompt
        self.name = name or prompt  # how summary.json judge_checks and the reports name this judge
        self.meter = CostMeter()
        self.predict = dspy.Predict(PROMPTS[prompt])

    def forward(self, question: str, gold_answer: str, generated_answer: str) -> dspy.Prediction:
        result = predict_with_retries(
            self.predict,
            self.phase,
            self.retries,
            question=question,
            gold_answer=gold_answer,
            generated_answer=generated_answer,
        )
        return dspy.Prediction(label=str(result.label), reasoning=str(result.reasoning or "").strip())

    def score(self, qid: str, question: str, gold: str, prediction: str) -> float | None:
        with metering(self.meter), dspy.context(lm=self.lm):
            result = run_stage(self, qid, question=question, gold_answer=gold, generated_answer=prediction)
        return None if result is None else float(result.label == "CORRECT")


def judge_question(
    judge: Judge | None, qid: str, question: str, gold: str, prediction: str | None, category: int
) -> dict:
    """The per-question J columns: `judge` and `judge_failed`.

    - no judge LM, or category 5 (mem0 judges categories 1-4 only; category 5 is scored by abstention):
      judge None (J is not defined for the question), judge_failed False;
    - the answer failed (`prediction` None): judge 0.0 (WRONG) without asking the judge, judge_failed False;
    - the judge failed after its retries (recorded in `judge.meter`): judge 0.0 (WRONG), judge_failed True;
    - else the judge's label: 1.0 CORRECT, 0.0 WRONG.

    So J's denominator is every question J is defined for (`judge_n` in the summary): a failure can never shrink
    it, and a sweep cannot raise J by making the judge (or the answerer) fail. `judge_judged_only` in the summary
    is J over the questions the judge labelled (`n_judged`), for comparison."""
    if judge is None or category == 5:
        return {"judge": None, "judge_failed": False}
    if prediction is None:
        return {"judge": 0.0, "judge_failed": False}
    score = judge.score(qid, question, gold, prediction)
    return {"judge": 0.0 if score is None else score, "judge_failed": score is None}
