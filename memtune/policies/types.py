"""Plain records passed between the stages of a memory policy (no heavy imports here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# INVALIDATE: soft invalidation, the memory stays stored (and in its history) but stops being returned by default:
# it gets invalid_at (when it stopped holding) and superseded_by (the memory that replaced it, "" if none).
Op = Literal["ADD", "UPDATE", "DELETE", "NOOP", "INVALIDATE"]
OPS: tuple[Op, ...] = ("ADD", "UPDATE", "DELETE", "NOOP", "INVALIDATE")


@dataclass(frozen=True)
class Message:
    """One conversation turn as the policy sees it."""

    speaker: str
    text: str
    dia_id: str = ""  # provenance id, e.g. LOCOMO "D3:7"; "" when the caller has none
    timestamp: str = ""  # when it was said, free text ("1:56 pm on 8 May, 2023") or ISO


@dataclass(frozen=True)
class Fact:
    """A candidate memory produced by an extractor."""

    text: str
    provenance: tuple[str, ...] = ()  # dia_ids of the turns the fact came from, and only those
    timestamp: str = ""


@dataclass(frozen=True)
class Scope:
    """Who a memory belongs to. Empty fields are wildcards for reads and stored as "" for writes."""

    user_id: str = ""
    agent_id: str = ""
    run_id: str = ""


@dataclass
class MemoryRecord:
    """A stored memory as returned by the store (vector omitted unless asked for)."""

    id: str
    text: str
    scope: Scope
    provenance: tuple[str, ...] = ()
    timestamp: str = ""  # when the underlying fact was said
    created_at: str = ""  # ISO wall-clock time of the write
    updated_at: str = ""
    metadata: dict = field(default_factory=dict)
    score: float | None = None  # similarity to the query, when it came from a search
    policy_version: str = ""  # the policy bundle version that last wrote it ("" for eval runs and old stores)
    embedder_id: str = ""  # the embedder its vector came from
    invalid_at: str = ""  # soft invalidation: when the fact stopped holding (the superseding fact's time); "" valid
    superseded_by: str = ""  # the id of the memory that superseded it ("" when none, or still valid)

    @property
    def valid(self) -> bool:
        """Still holds: never invalidated (search returns only valid memories unless asked for history)."""
        return not self.invalid_at


@dataclass(frozen=True)
class Decision:
    """One operation a decider chose; `target` is a real memory id for UPDATE/DELETE/NOOP-on-existing."""

    op: Op
    text: str = ""
    target: str | None = None
    provenance: tuple[str, ...] = ()  # the turns the decided text comes from
    timestamp: str = ""
    merge: bool = False  # UPDATE: the new text keeps the old memory's content (provenance unions); False replaces
    # UPDATE: further memories the new text ends besides `target` (a fact that fills a slot several stored memories
    # held). Invalidated (soft) or deleted (hard) with the target; see MemoryPolicy._apply.
    supersedes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Event:
    """What actually changed in the store (returned by MemoryPolicy.add)."""

    op: Op
    memory_id: str | None
    text: str = ""
    old_text: str = ""
    superseded_by: str = ""  # INVALIDATE: the memory that replaced this one ("" when none)
