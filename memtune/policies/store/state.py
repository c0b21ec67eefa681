"""The state MemoryStore's parts share: store.py (opening, the state), reads.py, writes.py and versions.py each hold
one half of the store as a mixin over these attributes. Annotations only (MemoryStore.__init__ sets them); the
methods one part calls in another are declared here for the type checker."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from lancedb.db import DBConnection
    from lancedb.table import Table

    from .mirror import _Mirror


class StoreState:
    # settings (MemoryStore's docstring)
    uri: str
    dim: int
    embedder_id: str
    table_name: str
    history_name: str
    index_min_rows: int
    compact_every: int
    cache: bool
    cache_max_rows: int
    history_flush_every: int
    keep_versions_seconds: float
    keep_last_versions: int
    reindex_growth: float
    nprobes: int
    refine_factor: int
    index_type: str  # ann.py
    index_partition_rows: int
    ef: int
    fts_index: bool
    # LanceDB
    _db: DBConnection
    _table: Table
    _history: Table
    _schema: pa.Schema
    _history_schema: pa.Schema
    # state
    _lock: threading.RLock
    _mirror: _Mirror | None
    _too_big_at: int | None  # table version at which the mirror was found too big
    _since_compact: int
    _last_seq: int
    _history_until: int | None  # read-only views: history rows with seq <= this
    _version: int
    _hversion: int
    _columns: tuple[str, ...]
    _vector_indexed: bool
    _writer: ThreadPoolExecutor
    _pending_history: list[list[dict]]

    if TYPE_CHECKING:

        @property
        def policy_version(self) -> str: ...

        @property
        def version(self) -> int: ...

        def _vectors(self, vectors: Any, what: str) -> np.ndarray: ...
        def _has_vector_index(self) -> bool: ...
        def _view(self) -> _Mirror | None: ...
        def _published(self) -> _Mirror | None: ...
        def search_many(
            self, vectors: np.ndarray, scope: Any, top_k: int, *, include_invalid: bool = False
        ) -> list[list[Any]]: ...
        def _query_rows(self, where: str | None) -> list[dict]: ...
        def _rows_by_id(self, ids: Sequence[str]) -> dict[str, dict]: ...
        def _stored_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]: ...
        def _next_seq(self) -> int: ...
        def _write(self, write_memories: Callable[[], int | None], history_rows: list[dict]) -> int | None: ...
        def flush(self) -> None: ...
        def _check_writable(self, what: str) -> None: ...
        def compact(self) -> None: ...
