"""The records `memtune.optimize.data.locomo.load_locomo` returns: turns, sessions, questions, conversations, the
`Dataset`, and the `LoadReport` of every repair, skip and drop (with its fixed action strings)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

from ...policies.types import Message

# Question categories, one number range per benchmark (a number never changes meaning):
#   1-5   LOCOMO's own (the numbers in its files; see data/locomo/SOURCE.md). 5 = unanswerable: the right answer is
#         to abstain; LongMemEval's abstention questions (`_abs`) are category 5 too.
#   11-13 the generated knowledge-update set (data/updates, `memtune-gen`): what a value is now, what it was
#         before, a value that never changed.
#   21-26 LongMemEval's question types (optimize/data/longmemeval.py).
# 6-10 stay free (data/fixture/quirks.json uses 7 as an unknown category).
LOCOMO_CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
UPDATES_CATEGORIES = {11: "current", 12: "history", 13: "stable"}
LONGMEMEVAL_CATEGORIES = {
    21: "single-session-user",
    22: "single-session-assistant",
    23: "single-session-preference",
    24: "temporal-reasoning",
    25: "knowledge-update",
    26: "multi-session",
}
CATEGORY_NAMES: dict[int, str] = LOCOMO_CATEGORIES | UPDATES_CATEGORIES | LONGMEMEVAL_CATEGORIES

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
