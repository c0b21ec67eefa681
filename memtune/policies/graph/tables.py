"""The two LanceDB tables of the graph memory and their in-process mirror.

Tables (one row per node / edge; scope columns as in the memories table):
* graph_nodes: id, name, key (matching key, see types.node_key), type, vector, user_id, agent_id, run_id,
  provenance (dia_ids, the newest `max_provenance`), first_seen / last_seen (time said), mentions, embedder_id.
* graph_edges: id, source_id, relation, destination_id, source, destination, text (the embedded sentence),
  vector, valid_from (time said), invalidated_at (time said of the contradicting triplet; "" while valid),
  invalidated_by (edge id), provenance, user_id, agent_id, run_id, seq (insertion order), mentions, embedder_id.

Writes go to the mirror at once and to LanceDB on `GraphTable.flush()`: one merge_insert (or add / delete) commit
per table, so a crash loses at most the changes since the last flush and never rows already flushed. LanceDB only
ever sees id filters built by store/sql.py's sql_where().
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..store.lance import check_compatible
from ..store.sql import sql_where

_S, _L = pa.string(), pa.int64()
NODE_FIELDS = [
    ("id", _S),
    ("name", _S),
    ("key", _S),
    ("type", _S),
    ("user_id", _S),
    ("agent_id", _S),
    ("run_id", _S),
    ("provenance", pa.list_(_S)),
    ("first_seen", _S),
    ("last_seen", _S),
    ("mentions", _L),
    ("embedder_id", _S),
]


EDGE_FIELDS = [
    ("id", _S),
    ("source_id", _S),
    ("relation", _S),
    ("destination_id", _S),
    ("source", _S),
    ("destination", _S),
    ("text", _S),
    ("valid_from", _S),
    ("invalidated_at", _S),
    ("invalidated_by", _S),
    ("provenance", pa.list_(_S)),
    ("user_id", _S),
    ("agent_id", _S),
    ("run_id", _S),
    ("seq", _L),
    ("mentions", _L),
    ("embedder_id", _S),
]


def table_schema(fields, dim: int, meta) -> pa.Schema:
    return pa.schema(
        [pa.field(n, t) for n, t in fields] + [pa.field("vector", pa.list_(pa.float32(), dim))], metadata=meta
    )


class GraphTable:
    """One LanceDB table and its mirror: rows by id (vector as a float32 array), dirty and deleted ids."""

    def __init__(self, db, name: str, schema: pa.Schema, uri: str, embedder_id: str, dim: int):
        self.name, self.schema, self.dim = name, schema, dim
        try:
            self.tbl = db.open_table(name)
            check_compatible(self.tbl, uri, name, embedder_id, dim)
        except ValueError as exc:
            if "not found" not in str(exc).lower():
                raise
            self.tbl = db.create_table(name, schema=schema)
        self.rows: dict[str, dict] = {}
        for row in self.tbl.to_arrow().to_pylist():
            row["vector"] = np.asarray(row["vector"], np.float32)
            self.rows[row["id"]] = row
        self.persisted: set[str] = set(self.rows)
        self.dirty: set[str] = set()
        self.deleted: set[str] = set()

    def put(self, row: dict) -> None:
        self.rows[row["id"]] = row
        self.dirty.add(row["id"])
        self.deleted.discard(row["id"])

    def remove(self, row_id: str) -> None:
        self.rows.pop(row_id, None)
        self.dirty.discard(row_id)
        self.deleted.add(row_id)

    def flush(self) -> None:
        upserts = [self.rows[i] for i in sorted(self.dirty) if i in self.rows]
        deletes = sorted(self.deleted & self.persisted)
        if upserts:
            cols = {n: [r[n] for r in upserts] for n in self.schema.names if n != "vector"}
            flat = np.concatenate([r["vector"] for r in upserts]).astype(np.float32)
            cols["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), self.dim)
            data = pa.table({n: cols[n] for n in self.schema.names}, schema=self.schema)
        if upserts and not deletes and not (self.dirty & self.persisted):
            self.tbl.add(data)
        elif upserts:
            merge = self.tbl.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
            if deletes:
                merge = merge.when_not_matched_by_source_delete(sql_where(ids=deletes))
            merge.execute(data)
        elif deletes:
            self.tbl.delete(sql_where(ids=deletes))
        self.persisted = (self.persisted - self.deleted) | {r["id"] for r in upserts}
        self.dirty.clear()
        self.deleted.clear()

    def drop_all(self, db) -> None:
        db.drop_table(self.name, ignore_missing=True)
        self.tbl = db.create_table(self.name, schema=self.schema)
        self.rows.clear()
        self.persisted, self.dirty, self.deleted = set(), set(), set()


def edge_provenance(held: list[str], stated, limit: int) -> list[str]:
    """`held` + the turns of a new assertion, de-duplicated; past `limit` (max_edge_provenance) the first turn and
    the newest ones.

    Edge provenance is per assertion: the turns that state the triplet (each assertion cites its own turn(s), see
    extract.py). Past the bound an edge keeps the first turn (the one `valid_from` dates) and the newest ones: a
    generic triplet re-stated in many turns ("John has team") would otherwise cite every one of them and be
    credited by evidence recall with turns whose content it does not hold. `mentions` still counts every assertion.
    """
    prov = list(dict.fromkeys([*held, *stated]))
    return prov if len(prov) <= limit else prov[:1] + prov[len(prov) - limit + 1 :]
