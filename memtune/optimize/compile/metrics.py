"""Stage metrics for compiling (memtune-compile) and scoring one LLM stage on its own: pure functions, exact
definitions, hand-computed tests in tests/test_stage_metrics.py.

Extraction (silver labels: LOCOMO's per-session `observation` facts of the same turns)
    Facts are matched one to one: every (extracted, silver) pair with cosine >= FACT_MATCH_COSINE is a candidate;
    candidates are taken greedily, highest cosine first, each extracted and each silver fact at most once (ties:
    lower extracted index, then lower silver index). With m matches, p extracted and g silver facts:
        precision = m / p, recall = m / g, F = 2PR / (P + R)
    per example, with the conventions p = 0 -> precision 1, g = 0 -> recall 1 (so nothing extracted from a
    turn without silver facts scores F = 1, and anything extracted from it F = 0). Over a set, micro averages:
    P = sum m / sum p, R = sum m / sum g (each 1 when its denominator is 0), F from those. Emitting many facts
    costs precision (a duplicate matches nothing: each silver fact is matched once); one long fact that strings
    several together matches at most one silver fact. Tokens (prompt + completion per call) are reported beside.
Decisions (labels: data/updates/updates.labels.json, the expected ADD / UPDATE / NOOP of each fact)
    The decider's operations for one new fact resolve to one predicted operation: no write (empty, or NOOPs only)
    -> NOOP; exactly one write -> that write (ADD, UPDATE or DELETE); a DELETE and an ADD -> UPDATE of the deleted
    memory with the added text (the same store, in two steps); other sets of writes -> MULTI (never right). It is
    correct when the predicted operation equals the expected one and, for UPDATE, names the expected memory and
    its text keeps the new value's content words; for ADD, the text keeps them too. A failed call is FAILED.
        accuracy = correct / n
        per operation o: precision_o = correct_o / predicted_o, recall_o = correct_o / expected_o, F1_o
        macro_f1 = mean F1_o over the operations that are expected at least once
    An add-everything decider gets ADD right and every UPDATE and NOOP wrong: high recall on ADD, F1 0 on the
    others, so macro F1 exposes it where accuracy alone (ADD is 36% of the labels) might not.
Answers (context: the gold evidence turns)
    mem0's token F1 (`f1_set`) of the answer against the gold answer; J with a judge LM instead when configured.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

# all-MiniLM-L6-v2 cosine at or above which an extracted fact counts as the silver fact. Measured on conv-26 (300
# observations): an observation vs the raw turn it cites (a loose paraphrase, speaker-prefixed) reaches 0.65 in 62%
# of pairs (median 0.71), an observation vs a random other observation of the same conversation in 7% (median
# 0.42); 0.60 would let 11% of those through, 0.70 would miss half the paraphrases.
FACT_MATCH_COSINE = 0.65
OPS = ("ADD", "UPDATE", "DELETE", "NOOP")
WRITES = ("ADD", "UPDATE", "DELETE")


# ------------------------------------------------------------------------------------------------ extraction
def greedy_matches(similarity: np.ndarray, threshold: float = FACT_MATCH_COSINE) -> list[tuple[int, int]]:
    """One-to-one matches (extracted row i, silver column j) with similarity >= threshold, greedily by similarity."""
    sim = np.asarray(similarity, dtype=np.float64)
    if sim.size == 0:
        return []
    rows, cols = np.nonzero(sim >= threshold)
    order = sorted(zip(rows.tolist(), cols.tolist()), key=lambda ij: (-sim[ij[0], ij[1]], ij[0], ij[1]))
    used_r: set[int] = set()
    used_c: set[int] = set()
    out = []
    for i, j in order:
        if i not in used_r and j not in used_c:
            used_r.add(i)
            used_c.add(j)
            out.append((i, j))
    return out


@dataclass(frozen=True)
class FactScore:
    matched: int
    extracted: int
    silver: int

    @property
    def precision(self) -> float:
        return self.matched / self.extracted if self.extracted else 1.0

    @property
    def recall(self) -> float:
        return self.matched / self.silver if self.silver else 1.0

    @property
    def f(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def fact_score(
    extracted: Sequence[str],
    silver: Sequence[str],
    embed: Callable[[list[str]], np.ndarray],
    threshold: float = FACT_MATCH_COSINE,
) -> tuple[FactScore, list[tuple[int, int]]]:
    """Score one example's extracted facts against its silver facts; `embed` returns L2-normalised rows."""
    extracted, silver = [str(x) for x in extracted], [str(x) for x in silver]
    if not extracted or not silver:
        return FactScore(0, len(extracted), len(silver)), []
    vectors = np.asarray(embed(extracted + silver), dtype=np.float64)
    matches = greedy_matches(vectors[: len(extracted)] @ vectors[len(extracted) :].T, threshold)
    return FactScore(len(matches), len(extracted), len(silver)), matches


def micro_fact_score(scores: Sequence[FactScore]) -> dict[str, float | int]:
    total = FactScore(sum(s.matched for s in scores), sum(s.extracted for s in scores), sum(s.silver for s in scores))
    return {
        "precision": total.precision,
        "recall": total.recall,
        "f": total.f,
        "matched": total.matched,
        "extracted": total.extracted,
        "silver": total.silver,
    }


# ------------------------------------------------------------------------------------------------ decisions
_WORD = re.compile(r"[a-z0-9']+")
_STOP = frozenset("a an the of to in on at for by with and or is are was be as from".split())


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(str(text).lower()) if w not in _STOP}


def predicted_operation(operations: Sequence[Mapping] | None) -> tuple[str, int | None, str]:
    """(event, target id, text) the decider's operations for one fact resolve to; None operations = FAILED."""
    if operations is None:
        return "FAILED", None, ""
    writes = [op for op in operations if op.get("event") in WRITES]
    if not writes:
        return "NOOP", None, ""
    events = sorted(str(op.get("event")) for op in writes)
    if events == ["ADD", "DELETE"]:  # delete the old memory and add the new one: an update done in two steps
        deleted = next(op for op in writes if op.get("event") == "DELETE")
        added = next(op for op in writes if op.get("event") == "ADD")
        return "UPDATE", deleted.get("id"), str(added.get("text") or "")
    if len(writes) > 1:
        return "MULTI", None, ""
    op = writes[0]
    return str(op["event"]), op.get("id"), str(op.get("text") or "")


def decision_correct(
    expected_op: str, expected_target: int | None, value: str, operations: Sequence[Mapping] | None
) -> tuple[str, bool]:
    """(predicted operation, correct?) for one labelled decision (see the module docstring)."""
    event, target, text = predicted_operation(operations)
    if event != expected_op:
        return event, False
    if event == "UPDATE" and target != expected_target:
        return event, False
    if event in ("ADD", "UPDATE") and not content_words(value) <= content_words(text):
        return event, False
    return event, True


@dataclass(frozen=True)
class OpScore:
    precision: float
    recall: float
    f1: float
    expected: int
    predicted: int
    correct: int


def decision_report(outcomes: Sequence[tuple[str, str, bool]]) -> dict:
    """outcomes: (expected op, predicted op, correct) per example -> accuracy, per-op scores, macro F1."""
    n = len(outcomes)
    per_op = {}
    for op in OPS:
        expected = sum(1 for e, _, _ in outcomes if e == op)
        predicted = sum(1 for _, p, _ in outcomes if p == op)
        correct = sum(1 for e, _, ok in outcomes if e == op and ok)
        if not expected and not predicted:
            continue
        p = correct / predicted if predicted else 0.0
        r = correct / expected if expected else 0.0
        per_op[op] = OpScore(p, r, 2 * p * r / (p + r) if p + r else 0.0, expected, predicted, correct)
    present = [s.f1 for s in per_op.values() if s.expected]
    return {
        "n": n,
        "accuracy": sum(1 for *_, ok in outcomes if ok) / n if n else 0.0,
        "macro_f1": sum(present) / len(present) if present else 0.0,
        "per_op": {op: asdict(s) for op, s in per_op.items()},
    }
