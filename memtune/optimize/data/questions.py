"""One question of a LOCOMO conversation's `qa` list: category, answer (or a category-5 adversarial answer) and
evidence ids, validated; every repair, conversion and skip recorded in the `LoadReport`."""

from __future__ import annotations

from typing import Any

from .ids import normalize_ids
from .types import (
    CATEGORY_NAMES,
    CONVERTED,
    INFO_CAT5,
    KEPT_NO_RECALL,
    REPAIRED,
    SKIPPED,
    LoadReport,
    Question,
)


def parse_question(cid: str, position: int, entry: Any, valid_ids: set[str], report: LoadReport) -> Question | None:
    qid = f"{cid}:q{position}"
    if not isinstance(entry, dict):
        report.add(qid, f"qa item is a {type(entry).__name__}, not an object (fix: remove it)", SKIPPED)
        return None
    text = entry.get("question")
    if not isinstance(text, str) or not text.strip():
        report.add(qid, "qa item has no 'question' text (fix: add the question or remove the item)", SKIPPED)
        return None

    category = entry.get("category")
    if isinstance(category, str) and category.strip().isdigit():
        report.add(qid, f"category {category!r} is a string", REPAIRED)
        category = int(category)
    if isinstance(category, bool) or not isinstance(category, int) or category not in CATEGORY_NAMES:
        names = ", ".join(f"{k} {v}" for k, v in CATEGORY_NAMES.items())
        report.add(qid, f"unknown category {category!r} (fix: use one of the ints {names})", SKIPPED)
        return None

    if "evidence" not in entry:
        report.add(qid, "qa item has no 'evidence' list (fix: add one, [] if unknown)", SKIPPED)
        return None

    def as_text(key: str) -> str | None:
        value = entry.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            report.add(qid, f"{type(value).__name__} {key} {value!r}", CONVERTED)
            return str(value)
        report.add(qid, f"{key} is a {type(value).__name__} ({value!r}), not text (fix: make it a string)", SKIPPED)
        raise _Skip

    try:
        answer = as_text("answer")
        adversarial = as_text("adversarial_answer")
    except _Skip:
        return None
    if answer is None:
        if category == 5 and adversarial is not None:
            report.add(qid, "category 5 without 'answer'", INFO_CAT5)
            answer = ""
        else:
            need = "'answer' or 'adversarial_answer'" if category == 5 else "'answer'"
            report.add(qid, f"category {category} item without {need} (fix: add it)", SKIPPED)
            return None

    evidence, had_input = normalize_ids(entry.get("evidence"), valid_ids, qid, "evidence", report)
    if not evidence:
        why = "every evidence id was dropped" if had_input else "empty evidence"
        report.add(qid, why, KEPT_NO_RECALL)
    return Question(
        qid=qid,
        conversation_id=cid,
        question=text,
        answer=answer,
        category=category,
        evidence=evidence,
        adversarial_answer=adversarial or "",
    )


class _Skip(Exception):
    pass
