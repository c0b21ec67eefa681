"""The LanceDB tables of the memory store: their schemas (with the embedder id and dim in the schema metadata),
the embedder check on reopening, the upgrade of tables written before a column existed, rows to Arrow, and the
vector (IVF_PQ) and scalar (BTree) indices."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
from lancedb.index import BTree, IvfHnswSq, IvfPq

from ..types import MemoryRecord, Scope
from .ann import tune_query, vector_index

META_EMBEDDER = b"memtune.embedder_id"
META_DIM = b"memtune.dim"
META_TRAINED = b"memtune.index_trained_rows"  # vector-field metadata: rows the ANN index was trained on
_ROW_COLUMNS = (
    "id",
    "text",
    "user_id",
    "agent_id",
    "run_id",
    "provenance",
    "timestamp",
    "created_at",
    "updated_at",
    "metadata",
    "embedder_id",
    "policy_version",
    "invalid_at",
    "superseded_by",
)
# Columns added after the first release, appended at the end of the tables that have them (nullable: an upgraded
# table holds nulls in old rows, read as "" / []). Stores written before them are upgraded on open by
# add_missing_columns(). old_provenance is in the history table only; invalid_at / superseded_by (soft
# invalidation) in the memories table only.
_ADDED_COLUMNS = ("policy_version", "old_provenance", "invalid_at", "superseded_by")


def schema_meta(embedder_id: str, dim: int) -> dict[bytes, bytes]:
    return {META_EMBEDDER: embedder_id.encode(), META_DIM: str(dim).encode()}


def memory_schema(dim: int, meta: dict[bytes, bytes]) -> pa.Schema:
    s = pa.string()
    return pa.schema(
        [
            pa.field("id", s),
            pa.field("text", s),
            pa.field("vector", pa.list_(pa.float32(), dim)),
            pa.field("user_id", s),
            pa.field("agent_id", s),
            pa.field("run_id", s),
            pa.field("provenance", pa.list_(s)),
            pa.field("timestamp", s),
            pa.field("created_at", s),
            pa.field("updated_at", s),
            pa.field("metadata", s),
            pa.field("embedder_id", s),
            pa.field("policy_version", s),  # the policy bundle version that last wrote the row ("" for eval runs)
            pa.field("invalid_at", s),  # soft invalidation: when the fact stopped holding ("" or null: valid)
            pa.field("superseded_by", s),  # the id of the memory that superseded it ("" or null: none)
        ],
        metadata=meta,
    )


def history_schema(meta: dict[bytes, bytes]) -> pa.Schema:
    s = pa.string()
    return pa.schema(
        [
            pa.field("memory_id", s),
            pa.field("op", s),
            pa.field("old_text", s),
            pa.field("new_text", s),
            pa.field("time", s),
            pa.field("seq", pa.int64()),
            pa.field("provenance", pa.list_(s)),
            pa.field("user_id", s),
            pa.field("agent_id", s),
            pa.field("run_id", s),
            pa.field("metadata", s),
            pa.field("policy_version", s),
            pa.field("old_provenance", pa.list_(s)),  # the memory's provenance before the change
        ],
        metadata=meta,
    )


def add_missing_columns(tbl, schema: pa.Schema) -> list[str]:
    """Upgrade a table written by an older memtune in place: add the columns of `_ADDED_COLUMNS` it lacks (null
    in existing rows, which read as ""). One metadata-only commit; rows and vectors are untouched. Any other
    difference from `schema` is an error that names the table and the missing columns."""
    names = set(tbl.schema.names)
    added = [c for c in _ADDED_COLUMNS if c in schema.names and c not in names]
    other = [c for c in schema.names if c not in names and c not in added]
    if other:
        raise ValueError(
            f"LanceDB table at version {tbl.version} lacks columns {other}: it was not written by "
            "memtune's MemoryStore (or by an incompatible version); use a new store uri"
        )
    if added:
        tbl.add_columns([schema.field(c) for c in added])
    return added


def present_columns(tbl) -> tuple[str, ...]:
    """The row columns this table (at its checked-out version) has: an old version may predate a column."""
    names = set(tbl.schema.names)
    return tuple(c for c in _ROW_COLUMNS if c in names)


def check_compatible(tbl, uri: str, table_name: str, embedder_id: str, dim: int) -> None:
    """Refuse a memories table written with another embedder or dim (their vectors are not comparable)."""
    meta = tbl.schema.metadata or {}
    field = tbl.schema.field("vector") if "vector" in tbl.schema.names else None
    stored_dim = getattr(field.type, "list_size", None) if field is not None else None
    stored_id = meta.get(META_EMBEDDER, b"").decode() or "<unknown: not written by memtune>"
    if stored_id != embedder_id or stored_dim != dim:
        raise ValueError(
            f"memory store {uri!r} (table {table_name!r}) was written with embedder "
            f"{stored_id!r} (dim {stored_dim}), but it was opened with embedder {embedder_id!r} "
            f"(dim {dim}). Vectors from different embedders cannot be compared: open it with embedder "
            f"{stored_id!r}, or re-embed the memories into a new store (use a new store uri, or delete this one)."
        )


def rows_to_arrow(rows: list[dict], schema: pa.Schema, dim: int) -> pa.Table:
    cols = {name: [r[name] for r in rows] for name in schema.names if name != "vector"}
    flat = np.concatenate([r["vector"] for r in rows]).astype(np.float32) if rows else np.zeros(0, np.float32)
    cols["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), dim)
    return pa.table({n: cols[n] for n in schema.names}, schema=schema)


def has_vector_index(table) -> bool:
    return any("vector" in idx.columns for idx in table.list_indices())


def maybe_index(
    table,
    index_min_rows: int,
    reindex_growth: float,
    dim: int,
    index_type: str = "IVF_PQ",
    partition_rows: int | None = None,
) -> None:
    """Build the ANN index once the table has index_min_rows rows; rebuild it when the table has grown
    reindex_growth-fold past the rows it was trained on. index_type / partition_rows: ann.py (partition_rows None:
    LanceDB's sqrt(rows) partitions, IVF_PQ only)."""
    rows = table.count_rows()
    if rows < index_min_rows or rows < 256:  # PQ training needs 256 rows
        return
    meta = table.schema.field("vector").metadata or {}
    trained = int(meta.get(META_TRAINED, b"0"))
    if has_vector_index(table) and rows < reindex_growth * trained:
        return
    if partition_rows is None and index_type == "IVF_PQ":
        config: IvfPq | IvfHnswSq = IvfPq(distance_type="cosine", num_sub_vectors=_num_sub_vectors(dim))
    else:
        config = vector_index(index_type, rows, dim, partition_rows or 4000)
    table.create_index("vector", config=config, replace=True)
    for col in ("id", "user_id"):  # merge_insert joins, id look-ups and scope prefilters on a big table
        table.create_index(col, config=BTree(), replace=True)
    table.update_field_metadata({"path": "vector", "metadata": {META_TRAINED.decode(): str(rows)}})


def _num_sub_vectors(dim: int) -> int:
    """PQ sub-vectors of 8 dims when dim allows it (384 -> 48: 48 bytes a vector), else of 4, 2 or 1."""
    for width in (8, 4, 2, 1):
        if dim % width == 0:
            return dim // width
    return 1


def to_record(row: dict, score: float | None = None) -> MemoryRecord:
    """A memories row (from LanceDB or the mirror) as a MemoryRecord; columns an old version lacks read as ""."""
    return MemoryRecord(
        id=row["id"],
        text=row["text"],
        scope=Scope(row["user_id"] or "", row["agent_id"] or "", row["run_id"] or ""),
        provenance=tuple(row["provenance"] or ()),
        timestamp=row["timestamp"] or "",
        created_at=row["created_at"] or "",
        updated_at=row["updated_at"] or "",
        metadata=json.loads(row["metadata"]) if row["metadata"] else {},
        score=score,
        policy_version=row.get("policy_version") or "",
        embedder_id=row.get("embedder_id") or "",
        invalid_at=row.get("invalid_at") or "",
        superseded_by=row.get("superseded_by") or "",
    )


def lance_search(
    table,
    q: np.ndarray,
    where: str | None,
    top_k: int,
    columns,
    indexed: bool,
    index_min_rows: int,
    nprobes: int,
    refine_factor: int,
    index_type: str = "IVF_PQ",
    ef: int = 100,
) -> list[list[tuple[dict, float]]]:
    """Cosine top_k per query row of `q` from LanceDB: (row, similarity) best first. With the ANN index, a scope
    of at most index_min_rows rows is searched exactly (prefiltered flat scan), a wider one through the index
    (nprobes partitions, ef candidates a graph search for IVF_HNSW_SQ, re-ranked exactly over refine_factor x top_k
    candidates; ann.tune_query)."""
    query = table.search(q if len(q) > 1 else q[0], vector_column_name="vector").distance_type("cosine")
    if where:
        query = query.where(where, prefilter=True)
    if indexed:
        if where and table.count_rows(where) <= index_min_rows:
            query = query.bypass_vector_index()  # a small scope: exact flat search over it
        else:
            query = tune_query(query, index_type, nprobes, refine_factor, ef)
    data = query.select([*columns, "_distance"]).limit(top_k).to_arrow()
    qi = data["query_index"].to_pylist() if "query_index" in data.column_names else [0] * data.num_rows
    out: list[list[tuple[dict, float]]] = [[] for _ in range(len(q))]
    for j, row in zip(qi, data.to_pylist()):
        out[j].append((row, 1.0 - float(row["_distance"])))
    for hits in out:
        hits.sort(key=lambda h: -h[1])
    return out


def disk_bytes(uri: str, tables: Iterable[str]) -> int:
    """Bytes on disk of the named LanceDB tables under a local `uri`, every kept version included."""
    total = 0
    for name in tables:
        for root, _, files in os.walk(Path(uri) / f"{name}.lance"):
            total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total
