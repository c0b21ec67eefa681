"""Graph retrieval: question -> triplets, by two paths (Mem0g §2.2), merged:

* entity-centric: seed nodes are the nodes named in the question (their name appears in it as whole words) plus
  the `seed_nodes` nodes whose embedding is most similar to the question (>= `entity_threshold`); walk their
  edges up to `hops` hops; rank the walked edges by cosine(question, triplet) and keep `entity_top_k`;
* semantic triplet search: cosine(question, triplet sentence) over the scope's edges, top `triplet_top_k`.

Invalid (superseded) edges are walked and returned only with `include_invalid`. Each triplet comes back as a
MemoryRecord (text = the triplet sentence, timestamp = valid_from, provenance = its dia_ids) with the triplet and
its validity in `metadata` (kind "graph"), so the answerer can show when each fact held.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..metering import timed
from ..types import MemoryRecord, Scope
from .store import GraphStore

GRAPH_KIND = "graph"


@dataclass
class GraphRetrievalKnobs:
    entity_top_k: int = 10  # edges kept from the entity walk
    triplet_top_k: int = 10  # edges kept from semantic triplet search
    hops: int = 1  # walk depth from the seed nodes (0: no entity path)
    seed_nodes: int = 3  # seed nodes by embedding similarity (besides nodes named in the question)
    entity_threshold: float = 0.5  # min cosine(question, node name) for an embedding seed
    include_invalid: bool = False  # also return edges marked invalid (with their invalidated_at)
    max_walk: int = 2000  # cap on edges visited by the walk (speaker nodes touch most edges)
    merge: str = "append"  # mode on: "append" triplets after the vector top-k, or "score": one list by cosine

    def __post_init__(self):
        if self.merge not in ("append", "score"):
            raise ValueError(f"policy.graph.retrieval.merge must be 'append' or 'score', got {self.merge!r}")
        for name in ("entity_top_k", "triplet_top_k", "hops", "seed_nodes", "max_walk"):
            if getattr(self, name) < 0:
                raise ValueError(f"policy.graph.retrieval.{name} must be >= 0, got {getattr(self, name)!r}")


_WORDS = re.compile(r"[0-9a-z']+")


def named_nodes(question: str, nodes: list[dict]) -> list[dict]:
    """Nodes whose matching key appears in the question as a run of whole words."""
    text = " " + " ".join(_WORDS.findall(question.casefold())) + " "
    return [n for n in nodes if n["key"] and f" {' '.join(_WORDS.findall(n['key']))} " in text]


class GraphRetriever:
    def __init__(self, **knobs):
        self.knobs = GraphRetrievalKnobs(**knobs)

    def retrieve(self, question: str, vector: np.ndarray, store: GraphStore, scope: Scope) -> list[MemoryRecord]:
        k = self.knobs
        q = np.asarray(vector, np.float32).reshape(-1)
        with timed("graph_retrieve"):
            picked: dict[str, tuple[dict, float, str]] = {}
            if k.hops and k.entity_top_k:
                walked = self._walk(question, q, store, scope)
                scored = sorted(((e, float(e["vector"] @ q)) for e in walked), key=lambda x: -x[1])
                for e, s in scored[: k.entity_top_k]:
                    picked[e["id"]] = (e, s, "entity")
            if k.triplet_top_k:
                edges, matrix = store.edge_matrix(scope, k.include_invalid)
                if edges:
                    sims = matrix @ q
                    for j in np.argsort(-sims)[: k.triplet_top_k]:
                        picked.setdefault(edges[j]["id"], (edges[j], float(sims[j]), "triplet"))
            ranked = sorted(picked.values(), key=lambda x: -x[1])
            return [as_record(e, s, path) for e, s, path in ranked]

    def _walk(self, question: str, q: np.ndarray, store: GraphStore, scope: Scope) -> list[dict]:
        k = self.knobs
        nodes = store.scope_nodes(scope)
        seeds = {n["id"] for n in named_nodes(question, nodes)}
        if k.seed_nodes and nodes:
            for node, score in store.nearest_nodes(scope, q[None, :], k.seed_nodes, exact_scope=False)[0]:
                if score >= k.entity_threshold:
                    seeds.add(node["id"])
        seen_edges: dict[str, dict] = {}
        frontier, visited = set(seeds), set(seeds)
        for _ in range(k.hops):
            nxt = set()
            for node_id in frontier:
                for e in store.edges_of(node_id, k.include_invalid):
                    if not _in(e, scope) or e["id"] in seen_edges:
                        continue
                    seen_edges[e["id"]] = e
                    other = e["destination_id"] if e["source_id"] == node_id else e["source_id"]
                    if other not in visited:
                        visited.add(other)
                        nxt.add(other)
                    if len(seen_edges) >= k.max_walk:
                        return list(seen_edges.values())
            frontier = nxt
        return list(seen_edges.values())


def merge(memories: list[MemoryRecord], triplets: list[MemoryRecord], how: str) -> list[MemoryRecord]:
    """Vector memories and graph triplets as one context: appended (the vector top-k keeps its ranks), or
    ranked together by cosine to the question (both come from the same embedder)."""
    if how == "append":
        return memories + triplets
    return sorted(memories + triplets, key=lambda m: -(m.score if m.score is not None else -1.0))


def _in(edge: dict, scope: Scope) -> bool:
    return all(
        not want or edge[f] == want
        for f, want in (("user_id", scope.user_id), ("agent_id", scope.agent_id), ("run_id", scope.run_id))
    )


def as_record(edge: dict, score: float | None, path: str = "") -> MemoryRecord:
    """An edge as the answerer and the metrics see it."""
    return MemoryRecord(
        id=edge["id"],
        text=edge["text"],
        scope=Scope(edge["user_id"], edge["agent_id"], edge["run_id"]),
        provenance=tuple(edge["provenance"]),
        timestamp=edge["valid_from"],
        created_at=edge["valid_from"],
        metadata={
            "kind": GRAPH_KIND,
            "source": edge["source"],
            "relation": edge["relation"],
            "destination": edge["destination"],
            "valid_from": edge["valid_from"],
            "invalidated_at": edge["invalidated_at"],
            "invalidated_by": edge["invalidated_by"],
            "path": path,
        },
        score=score,
    )


def is_graph_record(memory: MemoryRecord) -> bool:
    return memory.metadata.get("kind") == GRAPH_KIND
