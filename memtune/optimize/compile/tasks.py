"""One stage scored on its own: the per-example score and feedback an optimiser sees, and the report over a set
(definitions: optimize/compile/metrics.py). `score(example, prediction)` takes forward()'s plain prediction, or
None when the stage failed after its retries (scored as the worst answer and counted in `failures`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..evaluation.metrics import f1_set
from .metrics import FACT_MATCH_COSINE, FactScore, decision_correct, decision_report, fact_score, micro_fact_score


class ExtractionTask:
    stage, main = "extractor", "f"

    def __init__(self, embed: Callable[[list[str]], np.ndarray], threshold: float = FACT_MATCH_COSINE):
        self.embed, self.threshold = embed, threshold

    def score(self, example: Any, prediction: Any | None) -> tuple[float, dict]:
        facts = [f["text"] for f in prediction.facts] if prediction is not None else []
        result, matches = fact_score(facts, list(example.silver), self.embed, self.threshold)
        return result.f, {"fact_score": result, "matches": matches, "facts": facts}

    def feedback(self, example: Any, detail: dict) -> str:
        result: FactScore = detail["fact_score"]
        facts, silver = detail["facts"], list(example.silver)
        missed = [s for j, s in enumerate(silver) if j not in {m[1] for m in detail["matches"]}]
        extra = [f for i, f in enumerate(facts) if i not in {m[0] for m in detail["matches"]}]
        return (
            f"Extracted {result.extracted} fact(s), {result.matched} of the {result.silver} reference fact(s) found "
            f"(precision {result.precision:.2f}, recall {result.recall:.2f}). "
            + (f"Missed: {missed}. " if missed else "")
            + (f"Not in the reference (too vague, split or merged, or not worth keeping): {extra}." if extra else "")
        ).strip()

    def report(self, details: Sequence[dict]) -> dict:
        return micro_fact_score([d["fact_score"] for d in details])


class DecisionTask:
    stage, main = "decider", "accuracy"

    def score(self, example: Any, prediction: Any | None) -> tuple[float, dict]:
        operations = list(prediction.operations) if prediction is not None else None
        predicted, ok = decision_correct(example.expected_op, example.expected_target, example.value, operations)
        return float(ok), {"expected": example.expected_op, "predicted": predicted, "correct": ok, "ops": operations}

    def feedback(self, example: Any, detail: dict) -> str:
        target = f" of memory {example.expected_target}" if example.expected_op == "UPDATE" else ""
        verdict = "Correct." if detail["correct"] else "Wrong."
        return (
            f"{verdict} Expected {example.expected_op}{target} for the new fact {example.new_facts[0]!r}"
            f"{' (the stored text must keep ' + repr(example.value) + ')' if example.expected_op != 'NOOP' else ''}; "
            f"the operations given resolve to {detail['predicted']}: {detail['ops']}."
        )

    def report(self, details: Sequence[dict]) -> dict:
        return decision_report([(d["expected"], d["predicted"], d["correct"]) for d in details])


class AnswerTask:
    """F1 against the gold answer; with a judge (optimize/evaluation/judge.Judge), J instead (F1 reported beside)."""

    stage = "answerer"

    def __init__(self, judge: Any | None = None):
        self.judge = judge
        self.main = "judge" if judge is not None else "f1"

    def score(self, example: Any, prediction: Any | None) -> tuple[float, dict]:
        answer = str(prediction.answer) if prediction is not None else None
        f1 = f1_set(answer, example.answer) if answer is not None else 0.0
        detail: dict = {"answer": answer, "f1": f1}
        if self.judge is None:
            return f1, detail
        judged = 0.0 if answer is None else self.judge.score(example.qid, example.question, example.answer, answer)
        detail["judge"] = 0.0 if judged is None else judged  # a judge failure counts WRONG, as in memtune-eval
        return detail["judge"], detail

    def feedback(self, example: Any, detail: dict) -> str:
        judged = f", judge {'CORRECT' if detail.get('judge') else 'WRONG'}" if "judge" in detail else ""
        return f"Gold answer {example.answer!r}; the answer given {detail['answer']!r} scores F1 {detail['f1']:.2f}{judged}."

    def report(self, details: Sequence[dict]) -> dict:
        n = len(details)
        out = {"n": n, "f1": sum(d["f1"] for d in details) / n if n else 0.0}
        if self.judge is not None:
            out["judge"] = sum(d["judge"] for d in details) / n if n else 0.0
        return out
