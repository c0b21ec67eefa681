"""Agreement between two judges on the same items (pure functions; hand-computed tests in tests/test_judge_checks.py).

Labels are booleans (CORRECT = True); an item counts only when both judges labelled it (None = no label: a judge
failure, or J undefined).
    percent agreement  p_o = items labelled alike / items
    Cohen's kappa      (p_o - p_e) / (1 - p_e), p_e = p_a * p_b + (1 - p_a) * (1 - p_b), with p_a, p_b the share
                       of CORRECT labels of each judge; None when p_e = 1 (both judges gave one and the same label
                       to every item: agreement by chance alone cannot be told apart) or there are no items.
"""

from __future__ import annotations

from collections.abc import Sequence


def paired(a: Sequence[bool | None], b: Sequence[bool | None]) -> list[tuple[bool, bool]]:
    if len(a) != len(b):
        raise ValueError(f"agreement needs the two judges' labels of the same items: {len(a)} vs {len(b)} labels")
    return [(bool(x), bool(y)) for x, y in zip(a, b) if x is not None and y is not None]


def percent_agreement(a: Sequence[bool | None], b: Sequence[bool | None]) -> float | None:
    pairs = paired(a, b)
    return sum(x == y for x, y in pairs) / len(pairs) if pairs else None


def cohens_kappa(a: Sequence[bool | None], b: Sequence[bool | None]) -> float | None:
    pairs = paired(a, b)
    if not pairs:
        return None
    n = len(pairs)
    p_o = sum(x == y for x, y in pairs) / n
    p_a = sum(x for x, _ in pairs) / n
    p_b = sum(y for _, y in pairs) / n
    p_e = p_a * p_b + (1 - p_a) * (1 - p_b)
    return None if p_e == 1 else (p_o - p_e) / (1 - p_e)


def agreement(name_a: str, a: Sequence[bool | None], name_b: str, b: Sequence[bool | None]) -> dict:
    return {
        "a": name_a,
        "b": name_b,
        "n": len(paired(a, b)),
        "percent_agreement": percent_agreement(a, b),
        "kappa": cohens_kappa(a, b),
    }
