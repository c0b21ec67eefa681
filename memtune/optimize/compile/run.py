"""Scoring a stage program on a set of examples, and running one DSPy optimiser on it (memtune-compile's core,
usable from Python: `evaluate_stage`, `compile_stage`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dspy

from ...policies.lm import LMStageError
from ..threads import in_order
from .tokens import TokenCounter

OPTIMIZERS = ("bootstrap", "mipro", "gepa")


def evaluate_stage(program: dspy.Module, examples: Sequence[dspy.Example], task: Any, num_threads: int = 1) -> dict:
    """The task's report over `examples` (its main number under `score`), with tokens per example (prompt +
    completion, counted: optimize/compile/tokens.py) and the stage failures (scored as the worst answer)."""
    counter = TokenCounter()

    def one(index: int) -> tuple[Any | None, bool]:
        with counter.example(index):
            try:
                return program(**examples[index].inputs()), False
            except LMStageError:
                return None, True

    results = in_order(one, range(len(examples)), num_threads)
    details, scores = [], []
    for example, (prediction, _) in zip(examples, results):
        score, detail = task.score(example, prediction)
        details.append(detail)
        scores.append(score)
    tokens = [counter.tokens(i) for i in range(len(examples))]
    report = task.report(details)
    return {
        **report,
        "score": report[task.main],
        "metric": task.main,
        "n": len(examples),
        "failures": sum(failed for _, failed in results),
        "tokens_per_example": sum(tokens) / len(tokens) if tokens else 0.0,
        "tokens_total": sum(tokens),
        "per_example": scores,
    }


def optimizer_metric(task: Any, with_feedback: bool):
    """The stage metric as a DSPy optimiser calls it: a float, or (GEPA) a Prediction with score and feedback."""

    def metric(example, prediction, trace=None, pred_name=None, pred_trace=None):
        score, detail = task.score(example, prediction)
        if with_feedback:
            return dspy.Prediction(score=score, feedback=task.feedback(example, detail))
        return score

    return metric


def compile_stage(
    student: dspy.Module,
    task: Any,
    optimizer: Mapping[str, Any],
    trainset: list[dspy.Example],
    valset: list[dspy.Example],
    *,
    proposer_lm: dspy.LM | None = None,
    num_threads: int = 1,
) -> dspy.Module:
    """Compile `student` with optimizer `optimizer["name"]` (bootstrap | mipro | gepa; conf/optimizer/*.yaml) under
    the current dspy.settings.lm (the task LM). `proposer_lm` proposes instructions (GEPA's reflection LM, MIPROv2's
    prompt model); default: the task LM."""
    name = optimizer.get("name")
    opts = {k: v for k, v in optimizer.items() if k != "name"}
    if name == "bootstrap":
        return dspy.BootstrapFewShot(
            metric=optimizer_metric(task, False),
            metric_threshold=opts.get("metric_threshold"),
            max_bootstrapped_demos=int(opts.get("max_bootstrapped_demos", 4)),
            max_labeled_demos=int(opts.get("max_labeled_demos", 0)),
            max_rounds=int(opts.get("max_rounds", 1)),
        ).compile(student, trainset=trainset)
    if name == "mipro":
        auto = opts.get("auto")
        if auto is None and (opts.get("num_candidates") is None or opts.get("num_trials") is None):
            raise ValueError("optimizer=mipro with optimizer.auto=null needs optimizer.num_candidates and num_trials")
        mipro = dspy.MIPROv2(
            metric=optimizer_metric(task, False),
            prompt_model=proposer_lm,
            auto=auto,
            num_candidates=opts.get("num_candidates") if auto is None else None,
            max_bootstrapped_demos=int(opts.get("max_bootstrapped_demos", 2)),
            max_labeled_demos=int(opts.get("max_labeled_demos", 0)),
            num_threads=num_threads,
            seed=int(opts.get("seed", 9)),
            verbose=False,
            track_stats=False,
        )
        return mipro.compile(
            student,
            trainset=trainset,
            valset=valset or None,
            num_trials=opts.get("num_trials") if auto is None else None,
            minibatch=bool(opts.get("minibatch", True)) and len(valset) > int(opts.get("minibatch_size", 35)),
            minibatch_size=int(opts.get("minibatch_size", 35)),
        )
    if name == "gepa":
        budgets = {k: opts.get(k) for k in ("auto", "max_metric_calls", "max_full_evals") if opts.get(k) is not None}
        if len(budgets) != 1:
            raise ValueError(
                f"optimizer=gepa needs exactly one budget of auto, max_metric_calls, max_full_evals; got {budgets or 'none'}"
                " (e.g. optimizer.auto=null optimizer.max_metric_calls=200)"
            )
        gepa = dspy.GEPA(
            metric=optimizer_metric(task, True),
            **budgets,
            reflection_lm=proposer_lm or dspy.settings.lm,
            reflection_minibatch_size=int(opts.get("reflection_minibatch_size", 3)),
            use_merge=bool(opts.get("use_merge", True)),
            num_threads=num_threads,
            seed=int(opts.get("seed", 0)),
            track_stats=False,
        )
        return gepa.compile(student, trainset=trainset, valset=valset or None)
    raise ValueError(f"optimizer={name!r}: choose one of {list(OPTIMIZERS)} (conf/optimizer/)")
