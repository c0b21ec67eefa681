"""The writes of the memory store before they reach LanceDB: `Change` (one write as a policy decides it), the
checks on a batch of changes, and `plan_changes()`, which works out a batch's effect (rows to insert, update and
delete, history rows, the rows after the batch) without writing anything."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ..provenance import union
from ..types import OPS, Op, Scope
from .invalidate import check_invalidation, invalidate, invalidation_history
from .mirror import _normalise
from .sql import _check_scope, _check_text, in_scope


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, eq=False)  # eq=False: a numpy vector has no truth value, so equality is identity
class Change:
    """One write, as decided by a policy. NOOP is recorded in the history only. INVALIDATE (soft invalidation)
    keeps the memory but marks it no longer holding: invalid_at := `timestamp` (when it stopped holding; now
    when empty), superseded_by := `superseded_by`; searches skip it unless asked for history."""

    op: Op  # "ADD" | "UPDATE" | "DELETE" | "NOOP" | "INVALIDATE"
    text: str = ""  # ADD/UPDATE: the memory text; NOOP: the candidate fact judged redundant
    vector: np.ndarray | None = None  # required for ADD/UPDATE (normalised by the store)
    memory_id: str | None = None  # required for UPDATE/DELETE/NOOP/INVALIDATE; ADD gets a new uuid4
    scope: Scope = Scope()  # ADD: the owner; otherwise the target must lie inside it (wildcards)
    provenance: tuple[str, ...] = ()  # dia_ids the text comes from; UPDATE: the memory's new provenance (see merge)
    timestamp: str = ""  # when the fact was said (UPDATE keeps the old one when empty)
    metadata: dict | None = None  # ADD: stored; UPDATE: merged over the old (None keeps it)
    # UPDATE only. False (replace): the new text replaces the old content, so the memory cites `provenance` alone.
    # True (merge): the new text keeps the old content too, so it cites the old provenance + `provenance`.
    # Either way the history row keeps the old provenance (old_provenance). See policies/provenance.py.
    merge: bool = False
    # ADD only: valid memories the new one supersedes; each is invalidated in the same batch (invalid_at := this
    # change's timestamp, superseded_by := the new memory's id, which is only known when the batch is planned).
    supersedes: tuple[str, ...] = ()
    superseded_by: str = ""  # INVALIDATE only: the memory that replaced it ("" when none)

    def __post_init__(self):
        if not isinstance(self.provenance, tuple):
            object.__setattr__(self, "provenance", tuple(self.provenance))
        if not isinstance(self.supersedes, tuple):
            object.__setattr__(self, "supersedes", tuple(self.supersedes))


@dataclass
class _Plan:
    results: list[tuple[Op, str, str]]
    inserts: list[dict]  # full rows (with "vector")
    updates: list[dict]
    deletes: list[str]
    history: list[dict]
    after: dict[str, dict | None]  # id -> row after the batch (None: deleted), for the mirror


def check_vectors(vectors: Any, what: str, dim: int, embedder_id: str) -> np.ndarray:
    """`vectors` (one or a batch) as unit-length float32 rows; wrong dim, NaN/inf or zero vectors fail."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2 or v.shape[1] != dim:
        raise ValueError(
            f"{what}: expected vectors of dim {dim} (embedder {embedder_id!r}), got shape {tuple(np.shape(vectors))}"
        )
    if not np.isfinite(v).all():
        raise ValueError(f"{what}: vector contains NaN or inf")
    if (np.linalg.norm(v, axis=1) == 0).any():
        raise ValueError(f"{what}: zero vector (cosine similarity is undefined)")
    return _normalise(v)


def validate_change(c: Change, i: int, dim: int, embedder_id: str) -> np.ndarray | None:
    """Check change `i` of a batch; returns its normalised vector (ADD/UPDATE) or None."""
    where = f"change {i} ({getattr(c, 'op', '?')})"
    if not isinstance(c, Change):
        raise TypeError(f"change {i}: expected a Change, got {type(c).__name__}")
    if c.op not in OPS:
        raise ValueError(f"{where}: op must be one of {OPS}")
    _check_scope(c.scope)
    if not all(isinstance(p, str) for p in c.provenance):
        raise TypeError(f"{where}: provenance must be strings, got {c.provenance!r}")
    if c.metadata is not None and not isinstance(c.metadata, dict):
        raise TypeError(f"{where}: metadata must be a dict or None")
    if not isinstance(c.merge, bool):
        raise TypeError(f"{where}: merge must be a bool, got {c.merge!r}")
    if c.merge and c.op != "UPDATE":
        raise ValueError(f"{where}: merge applies to UPDATE only (it says the new text keeps the old content)")
    check_invalidation(c, where)
    if c.op == "ADD" and c.memory_id is not None:
        raise ValueError(f"{where}: ADD takes no memory_id (the store assigns one), got {c.memory_id!r}")
    if c.op != "ADD":
        if not c.memory_id:
            raise ValueError(f"{where}: memory_id is required")
        _check_text(c.memory_id, "memory_id")
    if c.op in ("ADD", "UPDATE"):
        if not isinstance(c.text, str) or not c.text.strip():
            raise ValueError(f"{where}: text is required")
        if c.vector is None:
            raise ValueError(f"{where}: vector is required")
        return check_vectors(c.vector, where, dim, embedder_id)[0]
    return None


def plan_changes(
    changes: Sequence[Change],
    vectors: list[np.ndarray | None],
    before: dict[str, dict],
    embedder_id: str,
    next_seq: Callable[[], int],
    policy_version: str = "",
) -> _Plan:
    """The effect of a validated batch, in order: `vectors[i]` is change i's normalised vector, `before` the
    stored rows of the ids the batch names, `next_seq()` the next history seq. Rows added or updated, and every
    history row, are stamped with `policy_version`. Raises KeyError on an unknown id or one outside the change's
    scope."""
    state: dict[str, dict | None] = dict(before)
    dirty: dict[str, None] = {}  # ids added/updated, in order
    results: list[tuple[Op, str, str]] = []
    history: list[dict] = []
    row: dict[str, Any] | None
    now = _now()
    invalidated: list[dict] = []  # rows this change invalidated (their history rows follow the change's own)
    for i, (c, vec) in enumerate(zip(changes, vectors)):
        if c.op == "ADD":
            mid = str(uuid.uuid4())
            row = {
                "id": mid,
                "text": c.text,
                "vector": vec,
                "user_id": c.scope.user_id,
                "agent_id": c.scope.agent_id,
                "run_id": c.scope.run_id,
                "provenance": list(c.provenance),
                "timestamp": c.timestamp,
                "created_at": now,
                "updated_at": now,
                "metadata": json.dumps(c.metadata or {}, sort_keys=True, ensure_ascii=False),
                "embedder_id": embedder_id,
                "policy_version": policy_version,
                "invalid_at": "",
                "superseded_by": "",
            }
            state[mid] = row
            dirty[mid] = None
            old_text, new_text = "", c.text
            for old_id in c.supersedes:  # soft invalidation of what the new memory replaces
                gone = invalidate(
                    _target(state, before, old_id, c, i),
                    c.timestamp or now,
                    mid,
                    now,
                    policy_version,
                    f"change {i} (ADD)",
                )
                state[old_id] = gone
                dirty[old_id] = None
                invalidated.append(gone)
        else:
            assert c.memory_id is not None  # validate_change() refuses a change without an id
            mid = c.memory_id
            row = _target(state, before, mid, c, i)
            old_text = row["text"]
            new_text = c.text
            old_prov = list(row["provenance"] or [])
            if c.op == "UPDATE":
                meta = json.loads(row["metadata"]) if row["metadata"] else {}
                if c.metadata:
                    meta.update(c.metadata)
                row = {
                    **row,
                    "text": c.text,
                    "vector": vec,
                    "provenance": list(union(old_prov, c.provenance) if c.merge else union(c.provenance)),
                    "timestamp": c.timestamp or row["timestamp"],
                    "updated_at": now,
                    "metadata": json.dumps(meta, sort_keys=True, ensure_ascii=False),
                    "embedder_id": embedder_id,
                    "policy_version": policy_version,
                }
                state[mid] = row
                dirty[mid] = None
            elif c.op == "DELETE":
                state[mid] = None
                dirty.pop(mid, None)
                new_text = ""
            elif c.op == "INVALIDATE":
                row = invalidate(row, c.timestamp or now, c.superseded_by, now, policy_version, f"change {i}")
                state[mid] = row
                dirty[mid] = None
        results.append((c.op, mid, old_text))
        if c.op == "INVALIDATE":  # its own history row says what changed (invalidation_history)
            history.append(invalidation_history(row, now, next_seq(), policy_version))
            continue
        # provenance: ADD / UPDATE the memory's provenance after the change (UPDATE: merged or replaced), NOOP /
        # DELETE the change's; old_provenance: the memory's provenance before it ([] for ADD)
        new_prov = row["provenance"] if c.op in ("ADD", "UPDATE") else list(c.provenance)  # row: after the change
        history.append(
            {
                "memory_id": mid,
                "op": c.op,
                "old_text": old_text,
                "new_text": new_text,
                "time": now,
                "seq": next_seq(),
                "provenance": list(new_prov),
                "old_provenance": [] if c.op == "ADD" else old_prov,
                "user_id": row["user_id"],
                "agent_id": row["agent_id"],
                "run_id": row["run_id"],
                "metadata": json.dumps(c.metadata or {}, sort_keys=True, ensure_ascii=False),
                "policy_version": policy_version,
            }
        )
        history += [invalidation_history(r, now, next_seq(), policy_version) for r in invalidated]
        invalidated = []
    inserts = [r for i in dirty if i not in before and (r := state[i]) is not None]  # dirty ids hold rows
    updates = [r for i in dirty if i in before and (r := state[i]) is not None]
    deletes = [i for i in before if state[i] is None]
    after = {i: state[i] for i in [*dirty, *deletes]}
    return _Plan(results, inserts, updates, deletes, history, after)


def _target(state: dict[str, dict | None], before: dict[str, dict], mid: str, c: Change, i: int) -> dict:
    """The current row of the memory change `i` names (it must exist and lie in the change's scope)."""
    row = state.get(mid)
    if row is None:
        gone = " (deleted earlier in this batch)" if mid in before else ""
        raise KeyError(f"change {i} ({c.op}): unknown memory id {mid!r}{gone}; nothing from this batch was written")
    if not in_scope(row, c.scope):
        raise KeyError(
            f"change {i} ({c.op}): memory id {mid!r} is not in scope {c.scope}; nothing from this batch was written"
        )
    return row


def delete_history(rows: list[dict], reason: str, next_seq: Callable[[], int], policy_version: str) -> list[dict]:
    """History rows for deleting `rows` outside apply() (delete_all), with metadata {"reason": reason}."""
    now = _now()
    return [
        {
            "memory_id": r["id"],
            "op": "DELETE",
            "old_text": r["text"],
            "new_text": "",
            "time": now,
            "seq": next_seq(),
            "provenance": [],
            "user_id": r["user_id"],
            "agent_id": r["agent_id"],
            "run_id": r["run_id"],
            "metadata": json.dumps({"reason": reason}),
            "policy_version": policy_version,
        }
        for r in rows
    ]
