"""The fixes memtune-audit proposes, as store changes, and applying them (only with --apply; nothing else writes).

    supersede  each contradiction (two valid memories of one scope filling one slot with values that cannot both
               hold): the older one (by write time) is invalidated, superseded_by the newest memory of that slot
               in the pair (soft invalidation: kept, marked, no longer returned)
    merge      each duplicate cluster (valid memories of one scope at cosine >= 0.95): the newest is kept and cites
               the turns of all (an UPDATE that merges provenance, text unchanged), the others are invalidated,
               superseded_by it
    purge      every invalid (superseded) memory of the scope is deleted; its text stays in older LanceDB versions
               until `memtune-purge STORE`

Each runs as one batch through MemoryStore.apply (all or nothing; every change recorded in the history). Run it
while no server writes to the store (one writer per store).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...policies.provenance import union
from ...policies.store.changes import Change
from ...policies.types import MemoryRecord
from ..evaluation.health import contradiction_pairs, duplicate_clusters

FIXES = ("supersede", "merge", "purge")


def plan(fix: str, records: Sequence[MemoryRecord], vectors: np.ndarray) -> list[Change]:
    """The changes of `fix` over the scope's stored memories (superseded ones included: purge needs them)."""
    valid = [i for i, r in enumerate(records) if r.valid]
    groups = [records[i].scope for i in valid]
    if fix == "supersede":
        losers: dict[int, int] = {}  # older -> newer, over the valid memories
        for a, b in contradiction_pairs([records[i].text for i in valid], groups):
            old, new = sorted((valid[a], valid[b]), key=lambda i: (records[i].created_at, records[i].id))
            if old not in losers or _newer(records, new, losers[old]):
                losers[old] = new
        return [
            Change(
                "INVALIDATE",
                memory_id=records[old].id,
                scope=records[old].scope,
                timestamp=records[new].timestamp,
                superseded_by=records[new].id,
            )
            for old, new in sorted(losers.items())
        ]
    if fix == "merge":
        changes = []
        for cluster in duplicate_clusters(vectors[valid], groups):
            members = [valid[i] for i in cluster]
            keep = max(members, key=lambda i: (records[i].created_at, records[i].id))
            rest = [i for i in members if i != keep]
            k = records[keep]
            cited = union(*(records[i].provenance for i in rest))
            changes.append(Change("UPDATE", k.text, vectors[keep], k.id, k.scope, cited, k.timestamp, merge=True))
            changes += [
                Change(
                    "INVALIDATE",
                    memory_id=records[i].id,
                    scope=records[i].scope,
                    timestamp=k.timestamp,
                    superseded_by=k.id,
                )
                for i in rest
            ]
        return changes
    if fix == "purge":
        return [Change("DELETE", memory_id=r.id, scope=r.scope) for r in records if not r.valid]
    raise ValueError(f"unknown fix {fix!r}: one of {FIXES}")


def _newer(records: Sequence[MemoryRecord], i: int, j: int) -> bool:
    return (records[i].created_at, records[i].id) > (records[j].created_at, records[j].id)


def apply_fix(path: str, table: str, embedder_id: str, dim: int, changes: list[Change]) -> int:
    """Apply `changes` to the store in one batch; returns how many were applied."""
    from ...policies.store.store import MemoryStore

    if not changes:
        return 0
    with MemoryStore(path, dim=dim, embedder_id=embedder_id, table=table) as store:
        return len(store.apply(changes))
