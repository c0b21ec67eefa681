"""Offline supersede for the threshold decider (`policy.decider.supersede=true`): slot rules before the cosine rule.

For each candidate fact and its most similar stored (valid) memories:

1. The fact's slot (slots.py: subject, attribute, value). Stored memories at least `slot_threshold` cosine-similar
   to it are read the same way; those with the same subject and attribute are its slot-mates.
2. A slot-mate with the same value (value-word overlap >= `restate_threshold`, same polarity) is restated: NOOP on
   it, nothing is added ("I live in Porto now" after "Porto is my home"). Slot-mates the fact ends are
   superseded: UPDATE(target = the most similar, supersedes = the others), which the policy applies as a soft
   invalidation (ADD the fact, mark them invalid_at / superseded_by) or a hard replace (`invalidation`). When a
   fact both restates one slot-mate and ends another, the first is NOOPed and the second ended (DELETE: soft,
   invalidated; hard, deleted).
3. No slot-mate: the cosine rule (noop_threshold / update_threshold), but never against a memory about someone else
   (another subject: "Bob: I live in Lisbon" must not replace "Alice: I live in Lisbon", though their cosine is
   high) nor against a memory that fills another slot of the same person ("I work at Acme in Porto" vs "I live in
   Porto") or another value the fact does not end; and a memory holding a slot is never replaced by a fact without
   one ("I work in Lisbon" must not overwrite "I live in Lisbon", cosine 0.9): such a fact may only NOOP on it
   (cosine >= noop_threshold).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..types import Decision, Fact, MemoryRecord
from .slots import relation, slot_of, subject_of


def slot_decisions(
    fact: Fact, neighbours: list[MemoryRecord], knobs: Any, stats: Counter
) -> tuple[list[Decision], list[MemoryRecord]]:
    """(decisions for `fact` from its slot-mates, or []; the neighbours the cosine rule may still use)."""
    slot = slot_of(fact.text)
    subject = subject_of(fact.text, slot)
    mates: dict[str, list[MemoryRecord]] = {"restates": [], "ends": []}
    usable: list[MemoryRecord] = []
    for memory in neighbours:
        other = slot_of(memory.text)
        if subject and subject_of(memory.text, other) not in ("", subject):
            stats["other_subject_skipped"] += 1
            continue  # never NOOP / UPDATE a memory about someone else
        score = memory.score if memory.score is not None else -1.0
        if slot is not None and other is not None:
            how = relation(slot, other, knobs.restate_threshold)
            if how is not None and score >= knobs.slot_threshold:
                mates[how].append(memory)
            continue  # another slot, or a value this fact leaves alone: not the cosine rule's either
        if other is not None:  # a slot memory is ended by a slot-mate only; a fact without a slot may NOOP on it
            if score >= knobs.noop_threshold and not usable:
                mates["restates"].append(memory)
            continue
        usable.append(memory)
    decisions = []
    if mates["restates"]:
        stats["restated"] += 1
        decisions.append(Decision("NOOP", fact.text, mates["restates"][0].id, fact.provenance, fact.timestamp))
        decisions += [Decision("DELETE", "", m.id, fact.provenance, fact.timestamp) for m in mates["ends"]]
    elif mates["ends"]:
        first, *rest = mates["ends"]
        decisions.append(
            Decision(
                "UPDATE", fact.text, first.id, fact.provenance, fact.timestamp, supersedes=tuple(m.id for m in rest)
            )
        )
    stats["superseded"] += len(mates["ends"])
    return decisions, usable
