"""Soft invalidation in the memory store: a memory that stopped holding keeps its row, marked with `invalid_at`
(when it stopped holding: the superseding fact's time, or the write time when none is known) and `superseded_by`
(the id of the memory that replaced it, "" when none), instead of being overwritten or deleted.

Two changes invalidate (changes.Change): an ADD with `supersedes` (the new memory replaces those: the policy's soft
supersede, whose new id is only known when the batch is planned) and an INVALIDATE (no successor id known, or a
repair naming one: memtune-audit --apply). Each writes a history row with op INVALIDATE and metadata
{"invalid_at", "superseded_by"}. Searches and listings skip invalid memories unless asked for history.
"""

from __future__ import annotations

import json
from typing import Any

from .sql import _check_text


def check_invalidation(c: Any, where: str) -> None:
    """Refuse `supersedes` outside ADD and `superseded_by` outside INVALIDATE, and malformed ids."""
    if c.supersedes and c.op != "ADD":
        raise ValueError(f"{where}: supersedes applies to ADD only (the new memory replaces those ids)")
    if c.superseded_by and c.op != "INVALIDATE":
        raise ValueError(f"{where}: superseded_by applies to INVALIDATE only")
    for memory_id in (*c.supersedes, *([c.superseded_by] if c.superseded_by else [])):
        if not isinstance(memory_id, str) or not memory_id:
            raise ValueError(f"{where}: superseded ids must be non-empty strings, got {memory_id!r}")
        _check_text(memory_id, "memory_id")
    if len(set(c.supersedes)) != len(c.supersedes):
        raise ValueError(f"{where}: supersedes names a memory twice: {list(c.supersedes)}")


def invalidate(row: dict, at: str, by: str, now: str, policy_version: str, where: str) -> dict:
    """The row after soft invalidation at `at`, superseded by `by`; an already invalid memory is refused."""
    if row.get("invalid_at"):
        raise ValueError(
            f"{where}: memory id {row['id']!r} is already invalid (since {row['invalid_at']!r}, superseded by "
            f"{row.get('superseded_by') or 'nothing'!r}); nothing from this batch was written"
        )
    return {**row, "invalid_at": at, "superseded_by": by, "updated_at": now, "policy_version": policy_version}


def invalidation_history(row: dict, now: str, seq: int, policy_version: str) -> dict:
    """The history row of an invalidation (`row`: the memory after it). Its text and provenance do not change."""
    return {
        "memory_id": row["id"],
        "op": "INVALIDATE",
        "old_text": row["text"],
        "new_text": row["text"],
        "time": now,
        "seq": seq,
        "provenance": list(row["provenance"] or []),
        "old_provenance": list(row["provenance"] or []),
        "user_id": row["user_id"],
        "agent_id": row["agent_id"],
        "run_id": row["run_id"],
        "metadata": json.dumps(
            {"invalid_at": row["invalid_at"], "superseded_by": row["superseded_by"]}, sort_keys=True
        ),
        "policy_version": policy_version,
    }
