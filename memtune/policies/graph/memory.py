"""Graph memory (Mem0g) as an optional stage of MemoryPolicy: `policy.graph` = off | on | only.

off   Mem0: no graph (MemoryPolicy gets graph=None; build.py never builds this class).
on    Mem0g: every message pair also feeds the graph; search returns the vector memories and the triplets
      (appended after the vector top-k, or ranked together by cosine: policy.graph.retrieval.merge).
only  graph-only retrieval: ingestion as `on` (the same cached store), search returns triplets only.

add(): entities -> nodes (merged into an existing node of the same scope when the matching key is equal, or the
name's embedding is within `merge_threshold` cosine of a node of a compatible type), relations -> edges (a triplet
already held as a valid edge only adds provenance), conflicts -> invalidation (soft/hard), then compaction.
Nodes are chosen by the entity extractor (plus the endpoints of every relation): with `orphan_nodes: false`
only entities that take part in a relation become nodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import dspy

from ..metering import timed
from ..types import MemoryRecord, Message, Scope
from .retrieve import GraphRetrievalKnobs, GraphRetriever, merge
from .store import GraphStore, scope_key
from .types import THING, Entity, display_name, node_key, triplet_text
from .update import UpdateKnobs, apply_conflicts, compact

MODES = ("off", "on", "only")


@dataclass
class NodeKnobs:
    merge_threshold: float = 0.9  # cosine(name, node name) at or above which an entity merges into the node
    typed_merge: bool = True  # merge by embedding only into a node of the same type (THING matches any type)
    orphan_nodes: bool = True  # keep entities that take part in no relation as nodes


@dataclass
class GraphStoreKnobs:
    flush_every: int = 50  # write the graph to LanceDB every N add() calls (and on flush()/close())
    compact_every: int = 20  # LanceDB compaction every N flushes
    max_provenance: int = 100  # dia_ids kept per node
    # dia_ids kept per edge (the first + the newest): a triplet re-stated in many turns cites at most this many.
    # 5 leaves all but 3 of the 1,037 edges of the spaCy graph of LOCOMO conv-43 whole (p99: 3 turns; the 3
    # cut are "John has team" / "has teammates" / "has life", stated in 10 / 8 / 6 turns)
    max_edge_provenance: int = 5


def _knobs(cls, value):
    return cls(**dict(value or {}))


class GraphMemory:
    """The graph stage: extraction, node merge, conflict handling, compaction, retrieval (see module docstring)."""

    # the knobs passed as mappings, and the dataclass holding their defaults (policies/knob_defaults.py reads this)
    knob_groups = {"nodes": NodeKnobs, "edges": UpdateKnobs, "retrieval": GraphRetrievalKnobs, "store": GraphStoreKnobs}

    def __init__(
        self,
        mode: str | bool = "on",
        entities=None,
        relations=None,
        resolver=None,
        nodes: Mapping | None = None,
        edges: Mapping | None = None,
        retrieval: Mapping | None = None,
        store: Mapping | None = None,
        *,
        uri: str | None = None,
        embedder=None,
        graph_store: GraphStore | None = None,
    ):
        mode = ("on" if mode else "off") if isinstance(mode, bool) else mode  # YAML 1.1 reads a bare on/off as a bool
        if mode not in MODES:
            raise ValueError(f"policy.graph.mode must be one of {MODES}, got {mode!r}")
        if mode == "off":
            raise ValueError("GraphMemory was built with mode 'off': build_policy() passes graph=None for off")
        if entities is None or relations is None or resolver is None:
            raise ValueError(
                "GraphMemory needs entities, relations and resolver stages "
                "(conf/policy/graph/on.yaml lists the defaults)"
            )
        if embedder is None:
            raise ValueError("GraphMemory needs the policy's embedder (node and triplet vectors)")
        self.mode, self.entities, self.relations, self.resolver = mode, entities, relations, resolver
        self.node_knobs, self.update_knobs = _knobs(NodeKnobs, nodes), _knobs(UpdateKnobs, edges)
        self.store_knobs = _knobs(GraphStoreKnobs, store)
        self.retriever = GraphRetriever(**dict(retrieval or {}))
        self.embedder = embedder
        if graph_store is None:
            if uri is None:
                raise ValueError("GraphMemory needs the store uri (build_policy passes the memory store's)")
            graph_store = GraphStore(
                uri,
                embedder.dim,
                embedder.id,
                compact_every=self.store_knobs.compact_every,
                max_provenance=self.store_knobs.max_provenance,
                max_edge_provenance=self.store_knobs.max_edge_provenance,
            )
        self.store = graph_store
        self.counts = {
            "nodes_added": 0,
            "nodes_merged": 0,
            "edges_added": 0,
            "edges_repeated": 0,
            "edges_invalidated": 0,
            "edges_compacted": 0,
        }
        self._adds = 0
        self._last_compaction: dict[tuple, str] = {}

    def llm_stages(self) -> dict:
        return {
            name: s
            for name, s in (
                ("graph.entities", self.entities),
                ("graph.relations", self.relations),
                ("graph.resolver", self.resolver),
            )
            if isinstance(s, dspy.Module)
        }

    # ---- ingest -------------------------------------------------------------------------------------------------
    def add(self, messages: list[Message], scope: Scope) -> list[dict]:
        """Feed one message pair to the graph; returns the edges added (rows) this call. Metered into the active
        meter (policies/metering.py: MemoryPolicy.add meters its stages)."""
        entities = self.entities.extract(messages)
        triplets = self.relations.generate(messages, entities)
        with timed("graph_nodes"):
            wanted: dict[str, Entity] = {}
            for t in triplets:
                for name, kind in ((t.source, t.source_type), (t.destination, t.destination_type)):
                    wanted.setdefault(node_key(name), Entity(display_name(name), kind, t.provenance, t.timestamp))
            if self.node_knobs.orphan_nodes:
                for e in entities:
                    wanted.setdefault(node_key(e.name), Entity(display_name(e.name), e.type, e.provenance, e.timestamp))
            nodes = self._resolve_nodes(list(wanted.values()), scope)
        with timed("graph_edges"):
            new_edges, texts = (
                [],
                [
                    triplet_text(nodes[node_key(t.source)]["name"], t.relation, nodes[node_key(t.destination)]["name"])
                    for t in triplets
                ],
            )
            vectors = self.embedder.embed(texts) if texts else []
            for t, text, vector in zip(triplets, texts, vectors):
                src, dst = nodes[node_key(t.source)], nodes[node_key(t.destination)]
                if src["id"] == dst["id"]:
                    continue
                same = [e for e in self.store.outgoing(src["id"], t.relation) if e["destination_id"] == dst["id"]]
                if same:
                    self.store.touch_edge(same[0], t.provenance)
                    self.counts["edges_repeated"] += 1
                    continue
                new_edges.append(
                    self.store.add_edge(scope, src, t.relation, dst, text, vector, t.timestamp, t.provenance)
                )
            self.counts["edges_added"] += len(new_edges)
        invalidated = 0
        if new_edges:
            conflicts = self.resolver.conflicts(new_edges, self.store, scope)
            with timed("graph_update"):
                invalidated = apply_conflicts(self.store, new_edges, conflicts, self.update_knobs)
            self.counts["edges_invalidated"] += invalidated
        self._maybe_compact(scope, messages, invalidated)
        self._adds += 1
        if self.store_knobs.flush_every and self._adds % self.store_knobs.flush_every == 0:
            with timed("graph_write"):
                self.store.flush()
        return new_edges

    def _resolve_nodes(self, entities: list[Entity], scope: Scope) -> dict[str, dict]:
        """Matching key -> node row: the same key, else the nearest compatible node within merge_threshold, else new."""
        out, fresh = {}, []
        for e in entities:
            node = self.store.node_by_key(scope, node_key(e.name))
            if node is not None:
                self.store.touch_node(node, e.provenance, e.timestamp)
                out[node_key(e.name)] = node
            else:
                fresh.append(e)
        if not fresh:
            return out
        vectors = self.embedder.embed([e.name for e in fresh])
        for e, vector in zip(fresh, vectors):
            key = node_key(e.name)
            node = None
            for cand, score in self.store.nearest_nodes(scope, vector[None, :], k=3)[0]:
                if score >= self.node_knobs.merge_threshold and self._compatible(cand["type"], e.type):
                    node = cand
                    break
            if node is not None:
                self.store.touch_node(node, e.provenance, e.timestamp)
                self.counts["nodes_merged"] += 1
            else:
                node = self.store.add_node(scope, e.name, key, e.type or THING, vector, e.provenance, e.timestamp)
                self.counts["nodes_added"] += 1
            out[key] = node
        return out

    def _compatible(self, a: str, b: str) -> bool:
        return not self.node_knobs.typed_merge or a == b or THING in (a, b)

    def _maybe_compact(self, scope: Scope, messages: list[Message], invalidated: int) -> None:
        """Compaction runs only when its outcome can change: keep_last after an invalidation, max_age when the
        time said moves on (once per session in LOCOMO) or after an invalidation."""
        knob = self.update_knobs.compaction
        stamp = messages[-1].timestamp if messages else ""
        moved = self._last_compaction.get(scope_key(scope)) != stamp
        self._last_compaction[scope_key(scope)] = stamp
        if knob == "keep_all" or not (invalidated or (knob == "max_age" and moved)):
            return
        with timed("graph_compact"):
            self.counts["edges_compacted"] += compact(self.store, scope, self.update_knobs)

    # ---- read ---------------------------------------------------------------------------------------------------
    def search(self, question: str, vector, scope: Scope) -> list[MemoryRecord]:
        return self.retriever.retrieve(question, vector, self.store, scope)

    def merge(self, memories: list[MemoryRecord], triplets: list[MemoryRecord]) -> list[MemoryRecord]:
        """Mode on: the vector memories and the triplets as one context (knob policy.graph.retrieval.merge)."""
        return merge(memories, triplets, self.retriever.knobs.merge)

    # ---- maintenance --------------------------------------------------------------------------------------------
    def flush(self) -> None:
        self.store.flush()

    def snapshot(self) -> dict:
        """Flush, compact the LanceDB tables and measure: nodes, valid/invalid edges, bytes on disk."""
        self.store.flush()
        self.store.optimize()
        return self.store.counts() | {"disk_bytes": self.store.disk_bytes()}

    def stats(self) -> dict:
        cited = getattr(self.relations, "sources", None)  # LLM relations: citations of their source messages
        return {
            "mode": self.mode,
            **self.snapshot(),
            **self.counts,
            "rejected_conflicts": len(getattr(self.resolver, "rejected", [])),
            # turns cited by all edges (/ edges = mean per edge); LLM relations citing no valid message: the pair
            "edge_provenance_turns": sum(len(e["provenance"]) for e in self.store.edges.rows.values()),
            "llm_relations": cited.items if cited else 0,
            "relation_provenance_fallbacks": cited.fallbacks if cited else 0,
        }

    def delete_all(self, scope: Scope) -> int:
        return self.store.delete_all(scope)

    def reset(self) -> None:
        self.store.reset()

    def close(self) -> None:
        self.store.close()
