"""LongMemEval loader (Wu et al., ICLR 2025; MIT; files on Hugging Face, not shipped here).

A LongMemEval file (longmemeval_s.json, _m, _oracle) is a JSON list of entries, each with its OWN haystack: one
entry = one `Conversation` (sample_id = question_id, its own scope) with one `Question`:

- sessions: ``haystack_sessions`` in date order (``haystack_dates``, "2023/05/20 (Sat) 02:21"; the oracle file
  lists them unsorted: they are sorted and the repair reported), session i (1-based) holds turns ``D<i>:<j>``,
  j = the turn's 1-based position in the file's session list; speaker = the turn's ``role`` (user / assistant);
  the turn's timestamp = its session's date string.
- evidence = the turns marked ``has_answer: true``; none marked: kept, excluded from evidence recall, reported.
- category = the question type (types.LONGMEMEVAL_CATEGORIES, 21-26); a ``question_id`` ending in ``_abs`` is an
  abstention question: category 5, scored like LOCOMO's category 5 (abstaining is right; no judge); its answer
  keeps the upstream text (an explanation of what is missing).
- ``question_date``: appended to the question as "(Current date: ...)" (the upstream reader prompt gives the
  model the date, and temporal-reasoning questions need it); question_date=False leaves the question as is.

Entries or turns that cannot be used are skipped and reported in the `LoadReport`, each naming the entry (its
question_id, else ``#<position>``) and the field; a file that is missing, not JSON or not a list raises."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from .locomo import _candidates, _sha256, resolve_path
from .types import (
    CONVERTED,
    DROPPED_BY_MAX_QUESTIONS,
    DROPPED_BY_MAX_SESSIONS,
    KEPT_NO_RECALL,
    REPAIRED,
    SKIPPED,
    WARNED,
    Conversation,
    Dataset,
    LoadReport,
    Question,
    Session,
    Turn,
)
from .types import LONGMEMEVAL_CATEGORIES as _TYPES

QUESTION_TYPES = {name: category for category, name in _TYPES.items()}
ABSTENTION = 5  # scored like LOCOMO's category 5
DATE_FORMAT = "%Y/%m/%d (%a) %H:%M"
SPEAKERS = ("user", "assistant")


def read_json(path: str | Path) -> tuple[Path, Any]:
    resolved = resolve_path(path)
    if not resolved.is_file():
        raise FileNotFoundError(
            f"LongMemEval file not found: {str(path)!r} (looked at "
            + " and ".join(dict.fromkeys(str(c) for c in _candidates(path)))
            + "). It is not shipped (MIT; Hugging Face dataset xiaowu0162/longmemeval). Fix: download it and "
            "point dataset.path at it unchanged, e.g. dataset.path=/data/longmemeval_s.json (see data/README.md)."
        )
    try:
        return resolved, json.loads(resolved.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{resolved} is not UTF-8 JSON ({exc}). Fix: use the upstream file unchanged.") from exc


def load_longmemeval(
    path: str | Path,
    conversations: Sequence[str] | None = None,
    max_sessions: int | None = None,
    max_questions: int | None = None,
    question_types: Sequence[str] | None = None,
    question_date: bool = True,
    raw: Any = None,
) -> Dataset:
    """Load a LongMemEval file. conversations: question_ids to keep (None = all); question_types: the types to
    keep (None = all); max_sessions / max_questions as for `load_locomo`. `raw`: the file already parsed."""
    resolved, raw = (resolve_path(path), raw) if raw is not None else read_json(path)
    if not isinstance(raw, list):
        raise ValueError(
            f"{resolved}: top level is a JSON {type(raw).__name__}, expected a list of LongMemEval entries. "
            "Fix: use the upstream longmemeval_s.json / _m / _oracle file unchanged."
        )
    unknown_types = sorted(set(question_types or ()) - set(QUESTION_TYPES))
    if unknown_types:
        raise ValueError(
            f"unknown question type(s) {unknown_types}. Fix: dataset.question_types=[...] with any of "
            f"{', '.join(QUESTION_TYPES)}, or null for all."
        )
    if max_sessions is not None and max_sessions < 1:
        raise ValueError(f"max_sessions={max_sessions}: must be >= 1 or None (fix: dataset.max_sessions=null)")
    if max_questions is not None and max_questions < 0:
        raise ValueError(f"max_questions={max_questions}: must be >= 0 or None (fix: dataset.max_questions=null)")
    ids = [e.get("question_id") for e in raw if isinstance(e, dict)]
    wanted: list[str] = []
    if conversations is not None:
        wanted = [conversations] if isinstance(conversations, str) else list(dict.fromkeys(conversations))
        missing = [c for c in wanted if c not in ids]
        if missing:
            raise ValueError(
                f"unknown question_id(s) {missing[:10]} in {resolved} ({len(ids)} entries, e.g. "
                f"{', '.join(map(str, ids[:3]))}). Fix: dataset.conversations=[<question_id>,...] or null for all."
            )
    report = LoadReport()
    loaded: list[Conversation] = []
    seen: set[str] = set()
    for position, entry in enumerate(raw):
        qid = entry.get("question_id") if isinstance(entry, dict) else None
        if conversations is not None and qid not in wanted:
            continue
        if question_types is not None and isinstance(entry, dict) and entry.get("question_type") not in question_types:
            continue
        item = qid if isinstance(qid, str) and qid else f"#{position}"
        if item in seen:
            report.add(item, f"question_id {item!r} appears again at position {position} (fix: rename it)", SKIPPED)
            continue
        conv = parse_entry(item, entry, report, question_date)
        if conv is not None:
            seen.add(item)
            loaded.append(_truncate(conv, max_sessions, max_questions, report))
    if not loaded:
        raise ValueError(
            f"{resolved}: no usable LongMemEval entry (file has {len(raw)} entries).\n{report.summary()}\n"
            "Fix: use the upstream file unchanged (entries with question_id, question_type, question, answer, "
            "haystack_sessions, haystack_dates, haystack_session_ids)."
        )
    return Dataset(conversations=loaded, report=report, path=str(resolved), sha256=_sha256(resolved))


def parse_entry(item: str, entry: Any, report: LoadReport, question_date: bool = True) -> Conversation | None:
    """One entry -> one conversation with one question, or None (skipped and reported)."""

    def skip(problem: str) -> Conversation | None:
        report.add(item, problem, SKIPPED)
        return None

    if not isinstance(entry, dict):
        return skip(f"entry is a {type(entry).__name__}, not an object (fix: remove it)")
    for key in ("question_id", "question"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            return skip(f"field {key!r} missing or not a non-empty string (fix: add it)")
    qtype = entry.get("question_type")
    if qtype not in QUESTION_TYPES:
        return skip(f"field 'question_type' is {qtype!r}, not one of {', '.join(QUESTION_TYPES)} (fix: correct it)")
    answer = entry.get("answer")
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        report.add(item, f"field 'answer' is the {type(answer).__name__} {answer!r}", CONVERTED)
        answer = str(answer)
    if not isinstance(answer, str):
        return skip(f"field 'answer' is {type(answer).__name__}, not a string (fix: add the answer text)")
    sessions: Any = entry.get("haystack_sessions")
    dates: Any = entry.get("haystack_dates")
    session_ids: Any = entry.get("haystack_session_ids")
    if not isinstance(sessions, list) or not all(isinstance(s, list) for s in sessions):
        return skip("field 'haystack_sessions' is not a list of sessions (lists of turns) (fix: use the upstream file)")
    for key, value in (("haystack_dates", dates), ("haystack_session_ids", session_ids)):
        if not isinstance(value, list) or len(value) != len(sessions):
            got = f"{len(value)} items" if isinstance(value, list) else type(value).__name__
            return skip(f"field {key!r} has {got} for {len(sessions)} haystack_sessions (fix: one per session)")
    order = _date_order(item, [str(d) for d in dates], report)
    answer_sessions = entry.get("answer_session_ids")
    if isinstance(answer_sessions, list):
        extra = sorted({str(s) for s in answer_sessions} - {str(s) for s in session_ids})
        if extra:
            report.add(item, f"answer_session_ids {extra[:5]} are not in haystack_session_ids", WARNED)

    built: list[Session] = []
    evidence: list[str] = []
    for index, source in enumerate(order, start=1):
        turns: list[Turn] = []
        for position, raw_turn in enumerate(sessions[source], start=1):
            dia_id = f"D{index}:{position}"
            where = f"{item}:haystack_sessions[{source}][{position - 1}]"
            role, content = (raw_turn.get("role"), raw_turn.get("content")) if isinstance(raw_turn, dict) else (0, 0)
            if not isinstance(role, str) or not isinstance(content, str):
                report.add(where, "turn lacks a string 'role' and 'content' (fix: add them)", SKIPPED)
                continue
            if role not in SPEAKERS:
                report.add(where, f"role {role!r} is neither user nor assistant", WARNED)
            if raw_turn.get("has_answer") not in (None, True, False):
                report.add(where, f"has_answer {raw_turn['has_answer']!r} is not a bool", WARNED)
            if raw_turn.get("has_answer"):
                evidence.append(dia_id)
            turns.append(Turn(dia_id=dia_id, speaker=role, text=content, session=index, timestamp=str(dates[source])))
        built.append(Session(index=index, timestamp=str(dates[source]), turns=tuple(turns)))

    if not evidence:
        report.add(item, "no turn has has_answer: true (empty evidence)", KEPT_NO_RECALL)
    text = entry["question"]
    if question_date and isinstance(entry.get("question_date"), str):
        text = f"{text} (Current date: {entry['question_date']})"
    elif question_date:
        report.add(item, "field 'question_date' missing: the question is asked without a date", WARNED)
    abstention = entry["question_id"].endswith("_abs")
    question = Question(
        qid=f"{item}:q0",
        conversation_id=item,
        question=text,
        answer=answer,
        category=ABSTENTION if abstention else QUESTION_TYPES[qtype],
        evidence=tuple(evidence),
    )
    return Conversation(item, SPEAKERS[0], SPEAKERS[1], tuple(built), (question,))


def _date_order(item: str, dates: list[str], report: LoadReport) -> list[int]:
    """Session positions in date order (file order when a date does not parse, reported)."""
    parsed: list[datetime] = []
    for i, raw in enumerate(dates):
        try:
            parsed.append(datetime.strptime(raw.strip(), DATE_FORMAT))
        except ValueError:
            report.add(item, f"haystack_dates[{i}] {raw!r} is not like '2023/05/20 (Sat) 02:21': file order", WARNED)
            return list(range(len(dates)))
    order = sorted(range(len(dates)), key=lambda i: parsed[i])
    if order != list(range(len(dates))):
        report.add(item, "haystack sessions are not in date order: sorted by haystack_dates", REPAIRED)
    return order


def _truncate(
    conv: Conversation, max_sessions: int | None, max_questions: int | None, report: LoadReport
) -> Conversation:
    questions = conv.questions
    sessions = conv.sessions
    if max_sessions is not None and len(sessions) > max_sessions:
        sessions = sessions[:max_sessions]
        kept = {t.dia_id for s in sessions for t in s.turns}
        for q in questions:
            if not q.evidence or not set(q.evidence) <= kept:
                report.add(
                    q.qid, f"evidence outside the first {max_sessions} sessions (or none)", DROPPED_BY_MAX_SESSIONS
                )
        questions = tuple(q for q in questions if q.evidence and set(q.evidence) <= kept)
    if max_questions is not None and len(questions) > max_questions:
        report.add(
            conv.sample_id,
            f"max_questions={max_questions}: dropped {len(questions) - max_questions}",
            DROPPED_BY_MAX_QUESTIONS,
        )
        questions = questions[:max_questions]
    return Conversation(conv.sample_id, conv.speaker_a, conv.speaker_b, sessions, questions)
