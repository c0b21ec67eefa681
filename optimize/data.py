"""LOCOMO loader with a validation report.

`load_locomo(path)` reads a file in the upstream ``locomo10.json`` layout (a JSON list of conversation
objects; see ``data/locomo/SOURCE.md``), repairs what can be repaired, skips what cannot, and records every
decision in a `LoadReport` as ``(item, problem, action)`` rows, where ``item`` names the thing in the file:
``conv-26`` (a conversation), ``conv-26:q37`` (the 38th entry of its ``qa`` list, 0-based), ``conv-26:D3:4``
(a turn), ``conv-26:session_20_date_time`` (a key), ``conv-44:obs:session_26`` (an observation block).

Rules (the same for the dev split, the full upstream file and the fixtures):

- Sessions are enumerated by their ``session_N`` keys, in numeric order. ``session_N_date_time`` keys with no
  ``session_N`` list (conv-26 has ``session_20_date_time`` ... ``session_35_date_time``) are ignored and reported.
- Evidence ids are normalised: ``"D8:6; D9:17"`` -> ``D8:6``, ``D9:17``; ``"D:11:26"`` -> ``D11:26``;
  ``"D30:05"`` -> ``D30:5``. Ids that are not turns of the conversation are dropped and reported. The same
  normalisation applies to observation provenance (``"D26:14, D26:34"`` is split too).
- Questions with empty evidence (in the file, or after dropping bad ids) are kept and reported: evidence recall
  is undefined for them (`memtune.optimize.metrics.evidence_recall` returns None), so they are left out of
  recall averages rather than counted as 0.
- Int answers become strings (reported). Category-5 items without ``answer`` get ``answer=""`` and keep
  ``adversarial_answer`` (reported as info and counted).
- Exact duplicates (same question text, answer, adversarial answer and category in one conversation): the first
  is kept, the others are dropped and reported.
- Items with an unknown category, or without ``question``, ``category``, ``evidence`` or an answer, are skipped
  and reported with the fix.
- A missing file, a file that is not JSON or not a list, or an unknown conversation id in ``conversations``
  raise FileNotFoundError / ValueError naming the item and the fix.

Measured on ``data/locomo/locomo_dev.json`` (sha256 8143faac7a64..., 7 conversations, 187 sessions, 4,124 turns,
867 with an image caption, 1,755 observation facts; no selection or caps), asserted by ``tests/test_data.py``::

    questions kept: 1,347 = category 1: 192, 2: 214, 3: 66, 4: 563, 5: 312 -- the SOURCE.md numbers. Nothing
        is skipped and no exact duplicate exists in these 7 conversations (the only repeated question text,
        conv-30 "What did Gina receive from a dance contest?", is once category 4 and once category 5).
    1,033 questions of categories 1-4 have evidence (the denominator of the DESIGN baselines).
    report (340 entries):
        6   int answers converted to str (conv-26: q1 q26 q40 q49 q72 q75)
        310 category-5 items without `answer` (answer "", adversarial_answer kept); 2 have both keys
        2   questions with empty evidence kept, excluded from recall (conv-26:q30, conv-26:q46)
        3   evidence entries repaired (conv-26:q37 "D8:6; D9:17" split, conv-43:q18 "D:11:26" -> "D11:26";
            observation conv-44 session 26 "D26:14, D26:34, D26:42" split)
        3   evidence ids dropped (conv-42:q58 D10:19 and conv-47:q38 D4:36 do not exist, conv-42:q88 "D")
        16  orphan session_20..35_date_time keys in conv-26 ignored

The full upstream ``locomo10.json`` (sha256 79fa87e9..., checked once from a local copy, not shipped) loads
unchanged: 10 conversations, 272 sessions, 5,882 turns, 1,986 qa items -> 1,975 questions (category 1: 282,
2: 321, 3: 96, 4: 830, 5: 446). The other quirks SOURCE.md lists are in the 3 held-back conversations: 11 exact
duplicates in conv-48 (all category 4, so 841 -> 830), 2 more empty-evidence questions and "D30:05" in conv-50,
space-separated evidence ("D9:1 D4:4 D4:6") in conv-49; 444 category-5 items without `answer`.
data/fixture/quirks.json reproduces each kind of quirk for the tests.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from memtune.policies.types import Message

CATEGORY_NAMES: dict[int, str] = {
    1: "multi-hop",
    2: "temporal",
    3: "open-domain",
    4: "single-hop",
    5: "adversarial",
}

# Report actions. Fixed strings so that `LoadReport.counts` groups like with like.
SKIPPED = "skipped"
DROPPED_DUPLICATE = "dropped duplicate (kept first)"
DROPPED_ID = "dropped id"
DROPPED_BY_MAX_SESSIONS = "dropped (outside max_sessions)"
DROPPED_BY_MAX_QUESTIONS = "dropped (over max_questions)"
KEPT_NO_RECALL = "kept; excluded from evidence recall"
REPAIRED = "repaired"
CONVERTED = "converted to str"
IGNORED = "ignored"
INFO_CAT5 = "answer set to ''; adversarial_answer kept"
WARNED = "kept as is"

_ACTION_ORDER = [
    SKIPPED,
    DROPPED_DUPLICATE,
    DROPPED_ID,
    DROPPED_BY_MAX_SESSIONS,
    DROPPED_BY_MAX_QUESTIONS,
    KEPT_NO_RECALL,
    REPAIRED,
    CONVERTED,
    IGNORED,
    WARNED,
    INFO_CAT5,
]


# --------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Turn:
    dia_id: str
    speaker: str
    text: str
    session: int
    timestamp: str  # the session's date_time, e.g. "1:56 pm on 8 May, 2023"
    image_caption: str = ""  # upstream `blip_caption`, "" when the turn shares no image

    @property
    def full_text(self) -> str:
        """The text plus, when the turn shares an image, ``" [shares a photo of: <caption>]"``."""
        if not self.image_caption:
            return self.text
        return f"{self.text} [shares a photo of: {self.image_caption}]".strip()

    def as_message(self) -> Message:
        return Message(speaker=self.speaker, text=self.full_text, dia_id=self.dia_id, timestamp=self.timestamp)


@dataclass(frozen=True)
class Session:
    index: int
    timestamp: str
    turns: tuple[Turn, ...]


@dataclass(frozen=True)
class Question:
    qid: str  # f"{sample_id}:q{position in the file's qa list, 0-based}"
    conversation_id: str
    question: str
    answer: str  # "" for category-5 items that only carry `adversarial_answer`
    category: int
    evidence: tuple[str, ...]  # normalised dia_ids; () when unknown (then recall is undefined)
    adversarial_answer: str = ""

    @property
    def category_name(self) -> str:
        return CATEGORY_NAMES[self.category]


@dataclass(frozen=True)
class Conversation:
    sample_id: str
    speaker_a: str
    speaker_b: str
    sessions: tuple[Session, ...]
    questions: tuple[Question, ...]
    # session index -> ((fact, dia_ids), ...) from the file's `observation` block (GPT-written facts with
    # provenance; an oracle, not a policy), in file order, ids normalised and checked.
    observations: dict[int, tuple[tuple[str, tuple[str, ...]], ...]] = field(default_factory=dict, hash=False)
    # session index -> the file's `session_summary` text.
    session_summaries: dict[int, str] = field(default_factory=dict, hash=False)

    def turns(self) -> list[Turn]:
        """All turns in order (session by session)."""
        return [turn for session in self.sessions for turn in session.turns]


class ReportEntry(NamedTuple):
    item: str  # e.g. "conv-26:q12"
    problem: str  # what is wrong, with the fix when the item was skipped
    action: str  # one of the module-level action strings


@dataclass
class LoadReport:
    entries: list[ReportEntry] = field(default_factory=list)

    def add(self, item: str, problem: str, action: str) -> None:
        self.entries.append(ReportEntry(item, problem, action))

    @property
    def counts(self) -> dict[str, int]:
        """Number of entries per action."""
        return dict(Counter(entry.action for entry in self.entries))

    def for_item(self, item: str) -> list[ReportEntry]:
        return [entry for entry in self.entries if entry.item == item]

    def with_action(self, action: str) -> list[ReportEntry]:
        return [entry for entry in self.entries if entry.action == action]

    def summary(self, max_examples: int = 5) -> str:
        """Human-readable report, grouped by action (most serious first), with up to `max_examples` rows each."""
        if not self.entries:
            return "load report: no problems found"
        counts = self.counts
        actions = sorted(
            counts, key=lambda a: (_ACTION_ORDER.index(a) if a in _ACTION_ORDER else len(_ACTION_ORDER), a)
        )
        lines = [f"load report: {len(self.entries)} entries"]
        for action in actions:
            rows = self.with_action(action)
            lines.append(f"  {action}: {len(rows)}")
            width = max(len(row.item) for row in rows[:max_examples])
            for row in rows[:max_examples]:
                lines.append(f"    {row.item.ljust(width)}  {row.problem}")
            if len(rows) > max_examples:
                lines.append(f"    ... and {len(rows) - max_examples} more")
        return "\n".join(lines)


@dataclass
class Dataset:
    conversations: list[Conversation]
    report: LoadReport
    path: str
    sha256: str

    @property
    def questions(self) -> list[Question]:
        return [q for conv in self.conversations for q in conv.questions]

    def category_counts(self) -> dict[int, int]:
        counts = Counter(q.category for q in self.questions)
        return {cat: counts[cat] for cat in sorted(counts)}

    def conversation(self, sample_id: str) -> Conversation:
        for conv in self.conversations:
            if conv.sample_id == sample_id:
                return conv
        raise KeyError(f"no conversation {sample_id!r}; loaded: {[c.sample_id for c in self.conversations]}")

    def summary(self) -> str:
        turns = sum(len(conv.turns()) for conv in self.conversations)
        cats = ", ".join(f"{cat} {CATEGORY_NAMES[cat]}: {n}" for cat, n in self.category_counts().items())
        return (
            f"{self.path} (sha256 {self.sha256[:12]}): {len(self.conversations)} conversations, {turns} turns, "
            f"{len(self.questions)} questions ({cats})\n{self.report.summary()}"
        )


# --------------------------------------------------------------------------------------------- paths


def project_root() -> Path:
    """The repository root (where data/ and conf/ live) for an editable install, else the working directory."""
    import memtune

    root = Path(memtune.__file__).resolve().parents[1]
    if (root / "data").is_dir():
        return root
    return Path.cwd()


def data_dir() -> Path:
    """The project's data/ folder: next to the memtune package (editable install), else ./data."""
    return project_root() / "data"


def fixture_path() -> Path:
    """The tiny hand-written conversation (data/fixture/fixture.json)."""
    return data_dir() / "fixture" / "fixture.json"


def dev_path() -> Path:
    """The LOCOMO dev split (data/locomo/locomo_dev.json, CC BY-NC 4.0)."""
    return data_dir() / "locomo" / "locomo_dev.json"


def _candidates(p: str | Path) -> list[Path]:
    path = Path(p).expanduser()
    if path.is_absolute():
        return [path]
    return [Path.cwd() / path, project_root() / path]


def resolve_path(p: str | Path) -> Path:
    """Absolute paths as given; relative ones against the working directory, then against the project root.

    Returns the first candidate that exists; when none does, the working-directory one (so the caller's
    "not found" error names the path the user typed).
    """
    candidates = _candidates(p)
    for candidate in candidates:
        if candidate.exists():
            return candidate if len(candidates) == 1 else candidate.resolve()
    return candidates[0]


# --------------------------------------------------------------------------------------------- ids

_ID_RE = re.compile(r"^D:?(\d+):(\d+)$", re.IGNORECASE)
_SPLIT_RE = re.compile(r"[;,\s]+")
_SESSION_RE = re.compile(r"^session_(\d+)$")
_DATE_TIME_RE = re.compile(r"^session_(\d+)_date_time$")


def normalize_dia_id(raw: str) -> str | None:
    """``"D:11:26"`` -> ``"D11:26"``, ``"D30:05"`` -> ``"D30:5"``; None when it is not an id at all."""
    match = _ID_RE.match(raw.strip())
    if not match:
        return None
    return f"D{int(match.group(1))}:{int(match.group(2))}"


def _normalize_ids(raw: Any, valid: set[str], item: str, what: str, report: LoadReport) -> tuple[tuple[str, ...], bool]:
    """Normalise a list (or string) of dia_ids. Returns (ids, had_any_input)."""
    if raw is None:
        raw = []
    if isinstance(raw, str):
        raw = [raw]
    out: list[str] = []
    seen_any = False
    for entry in raw:
        if not isinstance(entry, str):
            report.add(item, f"{what} id {entry!r} is not a string", DROPPED_ID)
            continue
        parts = [part for part in _SPLIT_RE.split(entry.strip()) if part]
        if len(parts) > 1:
            report.add(item, f"{what} {entry!r} holds {len(parts)} ids: split into {parts}", REPAIRED)
        for part in parts:
            seen_any = True
            norm = normalize_dia_id(part)
            if norm is None:
                report.add(item, f"malformed {what} id {part!r} (not D<session>:<turn>)", DROPPED_ID)
                continue
            if norm != part:
                report.add(item, f"malformed {what} id {part!r} -> {norm!r}", REPAIRED)
            if norm not in valid:
                report.add(item, f"{what} id {norm!r} is not a turn of this conversation", DROPPED_ID)
                continue
            if norm not in out:
                out.append(norm)
    return tuple(out), seen_any


# --------------------------------------------------------------------------------------------- loader


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_locomo(
    path: str | Path,
    conversations: Sequence[str] | None = None,
    max_sessions: int | None = None,
    max_questions: int | None = None,
) -> Dataset:
    """Load a LOCOMO-layout file (the dev split, the fixture, or the full upstream locomo10.json).

    conversations: sample_ids to keep (file order is kept); None = all.
    max_sessions: keep the first N sessions of each conversation; questions whose evidence is not all inside
        them (or that have no evidence to tell) are dropped and reported.
    max_questions: keep at most N questions per conversation (the first ones, after the other rules).
    """
    if isinstance(conversations, str):
        conversations = [conversations]
    if max_sessions is not None and max_sessions < 1:
        raise ValueError(f"max_sessions={max_sessions}: must be >= 1 or None (fix: dataset.max_sessions=null)")
    if max_questions is not None and max_questions < 0:
        raise ValueError(f"max_questions={max_questions}: must be >= 0 or None (fix: dataset.max_questions=null)")

    resolved = resolve_path(path)
    if not resolved.is_file():
        raise FileNotFoundError(
            f"LOCOMO file not found: {str(path)!r} (looked at "
            + " and ".join(dict.fromkeys(str(c) for c in _candidates(path)))
            + "). Fix: point dataset.path at an existing file, e.g. data/locomo/locomo_dev.json, or the full "
            "upstream locomo10.json (see data/README.md)."
        )
    try:
        raw = json.loads(resolved.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{resolved} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}). "
            "Fix: use the upstream locomo10.json unchanged (see data/README.md for its sha256)."
        ) from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{resolved} is not UTF-8 text ({exc}). Fix: point dataset.path at a JSON file.") from exc
    if not isinstance(raw, list):
        raise ValueError(
            f"{resolved}: top level is a JSON {type(raw).__name__}, expected a list of conversation objects "
            "(the upstream locomo10.json layout; see data/locomo/SOURCE.md). Fix: wrap a single conversation "
            "in [ ... ] or use the upstream file unchanged."
        )

    report = LoadReport()
    available: list[str] = []
    for position, obj in enumerate(raw):
        if isinstance(obj, dict) and isinstance(obj.get("sample_id"), str):
            available.append(obj["sample_id"])
    if conversations is not None:
        wanted = list(dict.fromkeys(conversations))
        unknown = [cid for cid in wanted if cid not in available]
        if unknown:
            raise ValueError(
                f"unknown conversation id(s) {unknown} in {resolved}. Available: {', '.join(available)}. "
                f"Fix: dataset.conversations=[{','.join(available[:2])}] (any of the available ids) or null for all."
            )
        selected = set(wanted)
    else:
        selected = None

    loaded: list[Conversation] = []
    seen_ids: set[str] = set()
    for position, obj in enumerate(raw):
        sample_id = obj.get("sample_id") if isinstance(obj, dict) else None
        item = sample_id if isinstance(sample_id, str) else f"#{position}"
        if selected is not None and item not in selected:
            continue
        if not isinstance(obj, dict):
            report.add(item, f"conversation entry is a {type(obj).__name__}, not an object (fix: remove it)", SKIPPED)
            continue
        if not isinstance(sample_id, str):
            report.add(item, "conversation has no string 'sample_id' (fix: add one, e.g. \"conv-99\")", SKIPPED)
            continue
        if sample_id in seen_ids:
            report.add(item, f"sample_id {sample_id!r} appears again at position {position} (fix: rename it)", SKIPPED)
            continue
        conv = _parse_conversation(obj, report, max_sessions, max_questions)
        if conv is not None:
            seen_ids.add(sample_id)
            loaded.append(conv)

    if not loaded:
        raise ValueError(
            f"{resolved}: no usable conversation (file has {len(raw)} entries).\n{report.summary()}\n"
            "Fix: use a file in the upstream locomo10.json layout (see data/locomo/SOURCE.md)."
        )
    return Dataset(conversations=loaded, report=report, path=str(resolved), sha256=_sha256(resolved))


def _parse_conversation(
    obj: dict, report: LoadReport, max_sessions: int | None, max_questions: int | None
) -> Conversation | None:
    cid: str = obj["sample_id"]
    conv = obj.get("conversation")
    if not isinstance(conv, dict):
        report.add(cid, "no 'conversation' object (fix: use the upstream layout, see data/locomo/SOURCE.md)", SKIPPED)
        return None
    speakers = (conv.get("speaker_a"), conv.get("speaker_b"))
    if not all(isinstance(s, str) and s for s in speakers):
        report.add(cid, "conversation lacks 'speaker_a'/'speaker_b' names (fix: add both)", SKIPPED)
        return None
    speaker_a, speaker_b = speakers

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
        question = _parse_question(cid, position, entry, valid_ids, report)
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


def _parse_question(cid: str, position: int, entry: Any, valid_ids: set[str], report: LoadReport) -> Question | None:
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
        report.add(qid, f"unknown category {category!r} (fix: use an int 1-5: {names})", SKIPPED)
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

    evidence, had_input = _normalize_ids(entry.get("evidence"), valid_ids, qid, "evidence", report)
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
                ids, _ = _normalize_ids(fact[1], valid_ids, item, "observation", report)
                facts.append((fact[0], ids))
        out[index] = tuple(facts)
    return out
