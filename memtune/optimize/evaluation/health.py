"""Memory health: is what a policy stores current, single and lean? Pure functions (hand-computed tests in
tests/test_health.py), collected per conversation at ingestion (`store_health`, cached with the store) and summed
into summary.json `health.*` (`health_summary`).

* duplicate_rate: share of valid memories that have another valid memory of the same scope at cosine >=
  DUPLICATE_COSINE (0.95, the threshold decider's NOOP cut-off: a pair this close is one fact said twice).
  A store with no memories has rate 0.
* contradictions: pairs of valid memories of one scope that fill the same slot (slots.py: same person, same
  single-valued attribute) with values that cannot both hold (`contradicts`, value-word overlap below
  SAME_VALUE = 0.5). Read with the fixed constants here, never the policy's own knobs, so a sweep cannot move the
  yardstick. Also per 100 valid memories.
* stale_retrieval_rate: share of the retrieved memories that the conversation itself contradicted LATER than the
  memory's own turns: a memory is stale when it fills a slot and a turn after its last provenance turn states the
  same slot with a value that ends it (`relation(later, memory) == "ends"`), whether or not the policy noticed.
  Over the questions that do not ask about the past (kind `history` is left out: there the old value is the
  answer). Memories without a slot or without known turns are never stale.
* memories_per_100_turns (valid memories), stored_per_100_turns (every stored row, superseded ones included).
* growth: memories (valid) after each session, per conversation, and growth_slope: the least-squares slope of
  memories over sessions (memories added per session), averaged over conversations.

What an optimiser could exploit: storing nothing has no duplicates, no contradictions and no stale retrievals;
use these as constraints (sweep.constraints) or beside a recall objective, never alone.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from ...policies.stages.slots import Slot, contradicts, relation, slot_of

DUPLICATE_COSINE = 0.95  # the threshold decider's NOOP cut-off (DecisionKnobs.noop_threshold)
SAME_VALUE = 0.5  # value-word overlap at which two statements of one slot hold one value (slots.same_value)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def _close_pairs(vectors: np.ndarray, groups: Sequence[Hashable], cutoff: float, chunk: int = 1024):
    """(i, j), i < j, of one group at cosine >= cutoff (unit vectors), a chunk of rows at a time."""
    members: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    for idx in members.values():
        if len(idx) < 2:
            continue
        sub = vectors[idx]
        for start in range(0, len(idx), chunk):
            sims = sub[start : start + chunk] @ sub.T
            for a, b in zip(*np.nonzero(sims >= cutoff)):
                i, j = idx[start + int(a)], idx[int(b)]
                if i < j:
                    yield i, j


def duplicate_flags(vectors: np.ndarray, groups: Sequence[Hashable], cutoff: float = DUPLICATE_COSINE) -> np.ndarray:
    """flags[i]: memory i has another memory of its group at cosine >= cutoff (unit vectors)."""
    flags = np.zeros(len(groups), bool)
    for i, j in _close_pairs(vectors, groups, cutoff):
        flags[i] = flags[j] = True
    return flags


def duplicate_clusters(
    vectors: np.ndarray, groups: Sequence[Hashable], cutoff: float = DUPLICATE_COSINE
) -> list[list[int]]:
    """Groups of memories linked by cosine >= cutoff within a group (connected components of 2 or more),
    largest first."""
    parent = list(range(len(groups)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in _close_pairs(vectors, groups, cutoff):
        parent[root(i)] = root(j)
    clusters: dict[int, list[int]] = {}
    for i in range(len(groups)):
        clusters.setdefault(root(i), []).append(i)
    return sorted((c for c in clusters.values() if len(c) > 1), key=lambda c: (-len(c), c))


def contradiction_pairs(texts: Sequence[str], groups: Sequence[Hashable]) -> list[tuple[int, int]]:
    """(i, j), i < j: memories of one group that fill one slot with values that cannot both hold."""
    slotted = [(i, s) for i, t in enumerate(texts) if (s := slot_of(t)) is not None]
    pairs = []
    for n, (i, a) in enumerate(slotted):
        for j, b in slotted[n + 1 :]:
            if groups[i] == groups[j] and contradicts(a, b, SAME_VALUE):
                pairs.append((i, j))
    return pairs


def turn_statements(turns: Sequence[tuple[str, str, str]]) -> tuple[dict[str, int], list[tuple[int, Slot]]]:
    """From a conversation's turns (dia_id, speaker, text), in order: each dia_id's position, and the slot
    statements of every sentence with the position of its turn."""
    order, statements = {}, []
    for pos, (dia_id, speaker, text) in enumerate(turns):
        order[dia_id] = pos
        for sentence in _SENTENCE.split(text):
            slot = slot_of(sentence, speaker)
            if slot is not None:
                statements.append((pos, slot))
    return order, statements


def is_stale(text: str, provenance: Sequence[str], order: Mapping[str, int], statements: Sequence) -> bool:
    """The conversation ended this memory's slot value after the memory's own turns (see the module docstring)."""
    slot = slot_of(text)
    known = [order[p] for p in provenance if p in order]
    if slot is None or not known:
        return False
    last = max(known)
    return any(pos > last and relation(later, slot, SAME_VALUE) == "ends" for pos, later in statements)


def slope(ys: Sequence[float]) -> float | None:
    """Least-squares slope of ys over 1, 2, ..., n (None for fewer than 2 points)."""
    if len(ys) < 2:
        return None
    x = np.arange(1, len(ys) + 1, dtype=float)
    y = np.asarray(ys, float)
    return float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())


def per_100(count: int, turns: int) -> float | None:
    return round(100.0 * count / turns, 4) if turns else None


def store_health(store: Any, scope: Any, turns: int, growth: list[int]) -> dict:
    """The health facts of one conversation's scope after ingestion (cached with the store in ingest.json)."""
    records, vectors = store.get_all_with_vectors(scope)
    texts = [r.text for r in records]
    return {
        "scope": scope.user_id,
        "turns": turns,
        "memories": len(records),
        "stored": store.count(scope, include_invalid=True),
        "duplicates": int(duplicate_flags(vectors, [0] * len(records)).sum()),
        "contradictions": len(contradiction_pairs(texts, [0] * len(records))),
        "growth": list(growth),
    }


def health_summary(per_conversation: Sequence[Mapping], frame: Any) -> dict:
    """summary.json `health`: the per-conversation facts pooled, stale retrieval from the per-question frame
    (columns n_memories, n_stale; kind `history` left out). A missing fact or column raises KeyError."""
    memories = sum(c["memories"] for c in per_conversation)
    turns = sum(c["turns"] for c in per_conversation)
    stale = frame if "category_name" not in frame.columns else frame.filter(frame["category_name"] != "history")
    retrieved = int(stale["n_memories"].sum()) if stale.height else 0
    slopes = [s for c in per_conversation if (s := slope(c["growth"])) is not None]
    contradictions = sum(c["contradictions"] for c in per_conversation)
    return {
        "memories": memories,
        "stored": sum(c["stored"] for c in per_conversation),
        "duplicate_rate": round(sum(c["duplicates"] for c in per_conversation) / memories, 4) if memories else 0.0,
        "duplicate_cosine": DUPLICATE_COSINE,
        "contradictions": contradictions,
        "contradictions_per_100_memories": round(100.0 * contradictions / memories, 4) if memories else 0.0,
        "stale_retrieval_rate": round(int(stale["n_stale"].sum()) / retrieved, 4) if retrieved else 0.0,
        "memories_per_100_turns": per_100(memories, turns),
        "stored_per_100_turns": per_100(sum(c["stored"] for c in per_conversation), turns),
        "growth": [list(c["growth"]) for c in per_conversation],
        "growth_slope": round(float(np.mean(slopes)), 4) if slopes else None,
    }
