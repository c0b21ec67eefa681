"""memtune-audit's read side: open a memtune store WITHOUT writing to it (no MemoryStore, which upgrades old tables
on open), read its rows and vectors, and resolve the scope asked for, with errors that name the fix."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import lancedb
import numpy as np

from ...policies.store.lance import _ROW_COLUMNS, META_DIM, META_EMBEDDER
from ...policies.store.versions import version_list
from ...policies.types import MemoryRecord, Scope

SCOPE_KEYS = ("user_id", "agent_id", "run_id")


class AuditError(ValueError):
    """Bad input to memtune-audit (a missing store, a path that is not a store, an unknown scope)."""


@dataclass
class StoreData:
    path: str
    table: str
    embedder_id: str
    dim: int
    records: list[MemoryRecord]  # every stored memory of the scope, superseded ones included, oldest first
    vectors: np.ndarray  # row i: records[i]'s unit vector
    history: list[dict]  # the scope's history rows, in seq order
    versions: list[dict]  # [{"version", "timestamp"}] kept on disk, oldest first
    scopes: list[Scope]  # every scope the store holds


def open_tables(path: str | Path, table: str = "memories"):
    """(memories table, history table or None) of the store at `path`, read-only; AuditError when it is missing
    or not a memtune store."""
    root = Path(path)
    if not root.exists():
        raise AuditError(
            f"no store at {str(path)!r}: the path does not exist. An eval run's ingested store is "
            ".cache/memtune/ingest/<key>/store, a server's is its store_uri"
        )
    if not root.is_dir():
        raise AuditError(f"{str(path)!r} is a file, not a store directory: pass the store_uri directory")
    db = lancedb.connect(str(root))
    try:
        memories = db.open_table(table)
    except ValueError:
        hint = f"; did you mean {str(root / 'store')!r}?" if (root / "store" / f"{table}.lance").exists() else ""
        raise AuditError(f"{str(path)!r} is not a memtune store: it has no {table!r} table{hint}") from None
    meta = memories.schema.metadata or {}
    missing = [c for c in ("id", "text", "vector", "user_id") if c not in memories.schema.names]
    if META_EMBEDDER not in meta or missing:
        raise AuditError(
            f"{str(path)!r} is not a memtune store: its {table!r} table "
            + (f"lacks columns {missing}" if missing else "has no memtune embedder id in its schema")
        )
    try:
        history = db.open_table(f"{table}_history")
    except ValueError:
        history = None
    return memories, history


def parse_scope(text: str | None) -> Scope:
    """ "u1" (a user_id) or "user_id=u1,agent_id=a1"; "" / None: every scope."""
    if not text:
        return Scope()
    if "=" not in text:
        return Scope(user_id=text)
    fields = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        if key.strip() not in SCOPE_KEYS or not value:
            raise AuditError(f"scope {text!r}: write a user_id, or key=value pairs of {SCOPE_KEYS} joined by ','")
        fields[key.strip()] = value.strip()
    return Scope(**fields)


def _inside(record_scope: Scope, scope: Scope) -> bool:
    return all(not getattr(scope, k) or getattr(record_scope, k) == getattr(scope, k) for k in SCOPE_KEYS)


def read_store(path: str | Path, scope: Scope = Scope(), table: str = "memories") -> StoreData:
    """Everything the audit reads of the store at `path` for `scope` (AuditError for an unknown scope)."""
    from ...policies.store.lance import to_record

    memories, history = open_tables(path, table)
    names = set(memories.schema.names)
    data = memories.to_arrow()
    rows = data.select([c for c in _ROW_COLUMNS if c in names]).to_pylist()
    dim = (
        int((memories.schema.metadata or {}).get(META_DIM, b"0") or 0) or memories.schema.field("vector").type.list_size
    )
    vectors = np.asarray(data["vector"].combine_chunks().flatten().to_numpy(zero_copy_only=False), np.float32)
    vectors = vectors.reshape(-1, dim) if len(rows) else np.zeros((0, dim), np.float32)
    records = [to_record(r) for r in rows]
    scopes = sorted({r.scope for r in records}, key=lambda s: (s.user_id, s.agent_id, s.run_id))
    keep = [i for i, r in enumerate(records) if _inside(r.scope, scope)]
    if scope != Scope() and not keep:
        users = sorted({s.user_id for s in scopes})
        shown = users if len(users) <= 20 else [*users[:20], f"... ({len(users)} in all)"]
        raise AuditError(f"no memories of scope {_describe(scope)} in {str(path)!r}; its user_ids: {shown}")
    order = sorted(keep, key=lambda i: (records[i].created_at, records[i].id))
    hist = []
    if history is not None:
        for h in history.to_arrow().to_pylist():
            if _inside(Scope(h["user_id"] or "", h["agent_id"] or "", h["run_id"] or ""), scope):
                h["metadata"] = json.loads(h["metadata"]) if h.get("metadata") else {}
                hist.append(h)
        hist.sort(key=lambda h: h["seq"])
    versions = version_list(memories)  # UTC, like the history's times
    return StoreData(
        str(path),
        table,
        (memories.schema.metadata or {}).get(META_EMBEDDER, b"").decode(),
        dim,
        [records[i] for i in order],
        vectors[order] if order else np.zeros((0, dim), np.float32),
        hist,
        versions,
        scopes,
    )


def _describe(scope: Scope) -> str:
    return ", ".join(f"{k}={getattr(scope, k)!r}" for k in SCOPE_KEYS if getattr(scope, k)) or "(all)"
