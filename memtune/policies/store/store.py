"""LanceDB memory store with an op history: the memories a policy keeps, and how each one came to be.

Two LanceDB tables live under `uri`:

* `<table>`: one row per live memory: id, text, vector (fixed_size_list<float32>[dim], unit length), user_id,
  agent_id, run_id, provenance (list<string>: the dia_ids the fact came from), timestamp (when the fact was said),
  created_at / updated_at (ISO UTC wall clock), metadata (JSON string), embedder_id, policy_version (the bundle
  version of the policy that last wrote the row, the `policy_version` knob; "" for eval runs).
* `<table>_history`: one row per applied change (ADD / UPDATE / DELETE / NOOP) with old and new text, old and new
  provenance (ADD / UPDATE: the memory's before and after, so a replacing UPDATE loses nothing; NOOP / DELETE: the
  change's, and the memory's before), the memory's scope, the writing policy_version and a monotonic `seq`.

A store written before `policy_version` or `old_provenance` existed is upgraded when opened (one metadata-only
commit adds the column; its old rows read as "" / []). Versions: every commit makes a LanceDB version; `versions_list()`,
`as_of(version)` (a read-only store at that version) and `restore(version)` (roll back; the history records it)
work on the versions compaction kept (`keep_versions_seconds`, `keep_last_versions`; see versions.py).

The embedder id and vector dim are kept in the memories table's schema metadata, so reopening a store with another
embedder fails loudly even when the table is empty (vectors of two embedders are not comparable).

Safety: scope values and memory ids reach LanceDB's SQL filters only through `sql_where()`, which quotes string
literals (doubling single quotes; LanceDB's SQL treats backslash literally) and rejects control characters.

Speed (benchmarks/store_bench.py; the policy's ingest loop is search_many() + apply() per message pair): a LanceDB
commit costs about 3 ms for an append and about 10 ms for a merge_insert on 2 cores, and merge_insert / delete / a
filtered scan get slower with every uncompacted fragment (about +0.1 ms each); each commit also leaves a version
on disk. Without compaction 3,000 steps leave ~2,400 fragments, ~2,900 versions and 850 MB on disk and run at
~17 steps/s. So:
* `apply()` makes one memories commit per batch (an add, or one merge_insert that also inserts and deletes, or one
  delete) and one history append, the two in parallel; `history_flush_every` > 1 groups history appends;
* `compact()` (optimize: merge fragments, drop old versions, refresh indices) runs every `compact_every` applies
  (default 50: at 4k rows a compaction costs ~100 ms, and 50 beat 200 by ~15% in the loop);
* reads (id look-ups, scope filters, flat cosine top-k) come from an in-process mirror of the memories table at
  one LanceDB version, replaced after each successful commit by one with exactly what it wrote, reloaded when the
  version moves in a way this store did not make (refresh()). A published mirror never changes, so reads from it
  take no lock and never wait for a write or a compaction (reads.py, mirror.py). `cache=False` sends every read to
  LanceDB (the source of truth), under the lock: same results, both exact flat cosine with the scope applied
  before ranking, ~0.1-0.5 ms from the mirror against ~7-18 ms from LanceDB at 1k-10k rows. Past `cache_max_rows`
  (default `index_min_rows`) rows LanceDB answers: through an IVF_PQ cosine index (built by the first compact()
  past `index_min_rows`, rebuilt after `reindex_growth`-fold growth) for wide scopes, by exact prefiltered flat
  search for scopes of at most `index_min_rows` rows. At 100k memories the mirror scores a scope of all of them in
  ~7 ms (one single-threaded BLAS pass, mirror.py) and 100 scopes of 1k in < 1 ms; LanceDB took 19-27 ms either
  way, its IVF_PQ recall@10 on random vectors 0.4-0.7 (store_bench.py --scale): so the mirror is kept to 200k.

One writer process per store: compaction drops old versions (`keep_versions_seconds`, `keep_last_versions`,
default 0: only the latest survives; conf/store/lancedb.yaml keeps 7 days for production). `lease=True` enforces
it (lease.py: a second writer process is refused, naming the holder; a crashed holder keeps nothing);
`read_only=True` opens beside a writer (no lease, nothing created or upgraded, writes raise PermissionError;
refresh() follows the writer). A rollback (restore, or undoing a failed write) refuses to run over a version this
handle did not write or open (versions.check_unmoved).
After a crash: each LanceDB commit is atomic, so a killed writer leaves each table at its last committed version;
the writer that opens the store next appends the history rows a write between its two commits lost (recover.py),
so the history replays to exactly the memories table (`recovered` counts them).
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import lancedb
import numpy as np
import pyarrow as pa

from .ann import check_ann
from .changes import check_vectors
from .fts import KeywordMixin, ensure_fts_index
from .lance import (
    add_missing_columns,
    check_compatible,
    has_vector_index,
    history_schema,
    memory_schema,
    present_columns,
    schema_meta,
)
from .lease import StoreLease, is_local
from .mirror import _Mirror
from .reads import ReadsMixin
from .recover import reconcile
from .sql import _check_text
from .versions import VersionsMixin
from .writes import WritesMixin


# ---- the store --------------------------------------------------------------------------------------------------
class MemoryStore(ReadsMixin, WritesMixin, VersionsMixin, KeywordMixin):
    """Memories of many scopes in one LanceDB table, plus the history of every change.

    index_min_rows  build an ANN index (ann.py knobs) once the table has this many rows; rebuild it when the table
                    has grown `reindex_growth` times past the rows it was trained on. Below it: exact flat search.
    compact_every   compact (merge fragments, drop old versions, refresh indices) every N apply() calls; 0 = never.
    cache           serve reads from the version-keyed in-process mirror (see the module docstring).
    cache_max_rows  drop the mirror past this many rows (default: index_min_rows).
    keep_versions_seconds, keep_last_versions  compaction keeps versions newer than this many seconds, and the last
                    this many versions (a union; both 0: only the latest). Kept versions are restorable.
    policy_version  stamped on every row this handle writes (memories and history): the policy bundle version.
    history_flush_every  1 (default): every apply() appends its history rows in the same call. N > 1: group commit,
                    history rows are appended once every N applies (and by flush(), history(), compact(),
                    delete_all(), close(), and at interpreter exit); a crash loses at most the last N-1 batches'
                    history, never memories. The ingest loop runs about 1.5x faster with N=20 (one LanceDB commit
                    per apply instead of two).
    lease           take the store's writer lease (lease.py; Memory.from_bundle and memtune-serve do); off by default
                    because evaluation opens one ingested store from many sweep workers at once and only reads it.
    read_only       open an existing store for reading only (no lease; writes raise PermissionError).
    fts_index       keep LanceDB's full-text (BM25) index on the memory text for keyword_search() (hybrid
                    retrieval): created with the table, built by compact() when missing, updated by every compaction
                    (fts.py). False (the class default; conf/store/lancedb.yaml turns it on): keyword_search() scans
                    the table with exact, case-sensitive tokens (no stemming: worse hits, and slower). With it, a compaction that keeps no old
                    versions leaves two (LanceDB's optimize() updates indices after it prunes versions).
    """

    read_only: bool = False  # class defaults: StoreView (a past version) is built without __init__
    _lease: StoreLease | None = None
    recovered = 0  # history rows the writer appended at open to match the memories after a crash (recover.py)

    def __init__(
        self,
        uri: str | os.PathLike,
        dim: int,
        embedder_id: str,
        table: str = "memories",
        index_min_rows: int = 200_000,  # mirror below, IVF_PQ index past it (module docstring, store_bench.py --scale)
        compact_every: int = 50,
        *,
        cache: bool = True,
        cache_max_rows: int | None = None,
        history_flush_every: int = 1,
        keep_versions_seconds: float = 0.0,
        keep_last_versions: int = 0,
        reindex_growth: float = 2.0,
        nprobes: int = 20,
        refine_factor: int = 10,
        index_type: str = "IVF_PQ",
        index_partition_rows: int = 4000,
        ef: int = 100,
        policy_version: str = "",
        lease: bool = False,
        read_only: bool = False,
        fts_index: bool = False,
    ):
        if not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        if not embedder_id or not isinstance(embedder_id, str):
            raise ValueError(f"embedder_id must be a non-empty str, got {embedder_id!r}")
        if not table.replace("_", "").isalnum():
            raise ValueError(f"table name must be letters, digits and '_', got {table!r}")
        self.uri, self.dim, self.embedder_id, self.table_name = str(uri), dim, embedder_id, table
        self.history_name = f"{table}_history"
        self.index_min_rows, self.compact_every = int(index_min_rows), int(compact_every or 0)
        self.cache = cache
        self.cache_max_rows = int(cache_max_rows if cache_max_rows is not None else index_min_rows)
        if int(history_flush_every) < 1:
            raise ValueError(f"history_flush_every must be >= 1, got {history_flush_every!r}")
        self.history_flush_every = int(history_flush_every)
        if float(keep_versions_seconds) < 0 or int(keep_last_versions) < 0:
            raise ValueError(
                f"keep_versions_seconds and keep_last_versions must be >= 0, got "
                f"{keep_versions_seconds!r} and {keep_last_versions!r}"
            )
        self.keep_versions_seconds, self.keep_last_versions = float(keep_versions_seconds), int(keep_last_versions)
        self.reindex_growth, self.nprobes, self.refine_factor = reindex_growth, nprobes, refine_factor
        check_ann(index_type, index_partition_rows, nprobes, refine_factor, ef)
        self.index_type, self.index_partition_rows, self.ef = index_type, index_partition_rows, ef
        self.policy_version = policy_version
        self.read_only = bool(read_only)
        self.fts_index = bool(fts_index)
        # one writer process per store (lease.py): taken before anything is created or upgraded
        self._lease = StoreLease(self.uri) if lease and not self.read_only and is_local(self.uri) else None
        try:
            self._db = lancedb.connect(self.uri)
            meta = schema_meta(self.embedder_id, self.dim)
            self._schema, self._history_schema = memory_schema(self.dim, meta), history_schema(meta)
            self._table = self._open_or_create(self.table_name, self._schema, check=True)
            self._history = self._open_or_create(self.history_name, self._history_schema, check=False)
            self._init_state()
            # the writer makes the history agree with the memories after a crash between their commits (recover.py)
            self.recovered = reconcile(self) if self._lease is not None else 0
        except BaseException:
            if self._lease is not None:
                self._lease.release()
            raise
        if self.history_flush_every > 1:
            atexit.register(_flush_at_exit, weakref.ref(self))

    def _init_state(self) -> None:
        self._lock = threading.RLock()
        self._mirror: _Mirror | None = None
        self._too_big_at: int | None = None  # table version at which the mirror was found too big
        self._since_compact = 0
        self._last_seq = 0
        self._history_until: int | None = None  # read-only views: history rows with seq <= this
        # The version this handle is at. It only moves when this store writes (lancedb.connect() without a
        # read_consistency_interval does not follow other writers), so reads need not ask LanceDB for it
        # (about 0.2 ms a call); refresh() follows other writers.
        self._version, self._hversion = self._table.version, self._history.version
        self._columns = present_columns(self._table)
        self._vector_indexed = self._has_vector_index()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memtune-history")
        self._pending_history: list[list[dict]] = []  # history rows of applied batches not yet written

    @property
    def policy_version(self) -> str:
        """The bundle version stamped on every row this handle writes ("" for eval runs)."""
        return self._policy_version

    @policy_version.setter
    def policy_version(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"policy_version must be a str, got {type(value).__name__}: {value!r}")
        _check_text(value, "policy_version")
        self._policy_version = value

    # -- opening --------------------------------------------------------------------------------------------------
    def _open_or_create(self, name: str, schema: pa.Schema, check: bool):
        try:
            tbl = self._db.open_table(name)
        except ValueError:  # "Table '...' was not found"
            if self.read_only:
                raise ValueError(
                    f"memory store {self.uri!r} has no table {name!r}: a read-only open needs an existing store "
                    "(open it for writing once to create it)"
                ) from None
            created = self._db.create_table(name, schema=schema)
            if check and self.fts_index:  # the memories table: its keyword index starts with it (fts.py)
                ensure_fts_index(created)
            return created
        if check:
            check_compatible(tbl, self.uri, self.table_name, self.embedder_id, self.dim)
        if self.read_only:
            return tbl  # no upgrade: columns an old store lacks read as empty (present_columns)
        try:
            add_missing_columns(tbl, schema)
        except ValueError as e:
            raise ValueError(f"memory store {self.uri!r}, table {name!r}: {e}") from None
        return tbl

    # -- validation helpers ---------------------------------------------------------------------------------------
    def _vectors(self, vectors, what: str) -> np.ndarray:
        return check_vectors(vectors, what, self.dim, self.embedder_id)

    # -- bulk / maintenance ---------------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Follow writes made by other processes or handles (the mirror reloads if the table moved)."""
        with self._lock:
            self._table.checkout_latest()
            self._history.checkout_latest()
            self._version, self._hversion = self._table.version, self._history.version
            self._mirror = self._mirror if getattr(self._mirror, "version", -1) == self._version else None  # moved
            self._columns = present_columns(self._table)
            self._vector_indexed = self._has_vector_index()

    def _has_vector_index(self) -> bool:
        return has_vector_index(self._table)

    @property
    def version(self) -> int:
        """The LanceDB version of the memories table (every write makes one)."""
        return self._table.version

    def _check_writable(self, what: str) -> None:
        """Refuse a write on a read-only store, or after this process lost the writer lease (lease.py)."""
        if self.read_only:
            raise PermissionError(
                f"{what}: memory store {self.uri!r} was opened read-only; open it with read_only=False "
                "(in the one process that writes it) to change it"
            )
        if self._lease is not None:
            self._lease.check(what)

    def close(self) -> None:
        """Write pending history (group commit), stop the history writer thread and release the writer lease."""
        try:
            self.flush()
            self._writer.shutdown(wait=True)
        finally:
            if self._lease is not None:
                self._lease.release()

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"MemoryStore(uri={self.uri!r}, table={self.table_name!r}, embedder_id={self.embedder_id!r}, "
            f"dim={self.dim})"
        )


def _flush_at_exit(ref: weakref.ref[MemoryStore]) -> None:
    store = ref()
    if store is not None:
        store.flush()
