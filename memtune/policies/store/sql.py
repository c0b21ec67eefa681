"""The one place the memory store writes SQL: LanceDB filters on scope fields and memory ids, and the checks on
the values that go into them.

Scope values and memory ids reach LanceDB's SQL filters only through `sql_where()`, which quotes string literals
(doubling single quotes; LanceDB's SQL treats backslash literally) and rejects control characters.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from ..types import Scope

SCOPE_FIELDS = ("user_id", "agent_id", "run_id")


def _sql_literal(value: Any, field: str) -> str:
    """`value` as a quoted SQL string literal; control characters (NUL, newline, ...) are refused."""
    _check_text(value, field)
    return "'" + value.replace("'", "''") + "'"


def _check_text(value: Any, field: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a str, got {type(value).__name__}: {value!r}")
    for ch in value:
        if unicodedata.category(ch) == "Cc":
            raise ValueError(
                f"{field} contains control character {ch!r} (U+{ord(ch):04X}): {value!r}; "
                "ids and scope values may not contain control characters"
            )


def sql_where(scope: Scope | None = None, ids: Iterable[str] | None = None, id_column: str = "id") -> str | None:
    """Build a LanceDB filter: equality on the non-empty scope fields, AND `id_column IN (ids)` when ids is given.

    Every filter the store sends to LanceDB comes from here. Returns None for "no filter" (an all-empty scope and
    no ids); an empty `ids` gives a filter that matches nothing.
    """
    if id_column not in ("id", "memory_id"):
        raise ValueError(f"id_column must be 'id' or 'memory_id', got {id_column!r}")
    parts = []
    if scope is not None:
        for name in SCOPE_FIELDS:
            value = getattr(scope, name)
            if value:
                parts.append(f"{name} = {_sql_literal(value, name)}")
    if ids is not None:
        ids = list(ids)
        if ids:
            parts.append(f"{id_column} IN ({', '.join(_sql_literal(i, 'memory_id') for i in ids)})")
        else:
            parts.append("false")
    return " AND ".join(parts) if parts else None


def ids_where(ids: Iterable[str], id_column: str = "id") -> str:
    """`sql_where(ids=ids)`: a filter on ids alone, which is never "no filter" (no ids: one that matches nothing)."""
    where = sql_where(ids=ids, id_column=id_column)
    assert where is not None  # an ids filter always has a part
    return where


VALID_SQL = "(invalid_at IS NULL OR invalid_at = '')"  # a memory never invalidated (soft invalidation)


def valid_where(where: str | None, include_invalid: bool, columns: Iterable[str]) -> str | None:
    """`where` restricted to valid memories unless `include_invalid` (a table version from before the
    invalid_at column holds valid memories only, and no filter is added)."""
    if include_invalid or "invalid_at" not in columns:
        return where
    return f"{where} AND {VALID_SQL}" if where else VALID_SQL


def _check_scope(scope: Scope) -> None:
    if not isinstance(scope, Scope):
        raise TypeError(f"scope must be a memtune Scope, got {type(scope).__name__}")
    for name in SCOPE_FIELDS:
        _check_text(getattr(scope, name), name)


def in_scope(row: Mapping, scope: Scope) -> bool:
    """Whether a row's (or a Scope's, as a dict) user_id/agent_id/run_id lie inside `scope`: empty fields are
    wildcards."""
    return all(not getattr(scope, f) or row[f] == getattr(scope, f) for f in SCOPE_FIELDS)
