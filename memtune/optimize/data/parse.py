"""Parsing and validation of one conversation object of a LOCOMO-layout file (see `memtune.optimize.data.locomo` for
the rules): sessions and turns, observations, and max_sessions/max_questions truncation; dia_ids are normalised by
ids.py, questions parsed by questions.py. Every decision is recorded in the `LoadReport` passed in."""

from __future__ import annotations

import re
from typing import Any

from .ids import normalize_dia_id, normalize_ids
from .questions import parse_question
from .types import (
    DROPPED_BY_MAX_QUESTIONS,
    DROPPED_BY_MAX_SESSIONS,
    DROPPED_DUPLICATE,
    IGNORED,
    REPAIRED,
    SKIPPED,
    WARNED,
    Conversation,
    LoadReport,
    Question,
    Session,
    Turn,
)

_SESSION_RE = re.compile(r"^session_(\d+)$")
_DATE_TIME_RE = re.compile(r"^session_(\d+)_date_time$")


# --------------------------------------------------------------------------------------------- conversations


def parse_conversation(
    obj: dict, report: LoadReport, max_sessions: int | None, max_questions: int | None
) -> Conversation | None:
    cid: str = obj["sample_id"]
    conv = obj.get("conversation")
    if not isinstance(conv, dict):
        report.add(cid, "no 'conversation' object (fix: use the upstream layout, see data/locomo/SOURCE.md)", SKIPPED)
        return None
    speaker_a, speaker_b = conv.get("speaker_a"), conv.get("speaker_b")
    if not (isinstance(speaker_a, str) and speaker_a and isinstance(speaker_b, str) and speaker_b):
        report.add(cid, "conversation lacks 'speaker_a'/'speaker_b' names (fix: add both)", SKIPPED)
        return None
    speakers = (speaker_a, speaker_b)

    # Sessions: keyed on session_N lists, never on the date_time keys.
    session_keys: dict[int, str] = {}
    for key, value in conv.items():
        match = _SESSION_RE.match(key)
        if match:
            if isinstance(value, list):
                session_keys[int(match.group(1))] = key
            else:
                report.add(f"{cid}:{key}", f"{key} is a {type(value).__name__}, not a list of turns", SKIPPED)
    for key in conv:
        match = _DATE_TIME_RE.match(key)
        if match and int(match.group(1)) not in session_keys:
            report.add(f"{cid}:{key}", f"{key} has no matching session_{match.group(1)} list", IGNORED)
    indices = sorted(session_keys)
    if indices and indices != list(range(1, len(indices) + 1)):
        report.add(cid, f"session numbers are not 1..{len(indices)} without gaps: {indices}", WARNED)

    sessions: list[Session] = []
    valid_ids: set[str] = set()
    for index in indices:
        timestamp = conv.get(f"session_{index}_date_time", "")
        if not isinstance(timestamp, str) or not timestamp:
            report.add(f"{cid}:session_{index}", f"session_{index}_date_time missing or not a string", WARNED)
            timestamp = timestamp if isinstance(timestamp, str) else str(timestamp)
        turns: list[Turn] = []
        for position, raw_turn in enumerate(conv[session_keys[index]]):
            turn_item = f"{cid}:session_{index}[{position}]"
            if not isinstance(raw_turn, dict):
                report.add(turn_item, "turn is not an object (fix: remove it)", SKIPPED)
                continue
            missing = [k for k in ("speaker", "dia_id", "text") if not isinstance(raw_turn.get(k), str)]
            if missing:
                report.add(turn_item, f"turn lacks string {missing} (fix: add them)", SKIPPED)
                continue
            dia_id = normalize_dia_id(raw_turn["dia_id"])
            if dia_id is None:
                report.add(turn_item, f"turn dia_id {raw_turn['dia_id']!r} is not D<session>:<turn>", WARNED)
                dia_id = raw_turn["dia_id"]
            elif dia_id != raw_turn["dia_id"]:
                report.add(f"{cid}:{dia_id}", f"turn dia_id {raw_turn['dia_id']!r} -> {dia_id!r}", REPAIRED)
            if dia_id in valid_ids:
                report.add(f"{cid}:{dia_id}", f"dia_id {dia_id!r} used by an earlier turn (fix: renumber)", SKIPPED)
                continue
            if raw_turn["speaker"] not in speakers:
                report.add(
                    f"{cid}:{dia_id}", f"speaker {raw_turn['speaker']!r} is neither speaker_a nor speaker_b", WARNED
                )
            caption = raw_turn.get("blip_caption") or ""
            valid_ids.add(dia_id)
            turns.append(
                Turn(
                    dia_id=dia_id,
                    speaker=raw_turn["speaker"],
                    text=raw_turn["text"],
                    session=index,
                    timestamp=timestamp,
                    image_caption=caption if isinstance(caption, str) else str(caption),
                )
            )
        sessions.append(Session(index=index, timestamp=timestamp, turns=tuple(turns)))

    # Questions.
    qa = obj.get("qa")
    if qa is None:
        report.add(cid, "no 'qa' list: conversation has no questions", WARNED)
        qa = []
    elif not isinstance(qa, list):
        report.add(cid, f"'qa' is a {type(qa).__name__}, not a list (fix: make it a list)", SKIPPED)
        return None
    questions: list[Question] = []
    seen_keys: dict[tuple, str] = {}
    for position, entry in enumerate(qa):
        question = parse_question(cid, position, entry, valid_ids, report)
        if question is None:
            continue
        key = (question.question, question.answer, question.adversarial_answer, question.category)
        if key in seen_keys:
            report.add(question.qid, f"exact duplicate of {seen_keys[key]}: {question.question!r}", DROPPED_DUPLICATE)
            continue
        seen_keys[key] = question.qid
        questions.append(question)

    observations = _parse_observations(cid, obj.get("observation"), valid_ids, report)
    summaries: dict[int, str] = {}
    for key, value in (obj.get("session_summary") or {}).items():
        match = re.match(r"^session_(\d+)_summary$", key)
        if match and isinstance(value, str) and int(match.group(1)) in session_keys:
            summaries[int(match.group(1))] = value

    # Truncation.
    if max_sessions is not None and len(sessions) > max_sessions:
        sessions = sessions[:max_sessions]
        kept_ids = {turn.dia_id for session in sessions for turn in session.turns}
        kept_sessions = {session.index for session in sessions}
        remaining: list[Question] = []
        for question in questions:
            if not question.evidence:
                report.add(
                    question.qid,
                    f"no evidence, so cannot tell if answerable from the first {max_sessions} sessions",
                    DROPPED_BY_MAX_SESSIONS,
                )
            elif not set(question.evidence) <= kept_ids:
                outside = [e for e in question.evidence if e not in kept_ids]
                report.add(
                    question.qid,
                    f"evidence {outside} outside the first {max_sessions} sessions",
                    DROPPED_BY_MAX_SESSIONS,
                )
            else:
                remaining.append(question)
        questions = remaining
        observations = {k: v for k, v in observations.items() if k in kept_sessions}
        summaries = {k: v for k, v in summaries.items() if k in kept_sessions}
    if max_questions is not None and len(questions) > max_questions:
        report.add(
            cid,
            f"{len(questions)} questions, max_questions={max_questions}: dropped the last {len(questions) - max_questions}",
            DROPPED_BY_MAX_QUESTIONS,
        )
        questions = questions[:max_questions]

    return Conversation(
        sample_id=cid,
        speaker_a=speaker_a,
        speaker_b=speaker_b,
        sessions=tuple(sessions),
        questions=tuple(questions),
        observations=observations,
        session_summaries=summaries,
    )


def _parse_observations(
    cid: str, block: Any, valid_ids: set[str], report: LoadReport
) -> dict[int, tuple[tuple[str, tuple[str, ...]], ...]]:
    if not isinstance(block, dict):
        return {}
    out: dict[int, tuple[tuple[str, tuple[str, ...]], ...]] = {}
    for key, per_speaker in block.items():
        match = re.match(r"^session_(\d+)_observation$", key)
        item = f"{cid}:obs:session_{match.group(1)}" if match else f"{cid}:obs:{key}"
        if not match or not isinstance(per_speaker, dict):
            report.add(item, f"observation key {key!r} not understood", IGNORED)
            continue
        index = int(match.group(1))
        if not any(d.startswith(f"D{index}:") for d in valid_ids):
            report.add(item, f"observations for session {index}, which has no turns", IGNORED)
            continue
        facts: list[tuple[str, tuple[str, ...]]] = []
        for speaker_facts in per_speaker.values():
            for fact in speaker_facts if isinstance(speaker_facts, list) else []:
                if not (isinstance(fact, list) and len(fact) == 2 and isinstance(fact[0], str)):
                    report.add(item, f"observation entry {fact!r} is not [fact, dia_id]", IGNORED)
                    continue
                ids, _ = normalize_ids(fact[1], valid_ids, item, "observation", report)
                facts.append((fact[0], ids))
        out[index] = tuple(facts)
    return out
