"""From a decider's decisions to store changes, under the decider's `invalidation` knob (soft | hard).

A decision ENDS a memory when it replaces it (UPDATE with merge=False, and the UPDATE's `supersedes`) or removes it
(DELETE). With `hard` (Mem0) an ended memory is overwritten or deleted, as the decision says. With `soft` it is kept
and marked: a replacing UPDATE becomes an ADD of the new text that supersedes the target (and the UPDATE's other
`supersedes`): the old memories get invalid_at = the new fact's time and superseded_by = the new memory's id; a
DELETE becomes an INVALIDATE (invalid_at = the deciding fact's time, superseded_by = ""). A merging UPDATE (the new
text keeps the old content) stays an UPDATE in both modes: nothing stopped holding. NOOP is NOOP.

Searches skip invalid memories unless asked for history (retriever `include_history`), so soft and hard answer
current questions from the same memories; soft also keeps what used to hold, and when it stopped.
"""

from __future__ import annotations

from .store.changes import Change
from .types import Decision, Scope


def to_changes(decisions: list[Decision], known: dict, scope: Scope, metadata: dict | None, soft: bool) -> list[Change]:
    """The store changes of `decisions` (NOOPs without a target excluded). `known`: text -> embedding."""
    changes = []
    for d in decisions:
        if d.op == "NOOP" and d.target is None:
            continue
        ended = (d.target, *d.supersedes) if d.op == "UPDATE" and not d.merge else ()
        if soft and ended:
            changes.append(
                Change(
                    "ADD",
                    d.text,
                    known.get(d.text),
                    None,
                    scope,
                    d.provenance,
                    d.timestamp,
                    metadata,
                    supersedes=tuple(i for i in ended if i),
                )
            )
            continue
        if soft and d.op == "DELETE":
            changes.append(Change("INVALIDATE", "", None, d.target, scope, d.provenance, d.timestamp))
            continue
        changes.append(
            Change(d.op, d.text, known.get(d.text), d.target, scope, d.provenance, d.timestamp, metadata, d.merge)
        )
        if d.op == "UPDATE" and d.supersedes:  # hard: the other memories the fact ends are deleted
            changes += [Change("DELETE", "", None, i, scope, d.provenance, d.timestamp) for i in d.supersedes]
    return changes
