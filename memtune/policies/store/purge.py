"""Purging deleted text from disk: rewrite a LanceDB table with its live rows and drop every older version.

Why a rewrite and not just compaction: LanceDB deletes (and updates, which delete the old row and append the new)
only mark rows in a deletion file; the bytes stay in the data file, and compaction (`optimize`) rewrites a data file
only when enough of it is deleted or it is small enough to merge. Every older version keeps its own files as well.
So after `delete_all` the text of a deleted user is unreadable through the current version but still on disk, in
old versions (until compaction drops them: `keep_versions_seconds`, 7 days in conf/store/lancedb.yaml) and in live
data files (until some compaction happens to rewrite them). `purge_table` writes the live rows as a new version
(overwrite), drops every other version (their files go with them), and rebuilds the indices the table had.

Nothing else may use the table while it runs: a reader or writer at an older version fails once its files are gone.
"""

from __future__ import annotations

import json
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Literal, cast

from lancedb.index import BTree, IvfHnswSq, IvfPq

from .fts import fts_config
from .lance import META_EMBEDDER, _num_sub_vectors, disk_bytes

_INDEX_TYPES = ("IvfPq", "IvfHnswSq", "BTree", "FTS")  # the indices memtune builds (lance.maybe_index, fts.py)


def purge_table(tbl) -> dict:
    """Rewrite `tbl` (an open LanceTable, at its latest version) with its live rows and drop every older version.
    Returns {"rows", "versions_before", "versions_after", "bytes_before", "bytes_after"}."""
    indices = [(idx.index_type, idx.columns[0], idx.index_details or {}) for idx in tbl.list_indices()]
    unknown = [kind for kind, _, _ in indices if kind not in _INDEX_TYPES]
    if unknown:  # checked before anything is written
        raise ValueError(f"table {tbl.name!r} has indices memtune does not build ({unknown}); not purging it")
    root = _table_dir(tbl)
    before = {"versions_before": len(tbl.list_versions()), "bytes_before": _bytes(root)}
    data = tbl.to_arrow()  # every column, the schema's metadata (embedder id, dim) included
    tbl.add(data, mode="overwrite")  # one commit: a failure leaves the table as it was
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*removes every version.*")
        tbl.optimize(cleanup_older_than=timedelta(0))
    for kind, column, details in indices:  # an overwrite starts without indices
        if kind == "IvfPq":
            dim = tbl.schema.field(column).type.list_size
            metric = cast(
                Literal["l2", "cosine", "dot"], str(details.get("metric_type", "cosine")).lower()
            )  # LanceDB's own
            tbl.create_index(column, config=IvfPq(distance_type=metric, num_sub_vectors=_num_sub_vectors(dim)))
        elif kind == "IvfHnswSq":  # ann.py; partitions: LanceDB's default for the rebuilt table
            metric = cast(Literal["l2", "cosine", "dot"], str(details.get("metric_type", "cosine")).lower())
            tbl.create_index(column, config=IvfHnswSq(distance_type=metric))
        elif kind == "FTS":
            tbl.create_index(column, config=fts_config(), replace=True)
        else:
            tbl.create_index(column, config=BTree(), replace=True)
    if indices:  # index builds make versions of their own
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*removes every version.*")
            tbl.optimize(cleanup_older_than=timedelta(0))
    return {
        "rows": tbl.count_rows(),
        **before,
        "versions_after": len(tbl.list_versions()),
        "bytes_after": _bytes(root),
    }


def purge_store(uri: str) -> dict:
    """purge_table() for every table of the memtune store at `uri` (memories, history, graph); refuses a directory
    that holds no memtune memories table. Run it while no server or other process uses the store."""
    import lancedb

    from .lease import StoreLease

    path = Path(uri)
    if not path.is_dir():
        raise ValueError(f"{uri!r} is not a directory: pass the store_uri of a memtune memory store")
    db = lancedb.connect(str(path))
    names = sorted(_table_names(db))
    tables = {name: db.open_table(name) for name in names}
    if not any(META_EMBEDDER in (t.schema.metadata or {}) and "vector" in t.schema.names for t in tables.values()):
        raise ValueError(f"{uri!r} holds no memtune memory table (tables: {names}); nothing was changed")
    lease = StoreLease(str(path))  # StoreLocked (a ValueError) while a server writes the store
    try:
        return {name: purge_table(db.open_table(name)) for name in tables}  # reopened: at the latest version
    finally:
        lease.release()


def _table_names(db) -> list[str]:
    listed = db.list_tables() if hasattr(db, "list_tables") else db.table_names()
    return list(getattr(listed, "tables", listed))


def _table_dir(tbl) -> Path | None:
    uri = str(getattr(tbl, "uri", "") or "")
    return Path(uri) if uri and Path(uri).is_dir() else None


def _bytes(root: Path | None) -> int | None:
    return None if root is None else disk_bytes(str(root.parent), [root.name.removesuffix(".lance")])


# ---- delete_all: the scope's text leaves the history table ------------------------------------------------------
PURGED = json.dumps({"purged": True})  # the metadata of a blanked history row
PURGED_DELETE = json.dumps({"purged": True, "reason": "delete_all"}, sort_keys=True)  # delete_all's own rows


def blank_delete_rows(rows: list[dict]) -> list[dict]:
    """delete_all's DELETE history rows without the deleted text."""
    return [{**r, "old_text": "", "new_text": "", "metadata": PURGED_DELETE} for r in rows]


def blank_history(history, scope_where: str) -> int | None:
    """Blank old_text, new_text and metadata of every history row matching `scope_where` (a sql.sql_where
    filter on the scope) that still holds any; op, memory id, time, seq, provenance and scope stay, so the history
    still says what happened and when. Returns the new history version, or None when there was nothing to blank
    (no commit then)."""
    done = ", ".join(_literal(m) for m in (PURGED, PURGED_DELETE))
    cond = f"({scope_where}) AND (old_text <> '' OR new_text <> '' OR metadata NOT IN ({done}))"
    if not history.count_rows(cond):
        return None
    return history.update(where=cond, values={"old_text": "", "new_text": "", "metadata": PURGED}).version


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def main(argv: list[str] | None = None) -> int:
    """memtune-purge STORE_URI: purge_store() with a JSON report on stdout; exit 2 with one line on bad input."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(
        prog="memtune-purge",
        description="Rewrite every table of a memtune store with its live rows and drop every older LanceDB "
        "version, so deleted text (delete, delete_all, updates) is gone from disk. Stop the server first: nothing "
        "else may use the store meanwhile. Afterwards no earlier version can be restored.",
    )
    ap.add_argument("store_uri", help="the store directory (memtune-serve store_uri)")
    args = ap.parse_args(argv)
    try:
        report = purge_store(args.store_uri)
    except ValueError as err:
        print(f"memtune-purge: {err}", file=sys.stderr)
        return 2
    print(json.dumps({"store_uri": args.store_uri, "tables": report}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
