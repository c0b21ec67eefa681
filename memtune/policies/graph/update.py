"""Graph update: which existing edges a new triplet contradicts, what happens to them, and compaction.

Conflict detectors (each returns, per new edge, the existing valid edges it contradicts):
* `rule`: relations declared single-valued (a person lives in one place at a time) conflict when an existing valid
  edge has the same source node and relation but another destination. Multi-valued relations ("likes") never do,
  and edges stated in the same add() never contradict each other.
* `llm`: Mem0g's update resolver: the LM sees the valid edges of the new triplets' source nodes and names the
  ones that no longer hold.
Invalidation knob: `soft` keeps a contradicted edge, marked with invalidated_at (the time the contradicting
triplet was said) and invalidated_by; `hard` deletes it. Compaction knob (soft only makes sense with it):
`keep_all`; `max_age` drops invalid edges invalidated more than `max_age_days` before the newest time said in
the scope; `keep_last` keeps only the newest `keep_last` invalid versions per (source, relation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dspy

from ..lm import predict_with_retries
from ..metering import run_stage, timed
from ..types import Scope
from .signatures import ResolveGraphConflicts
from .store import GraphStore
from .types import parse_time

INVALIDATION = ("soft", "hard")
COMPACTION = ("keep_all", "max_age", "keep_last")


@dataclass
class UpdateKnobs:
    invalidation: str = "soft"  # soft: mark contradicted edges invalid (Mem0g); hard: delete them
    compaction: str = "keep_all"  # keep_all | max_age | keep_last (see the module docstring)
    max_age_days: float = 90.0  # max_age: drop invalid edges invalidated this long before the scope's newest time
    keep_last: int = 1  # keep_last: invalid versions kept per (source, relation); 0 drops every invalid edge

    def __post_init__(self):
        if self.invalidation not in INVALIDATION:
            raise ValueError(
                f"policy.graph.edges.invalidation must be one of {INVALIDATION}, got {self.invalidation!r}"
            )
        if self.compaction not in COMPACTION:
            raise ValueError(f"policy.graph.edges.compaction must be one of {COMPACTION}, got {self.compaction!r}")
        if self.max_age_days < 0 or self.keep_last < 0:
            raise ValueError(
                "policy.graph.edges.max_age_days and keep_last must be >= 0, got "
                f"{self.max_age_days!r} and {self.keep_last!r}"
            )


# Relations (as the spaCy generator names them; LLM names are snake_case verbs) that hold one value at a time.
SINGLE_VALUED = [
    "is",
    "live_in",
    "move_to",
    "work_at",
    "work_as",
    "work_for",
    "study_at",
    "married_to",
    "marry",
    "date",
    "feel",
    "name",
    "age",
    "lives_in",
    "works_at",
    "works_as",
]


@dataclass
class RuleResolverKnobs:
    single_valued: list[str] = field(default_factory=lambda: list(SINGLE_VALUED))  # ["*"]: every relation


class RuleConflictResolver:
    """Same source node + same single-valued relation + another destination = contradiction."""

    def __init__(self, **knobs):
        self.knobs = RuleResolverKnobs(**{k: list(v) if k == "single_valued" else v for k, v in knobs.items()})

    def conflicts(self, new_edges: list[dict], store: GraphStore, scope: Scope) -> list[list[dict]]:
        single = set(self.knobs.single_valued)
        batch = {e["id"] for e in new_edges}  # stated together, they hold together ("I'm happy and thankful")
        out: list[list[dict]] = []
        with timed("graph_conflicts"):
            for new in new_edges:
                if "*" not in single and new["relation"] not in single:
                    out.append([])
                    continue
                out.append(
                    [
                        e
                        for e in store.outgoing(new["source_id"], new["relation"])
                        if e["id"] not in batch and e["destination_id"] != new["destination_id"]
                    ]
                )
        return out


@dataclass
class LLMResolverKnobs:
    max_existing: int = 30  # valid edges shown to the LM (those of the new triplets' source nodes, newest first)
    retries: int = 2


class LLMConflictResolver(dspy.Module):
    """Mem0g's update resolver: the LM marks the existing relationships a new one makes obsolete.

    forward(existing_relations=[{"id", "source", "relation", "destination", "valid_from"}], new_relations) ->
    Prediction(outdated_ids, rejected): plain data with the small ids as shown, new relations as
    'source -- relation -- destination'; an id that was not shown goes to `rejected` (never applied)."""

    phase = "graph_conflicts"

    def __init__(self, **knobs):
        super().__init__()
        self.knobs = LLMResolverKnobs(**knobs)
        self.predict = dspy.Predict(ResolveGraphConflicts)
        self.rejected: list = []  # ids the LM named that were never shown (caught, never applied)

    def forward(self, existing_relations: list[dict], new_relations: list[str]) -> dspy.Prediction:
        result = predict_with_retries(
            self.predict,
            self.phase,
            self.knobs.retries,
            existing_relations=list(existing_relations),
            new_relations=list(new_relations),
        )
        shown = {str(e["id"]) for e in existing_relations}
        outdated: list[int] = []
        rejected: list = []
        for raw in result.outdated_ids or []:
            if str(raw).strip() in shown and int(raw) not in outdated:
                outdated.append(int(raw))
            elif str(raw).strip() not in shown:
                rejected.append(raw)
        return dspy.Prediction(outdated_ids=outdated, rejected=rejected)

    def conflicts(self, new_edges: list[dict], store: GraphStore, scope: Scope) -> list[list[dict]]:
        out: list[list[dict]] = [[] for _ in new_edges]
        new_ids = {e["id"] for e in new_edges}
        shown: dict[str, dict] = {}
        for new in new_edges:
            for e in sorted(store.outgoing(new["source_id"]), key=lambda e: -e["seq"]):
                if e["id"] not in new_ids:
                    shown.setdefault(e["id"], e)
        existing = list(shown.values())[: self.knobs.max_existing]
        if not existing:
            return out
        result = run_stage(
            self,
            new_edges[0]["text"][:60],
            existing_relations=[
                {
                    "id": i,
                    "source": e["source"],
                    "relation": e["relation"],
                    "destination": e["destination"],
                    "valid_from": e["valid_from"],
                }
                for i, e in enumerate(existing)
            ],
            new_relations=[f"{e['source']} -- {e['relation']} -- {e['destination']}" for e in new_edges],
        )
        if result is None:
            return out
        self.rejected += result.rejected
        for i in result.outdated_ids:
            old = existing[i]
            # attribute it to the new edge from the same source node (the one that supersedes it), else the first
            by = next((j for j, n in enumerate(new_edges) if n["source_id"] == old["source_id"]), 0)
            if old not in out[by]:
                out[by].append(old)
        return out


def apply_conflicts(store: GraphStore, new_edges: list[dict], conflicts: list[list[dict]], knobs: UpdateKnobs) -> int:
    """Invalidate (soft) or delete (hard) the contradicted edges; returns how many edges stopped being valid."""
    done = 0
    for new, olds in zip(new_edges, conflicts):
        for old in olds:
            if old["id"] not in store.edges.rows or old["invalidated_at"]:
                continue
            if knobs.invalidation == "hard":
                store.delete_edge(old)
            else:
                store.invalidate(old, new["valid_from"], new["id"])
            done += 1
    return done


def compact(store: GraphStore, scope: Scope, knobs: UpdateKnobs) -> int:
    """Drop invalid edges of the scope as the compaction knob says; returns how many were dropped."""
    if knobs.compaction == "keep_all":
        return 0
    invalid = [e for e in store.scope_edges(scope, include_invalid=True) if e["invalidated_at"]]
    if not invalid:
        return 0
    drop: list[dict] = []
    if knobs.compaction == "max_age":
        times = [t for e in store.scope_edges(scope, include_invalid=True) if (t := parse_time(e["valid_from"]))]
        if not times:
            return 0
        newest = max(times)
        for e in invalid:
            at = parse_time(e["invalidated_at"])
            if at is not None and (newest - at).total_seconds() > knobs.max_age_days * 86400:
                drop.append(e)
    else:  # keep_last
        groups: dict[tuple, list[dict]] = {}
        for e in invalid:
            groups.setdefault((e["source_id"], e["relation"]), []).append(e)
        for group in groups.values():
            group.sort(key=lambda e: -e["seq"])
            drop += group[knobs.keep_last :]
    for e in drop:
        store.delete_edge(e)
    return len(drop)
