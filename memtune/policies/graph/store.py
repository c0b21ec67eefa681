"""Graph memory storage: nodes (with embeddings) and edges (with validity) as two LanceDB tables next to the
memories table, served from an in-process mirror.

Why LanceDB and not an embedded graph database: the vector memories already live in LanceDB, so the graph
sits in the same directory (`<uri>/graph_nodes.lance`, `<uri>/graph_edges.lance`), shares one versioning and
compaction story, one embedder check (the embedder id and dim are in both schemas' metadata), and is cached,
exported and deleted together with the memories. The walks Mem0g needs are one or two hops from a handful of
seed nodes, which an adjacency index in memory answers in microseconds; kuzu, the embedded graph DB mem0 supports,
is archived upstream and not installed here.

Tables, the write model (mirror first, LanceDB on flush()) and the bound on edge provenance: tables.py. Scope
filters are applied in Python on the mirror.
"""

from __future__ import annotations

import os
import threading
import warnings
from datetime import timedelta
from uuid import uuid4

import lancedb
import numpy as np

from ..store.lance import disk_bytes, schema_meta
from ..store.sql import _check_scope, in_scope
from ..types import Scope
from .tables import EDGE_FIELDS, NODE_FIELDS, GraphTable, edge_provenance, table_schema


def scope_key(scope: Scope) -> tuple[str, str, str]:
    return (scope.user_id, scope.agent_id, scope.run_id)


class GraphStore:
    """Nodes and edges of many scopes; see the module docstring for the tables and the write model.

    compact_every    LanceDB compaction (merge fragments, drop old versions) every N flushes; 0 = never.
    max_provenance   dia_ids kept per node (the newest): the speaker node is named in every turn.
    max_edge_provenance  dia_ids kept per edge: the first and the newest (tables.edge_provenance).
    """

    def __init__(
        self,
        uri: str | os.PathLike,
        dim: int,
        embedder_id: str,
        prefix: str = "graph",
        compact_every: int = 20,
        max_provenance: int = 100,
        max_edge_provenance: int = 5,
    ):
        if not prefix.replace("_", "").isalnum():
            raise ValueError(f"graph table prefix must be letters, digits and '_', got {prefix!r}")
        self.uri, self.dim, self.embedder_id, self.prefix = str(uri), int(dim), embedder_id, prefix
        self.compact_every, self.max_provenance = int(compact_every or 0), int(max_provenance)
        self.max_edge_provenance = int(max_edge_provenance)
        if self.max_edge_provenance < 1:
            raise ValueError(
                f"policy.graph.store.max_edge_provenance must be >= 1 (an edge cites at least the turn that first "
                f"stated it), got {max_edge_provenance!r}"
            )
        self._lock = threading.RLock()
        self._db = lancedb.connect(self.uri)
        meta = schema_meta(embedder_id, self.dim)
        self.nodes = GraphTable(
            self._db, f"{prefix}_nodes", table_schema(NODE_FIELDS, self.dim, meta), self.uri, embedder_id, self.dim
        )
        self.edges = GraphTable(
            self._db, f"{prefix}_edges", table_schema(EDGE_FIELDS, self.dim, meta), self.uri, embedder_id, self.dim
        )
        self._flushes = 0
        self._seq = max((e["seq"] for e in self.edges.rows.values()), default=0)
        self._reindex()

    # -- indices --------------------------------------------------------------------------------------------------
    def _reindex(self) -> None:
        self._by_key: dict[tuple, str] = {}
        self._scope_nodes: dict[tuple, list[str]] = {}
        self._adjacent: dict[str, set[str]] = {}
        self._matrices: dict[tuple, tuple[list[str], np.ndarray]] = {}
        self._edge_changes = 0  # edge matrices are cached per (scope, validity, this counter)
        self._edge_matrix: tuple | None = None
        for node in self.nodes.rows.values():
            self._index_node(node)
        for edge in self.edges.rows.values():
            self._index_edge(edge)

    def _index_node(self, node: dict) -> None:
        sk = (node["user_id"], node["agent_id"], node["run_id"])
        self._by_key[(sk, node["key"])] = node["id"]
        self._scope_nodes.setdefault(sk, []).append(node["id"])
        self._matrices.pop(("nodes", sk), None)

    def _index_edge(self, edge: dict) -> None:
        for end in (edge["source_id"], edge["destination_id"]):
            self._adjacent.setdefault(end, set()).add(edge["id"])
        self._edge_changes += 1

    # -- nodes ----------------------------------------------------------------------------------------------------
    def node_by_key(self, scope: Scope, key: str) -> dict | None:
        node_id = self._by_key.get((scope_key(scope), key))
        return self.nodes.rows.get(node_id) if node_id else None

    def nearest_nodes(self, scope: Scope, vectors: np.ndarray, k: int = 1, exact_scope: bool = True):
        """Per query row: [(node row, cosine)] of the k most similar nodes of the scope, best first."""
        ids, matrix = self._node_matrix(scope, exact_scope)
        if not ids or len(vectors) == 0:
            return [[] for _ in range(len(vectors))]
        sims = np.asarray(vectors, np.float32) @ matrix.T
        out = []
        for row in sims:
            top = np.argsort(-row)[:k]
            out.append([(self.nodes.rows[ids[j]], float(row[j])) for j in top])
        return out

    def _node_matrix(self, scope: Scope, exact_scope: bool):
        if exact_scope:
            sk = scope_key(scope)
            cached = self._matrices.get(("nodes", sk))
            if cached is None:
                ids = list(self._scope_nodes.get(sk, []))
                matrix = np.stack([self.nodes.rows[i]["vector"] for i in ids]) if ids else np.zeros((0, self.dim))
                cached = self._matrices[("nodes", sk)] = (ids, matrix.astype(np.float32))
            return cached
        ids = [n["id"] for n in self.nodes.rows.values() if in_scope(n, scope)]
        return ids, (np.stack([self.nodes.rows[i]["vector"] for i in ids]) if ids else np.zeros((0, self.dim)))

    def add_node(self, scope: Scope, name: str, key: str, type_: str, vector, provenance, said_at: str) -> dict:
        _check_scope(scope)
        node = {
            "id": uuid4().hex,
            "name": name,
            "key": key,
            "type": type_,
            "user_id": scope.user_id,
            "agent_id": scope.agent_id,
            "run_id": scope.run_id,
            "provenance": list(provenance)[-self.max_provenance :],
            "first_seen": said_at,
            "last_seen": said_at,
            "mentions": 1,
            "embedder_id": self.embedder_id,
            "vector": np.asarray(vector, np.float32),
        }
        with self._lock:
            self.nodes.put(node)
            self._index_node(node)
        return node

    def touch_node(self, node: dict, provenance, said_at: str) -> None:
        """Another mention of a known node: count it and keep where it was named."""
        with self._lock:
            prov = node["provenance"] + [p for p in provenance if p not in node["provenance"]]
            node.update(
                provenance=prov[-self.max_provenance :],
                mentions=node["mentions"] + 1,
                last_seen=said_at or node["last_seen"],
            )
            self.nodes.put(node)

    def scope_nodes(self, scope: Scope) -> list[dict]:
        return [n for n in self.nodes.rows.values() if in_scope(n, scope)]

    # -- edges ----------------------------------------------------------------------------------------------------
    def add_edge(
        self, scope: Scope, source: dict, relation: str, destination: dict, text: str, vector, said_at: str, provenance
    ) -> dict:
        _check_scope(scope)
        with self._lock:
            self._seq += 1
            edge = {
                "id": uuid4().hex,
                "source_id": source["id"],
                "relation": relation,
                "destination_id": destination["id"],
                "source": source["name"],
                "destination": destination["name"],
                "text": text,
                "valid_from": said_at,
                "invalidated_at": "",
                "invalidated_by": "",
                "provenance": edge_provenance([], provenance, self.max_edge_provenance),
                "user_id": scope.user_id,
                "agent_id": scope.agent_id,
                "run_id": scope.run_id,
                "seq": self._seq,
                "mentions": 1,
                "embedder_id": self.embedder_id,
                "vector": np.asarray(vector, np.float32),
            }
            self.edges.put(edge)
            self._index_edge(edge)
        return edge

    def touch_edge(self, edge: dict, provenance) -> None:
        """The same triplet stated again: one edge, one more mention, the new assertion's turns (bounded)."""
        with self._lock:
            held, limit = edge["provenance"], self.max_edge_provenance
            edge.update(provenance=edge_provenance(held, provenance, limit), mentions=edge["mentions"] + 1)
            self.edges.put(edge)

    def edges_of(self, node_id: str, include_invalid: bool = False) -> list[dict]:
        """Edges touching the node (either direction)."""
        rows = (self.edges.rows.get(i) for i in self._adjacent.get(node_id, ()))
        return [e for e in rows if e is not None and (include_invalid or not e["invalidated_at"])]

    def outgoing(self, node_id: str, relation: str | None = None, include_invalid: bool = False) -> list[dict]:
        return [
            e
            for e in self.edges_of(node_id, include_invalid)
            if e["source_id"] == node_id and (relation is None or e["relation"] == relation)
        ]

    def scope_edges(self, scope: Scope, include_invalid: bool = False) -> list[dict]:
        return [
            e for e in self.edges.rows.values() if in_scope(e, scope) and (include_invalid or not e["invalidated_at"])
        ]

    def edge_matrix(self, scope: Scope, include_invalid: bool = False) -> tuple[list[dict], np.ndarray]:
        """The scope's edges and their vectors stacked (cached until an edge changes): for triplet search."""
        key = (scope_key(scope), include_invalid, self._edge_changes)
        if self._edge_matrix is None or self._edge_matrix[0] != key:
            edges = self.scope_edges(scope, include_invalid)
            matrix = np.stack([e["vector"] for e in edges]) if edges else np.zeros((0, self.dim), np.float32)
            self._edge_matrix = (key, edges, matrix)
        return self._edge_matrix[1], self._edge_matrix[2]

    def invalidate(self, edge: dict, at: str, by: str) -> None:
        """Soft invalidation: the edge stays, marked with when (time said) and by which edge it stopped holding."""
        with self._lock:
            edge.update(invalidated_at=at or "unknown", invalidated_by=by)
            self.edges.put(edge)
            self._edge_changes += 1

    def delete_edge(self, edge: dict) -> None:
        with self._lock:
            self.edges.remove(edge["id"])
            self._edge_changes += 1
            for end in (edge["source_id"], edge["destination_id"]):
                self._adjacent.get(end, set()).discard(edge["id"])

    def delete_all(self, scope: Scope) -> int:
        """Drop every node and edge of the scope (empty fields are wildcards; an all-empty scope is refused)."""
        _check_scope(scope)
        if not any(scope_key(scope)):
            raise ValueError("graph delete_all() got an empty scope: pass a user_id/agent_id/run_id, or reset()")
        with self._lock:
            edges, nodes = self.scope_edges(scope, include_invalid=True), self.scope_nodes(scope)
            for e in edges:
                self.edges.remove(e["id"])
            for n in nodes:
                self.nodes.remove(n["id"])
            self._reindex()
            self.flush()
        return len(nodes)

    def reset(self) -> None:
        with self._lock:
            self.nodes.drop_all(self._db)
            self.edges.drop_all(self._db)
            self._reindex()

    # -- persistence ----------------------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write the changes since the last flush (one commit per changed table); compact every N flushes."""
        with self._lock:
            if not (self.nodes.dirty or self.nodes.deleted or self.edges.dirty or self.edges.deleted):
                return
            self.nodes.flush()
            self.edges.flush()
            self._flushes += 1
            if self.compact_every and self._flushes % self.compact_every == 0:
                self.optimize()

    def optimize(self) -> None:
        """Merge fragments and drop old LanceDB versions of both tables (what disk_bytes() then measures)."""
        with self._lock, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*removes every version.*")
            for table in (self.nodes, self.edges):
                table.tbl.optimize(cleanup_older_than=timedelta(0))

    def disk_bytes(self) -> int:
        return disk_bytes(self.uri, (self.nodes.name, self.edges.name))

    def counts(self, scope: Scope = Scope()) -> dict:
        edges = self.scope_edges(scope, include_invalid=True)
        invalid = sum(1 for e in edges if e["invalidated_at"])
        return {
            "nodes": len(self.scope_nodes(scope)),
            "edges": len(edges),
            "valid_edges": len(edges) - invalid,
            "invalid_edges": invalid,
        }

    def close(self) -> None:
        self.flush()
