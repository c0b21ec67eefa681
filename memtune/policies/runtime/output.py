"""What the Memory API hands back: plain JSON dicts named like Mem0's API (events, memories, graph relations).

A search answers {"results": [memory, ...], "relations": [relation, ...]}: "results" are stored memories (each id
works with get / update / delete / history), "relations" the graph triplets of a Mem0g policy, which are not stored
memories and have no history of their own (Mem0's API answers the same two keys when graph memory is on).
"""

from __future__ import annotations

import json
from typing import Any

from ..types import MemoryRecord, Scope


def event(op: str, memory_id: str | None, text: str, old_text: str, superseded_by: str = "") -> dict:
    """mem0's event shape. "memory" is the text after the event: the new text for ADD / UPDATE, the redundant
    candidate for NOOP, and (as mem0 does) the deleted text for DELETE; for INVALIDATE (soft invalidation: the
    memory is kept, marked no longer holding) its unchanged text, with "superseded_by" (the replacing memory's id,
    "" when none)."""
    out = {
        "event": op,
        "id": memory_id,
        "memory": text if op not in ("DELETE", "INVALIDATE") else old_text,
        "previous_memory": old_text,
    }
    if op == "INVALIDATE":
        out["superseded_by"] = superseded_by
    return out


def memory(r: MemoryRecord, embedder_id: str, policy_version: str | None = None) -> dict:
    """A stored (or retrieved) record; `policy_version` overrides the record's own (the pyfunc model's answer)."""
    return {
        "id": r.id,
        "memory": r.text,
        "user_id": r.scope.user_id,
        "agent_id": r.scope.agent_id,
        "run_id": r.scope.run_id,
        "provenance": list(r.provenance),
        "timestamp": r.timestamp,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "metadata": json.loads(json.dumps(r.metadata or {})),
        "score": None if r.score is None else float(r.score),
        "policy_version": r.policy_version if policy_version is None else policy_version,
        "embedder_id": r.embedder_id or embedder_id,
        # soft invalidation: a memory that stopped holding (returned only when history is asked for)
        "valid": r.valid,
        "invalid_at": r.invalid_at,
        "superseded_by": r.superseded_by,
    }


def relation(r: MemoryRecord) -> dict:
    """A graph triplet (graph/retrieve.py, as_record) in Mem0's relation layout plus what the graph keeps:
    the sentence that was embedded ("memory"), when the fact held ("valid_from", "invalidated_at": "" while
    valid), the turns it came from and its similarity to the query."""
    meta = r.metadata
    return {
        "id": r.id,
        "source": meta.get("source", ""),
        "relationship": meta.get("relation", ""),
        "destination": meta.get("destination", ""),
        "memory": r.text,
        "score": None if r.score is None else float(r.score),
        "valid_from": meta.get("valid_from", ""),
        "invalidated_at": meta.get("invalidated_at", ""),
        "provenance": list(r.provenance),
        "user_id": r.scope.user_id,
        "agent_id": r.scope.agent_id,
        "run_id": r.scope.run_id,
    }


def meta_equal(meta: dict, key: str, value: Any) -> bool:
    """JSON equality: 1 == 1.0, but true is not 1 and "1" is not 1."""
    if key not in meta:
        return False
    stored = meta[key]
    return (
        stored == value
        and isinstance(stored, bool) == isinstance(value, bool)
        and isinstance(stored, str) == isinstance(value, str)
    )


def inside(owner: Scope, scope: Scope) -> bool:
    """Whether a memory owned by `owner` lies in `scope` (empty fields of `scope` are wildcards)."""
    return all(not want or getattr(owner, f) == want for f, want in _fields(scope))


def describe(scope: Scope) -> str:
    """The non-empty fields of a scope, for messages: "user_id='u1', agent_id='a1'" (or "an empty scope")."""
    return ", ".join(f"{f}={v!r}" for f, v in _fields(scope) if v) or "an empty scope"


def _fields(scope: Scope):
    return (("user_id", scope.user_id), ("agent_id", scope.agent_id), ("run_id", scope.run_id))
