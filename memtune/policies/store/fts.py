"""Keyword search over memory text: LanceDB's own full-text (BM25) index on the `text` column, and the store reads
the retrieval levers need besides cosine top-k (keyword hits, the vectors of given memories, when each memory of a
scope was said).

The index: LanceDB's native inverted index (`lancedb.index.FTS`: simple tokenizer, lower case, English stemming
and stop words, ASCII folding; no positions, so no phrase queries). A store with `fts_index=True`
(conf/store/lancedb.yaml; the class default is off) creates it with the memories table, and compact() builds it on
a table that lacks one (a store written before it existed, or after restore() / reset()); every compaction's
optimize() folds the rows written since into it. It stays correct between compactions without any refresh:
LanceDB scans the rows the index has not seen yet (an add, the new row of an update) and applies deletions (a
delete, the old row of an update) to every FTS query. Without an index LanceDB scans the whole table with
exact, case-sensitive tokens (no lower-casing, stemming or stop words: "Theremin" does not find "theremin") and
other BM25 statistics, and is slower (flat: 4.7 ms at 10k rows, 14 ms at 30k; indexed 2.7 and 5.7 ms), so keep
`fts_index` on for a store that serves hybrid retrieval.

Cost: one FTS query only when a retriever asks for keyword hits (hybrid retrieval off: none). Keeping the index
costs ingestion time even then, since every compaction's optimize() folds new rows into it: +55-65 ms a compaction
at 3k rows, about +1.2 ms an apply with compact_every=50 (1,000 applies of 3 memories: compaction 3.5 s instead of
2.2-2.5 s; 2 busy cores). `fts_index: false` saves it for a store that never serves hybrid retrieval.

Speed (benchmarks/search_latency.py, 100k memories in one scope): LanceDB's SQL prefilter costs more than the
search (18 ms with the scope and validity filter, 4 ms without), so with the in-process mirror the scope is applied
through it (_keyword_hits): a scope of at least 1/WIDE_SCOPE of the rows is ranked over the whole table and its
hits kept; a narrower one keeps LanceDB's prefilter on the scope alone (the mirror drops invalidated hits). Same
hits either way once the index covers every row; between compactions LanceDB scores the rows it has not indexed
yet with statistics of the rows it scans, which a prefilter changes (their BM25 scores move by < 1%). Hybrid
retrieval runs the keyword search in a thread beside the dense product (dense_and_keyword), started before the
query is embedded when the policy asks (start_keyword_search; store/prefetch.py hands it over).

Safety: the query text reaches LanceDB as a `MatchQuery` (no query syntax is parsed: quotes, parentheses, AND/OR
and colons are plain words), and the scope as `sql_where()`'s quoted prefilter, so keyword hits never leave the
scope.
"""

from __future__ import annotations

import contextvars
import os
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from lancedb.index import FTS
from lancedb.query import FullTextOperator, MatchQuery

from ..metering import timed
from ..types import MemoryRecord, Scope
from .lance import to_record
from .mirror import _Mirror
from .prefetch import KeywordPrefetch
from .sql import _check_scope, _check_text, ids_where, sql_where, valid_where
from .state import StoreState

FTS_COLUMN = "text"
_KEYWORD_POOL: dict[int, ThreadPoolExecutor] = {}  # pid -> the threads dense_and_keyword's keyword searches run on


def _keyword_pool() -> ThreadPoolExecutor:
    """This process's pool (one per pid: a pool inherited through fork has no threads behind it)."""
    pool = _KEYWORD_POOL.get(os.getpid())
    if pool is None:
        pool = _KEYWORD_POOL.setdefault(
            os.getpid(), ThreadPoolExecutor(max_workers=8, thread_name_prefix="memtune-keyword")
        )
    return pool


FTS_ATTEMPTS = 5  # an FTS query whose files a concurrent compaction deleted runs again (_fts_ids)
WIDE_SCOPE = 4  # a scope holding at least 1/4 of the rows is searched without LanceDB's prefilter (_keyword_hits)


def fts_config() -> FTS:
    """The FTS index memtune builds (LanceDB's defaults, written out so a LanceDB upgrade cannot change them)."""
    return FTS(
        with_position=False,
        base_tokenizer="simple",
        language="English",
        max_token_length=40,
        lower_case=True,
        stem=True,
        remove_stop_words=True,
        ascii_folding=True,
    )


def has_fts_index(table) -> bool:
    return any(idx.index_type == "FTS" and FTS_COLUMN in idx.columns for idx in table.list_indices())


def ensure_fts_index(table) -> bool:
    """Build the FTS index on `text` if the table has none; returns whether it built one."""
    if has_fts_index(table):
        return False
    table.create_index(FTS_COLUMN, config=fts_config())
    return True


def _match(query: str) -> MatchQuery:
    """Any of the query's words (OR), exact terms, no query syntax (every argument written out: LanceDB's own
    defaults)."""
    return MatchQuery(
        query,
        FTS_COLUMN,
        boost=1.0,
        fuzziness=0,
        max_expansions=50,
        operator=FullTextOperator.OR,
        prefix_length=0,
        document_granularity=None,
    )


class KeywordMixin(StoreState):
    """Reads of MemoryStore for the retrieval levers: keyword_search, vectors_of, said_times."""

    def keyword_search(
        self, query: str, scope: Scope, top_k: int, *, include_invalid: bool = False
    ) -> list[MemoryRecord]:
        """The top_k memories in `scope` by BM25 over their text (LanceDB's FTS index; `.score` is the BM25
        score, descending); valid memories only unless include_invalid. A query with no indexable word (empty,
        stop words only) finds nothing."""
        _check_text(query, "query")
        _check_scope(scope)
        if top_k <= 0 or not query.strip():
            return []
        view = self._published()  # no lock: the published mirror (reads.py)
        if view is None:
            with self._lock:
                view = self._view()
                if view is None:  # no mirror: LanceDB filters and returns whole rows
                    where = valid_where(sql_where(scope), include_invalid, self._columns)
                    search = self._table.search(_match(query), query_type="fts")
                    if where:
                        search = search.where(where, prefilter=True)
                    rows = search.select([*self._columns, "_score"]).limit(top_k).to_arrow().to_pylist()
                    return [to_record(r, float(r["_score"])) for r in rows]
        return [to_record(row, score) for row, score in self._keyword_hits(view, query, scope, top_k, include_invalid)]

    def _keyword_hits(
        self, view: _Mirror, query: str, scope: Scope, top_k: int, include_invalid: bool
    ) -> list[tuple[dict, float]]:
        """BM25 top_k of the scope, the scope applied through the mirror: LanceDB's SQL prefilter costs more than
        the search itself (at 100k rows: 18 ms with the scope and validity filter, 7 ms with the scope alone, 4 ms
        without any). BM25 scores are the same with or without a prefilter (corpus-wide statistics), so the
        scope's hits in the whole table's ranking are its ranking. Hits the mirror lacks (rows a concurrent write
        committed after it) are dropped: the search answers as of the mirror's version."""
        mask = view.mask(scope, include_invalid)
        wanted, total = int(mask.sum()), len(view)
        if not wanted:
            return []
        if wanted * WIDE_SCOPE >= total:  # a wide scope: rank the whole table, keep the scope's first top_k
            limit = -(-top_k * total // wanted) + top_k
            hits, seen = self._fts_in(view, mask, query, None, limit, top_k)
            if len(hits) >= top_k or seen < limit:  # enough, or every match seen
                return hits
        # a narrow scope: LanceDB prefilters by the scope only; invalidated rows (the mirror knows how many) go after
        invalid = 0 if include_invalid else int(view.mask(scope, True).sum()) - wanted
        return self._fts_in(view, mask, query, sql_where(scope), top_k + invalid, top_k)[0]

    def _fts_in(
        self, view: _Mirror, mask: np.ndarray, query: str, where: str | None, limit: int, top_k: int
    ) -> tuple[list[tuple[dict, float]], int]:
        """(the first top_k hits of an FTS query that lie in `mask`, how many hits LanceDB returned)."""
        data = self._fts_ids(query, where, limit)
        hits: list[tuple[dict, float]] = []
        for i, score in zip(data["id"].to_pylist(), data["_score"].to_pylist()):
            s = view.slot.get(i)
            if s is not None and s < len(mask) and mask[s]:
                hits.append((view.rows[s], float(score)))  # type: ignore[arg-type]  # alive slots hold rows
                if len(hits) == top_k:
                    break
        return hits, data.num_rows

    def _fts_ids(self, query: str, where: str | None, limit: int):
        """(id, _score) of an FTS query on the latest table. It runs without the store lock, so a compaction that
        keeps no old versions (keep_versions_seconds = keep_last_versions = 0) can delete the files of the version
        it is reading: LanceDB raises 'Not found'; the query runs again on the version that replaced it."""

        def run():
            search = self._table.search(_match(query), query_type="fts")
            if where:
                search = search.where(where, prefilter=True)
            return search.select(["id", "_score"]).limit(limit).to_arrow()

        for _ in range(FTS_ATTEMPTS - 1):
            try:
                return run()
            except (RuntimeError, OSError) as e:
                if "Not found" not in str(e):
                    raise
        return run()

    def dense_and_keyword(
        self,
        vector,
        query: str,
        scope: Scope,
        dense_k: int,
        keyword_k: int,
        *,
        include_invalid: bool = False,
        prefetched: KeywordPrefetch | None = None,
    ) -> tuple[list[MemoryRecord], list[MemoryRecord], np.ndarray]:
        """search() and keyword_search() of one version of the store, and the cosine of each keyword hit to
        `vector`: what hybrid retrieval fuses. The keyword search runs in a thread meanwhile (LanceDB's FTS and
        the BLAS product both release the GIL), timed as `keyword_search` in the caller's cost meter; or it was
        started before the query was embedded (`prefetched`, from start_keyword_search() for the same search)."""
        q = self._vectors(vector, "dense_and_keyword")[:1]
        if dense_k <= 0:
            prefetched = None
        elif prefetched is None or not prefetched.serves(query, scope, keyword_k, include_invalid):
            prefetched = self.start_keyword_search(query, scope, keyword_k, include_invalid=include_invalid)
        if prefetched is None:  # no published mirror, nothing to search for, or nothing to fuse
            with self._lock:  # re-entrant: one version for the three reads
                with timed("keyword_search"):
                    keyword = self.keyword_search(query, scope, keyword_k, include_invalid=include_invalid)
                dense = self.search_many(q, scope, dense_k, include_invalid=include_invalid)[0]
                cosines = self.vectors_of([m.id for m in keyword]) @ q[0] if keyword else np.zeros(0, np.float32)
            return dense, keyword, cosines
        return self._fuse_inputs(prefetched.view, q, scope, dense_k, include_invalid, prefetched.pending)

    def start_keyword_search(
        self, query: str, scope: Scope, keyword_k: int, *, include_invalid: bool = False
    ) -> KeywordPrefetch | None:
        """Start dense_and_keyword()'s keyword search now, on the keyword thread pool (hybrid retrieval calls
        this before embedding the query); None when there is nothing to start early (no published mirror, an
        empty query or keyword_k <= 0: dense_and_keyword() then does as without it)."""
        _check_text(query, "query")
        _check_scope(scope)
        view = self._published()
        if view is None or keyword_k <= 0 or not query.strip():
            return None
        pending = self._submit_keyword(view, query, scope, keyword_k, include_invalid)
        return KeywordPrefetch(view, query, scope, keyword_k, include_invalid, pending)

    def _submit_keyword(self, view: _Mirror, query: str, scope: Scope, keyword_k: int, include_invalid: bool) -> Future:
        """_keyword_hits() on the keyword pool, timed as `keyword_search` in the caller's cost meter."""

        def keyword_hits() -> list[tuple[dict, float]]:
            with timed("keyword_search"):
                return self._keyword_hits(view, query, scope, keyword_k, include_invalid)

        return _keyword_pool().submit(contextvars.copy_context().run, keyword_hits)

    def _fuse_inputs(
        self, view: _Mirror, q: np.ndarray, scope: Scope, dense_k: int, include_invalid: bool, pending: Future
    ) -> tuple[list[MemoryRecord], list[MemoryRecord], np.ndarray]:
        """The dense top dense_k from `view` (while `pending` searches keywords), the keyword hits, their cosines."""
        dense = [to_record(r, s) for r, s in view.top_k(q, scope, dense_k, include_invalid)[0]]
        hits = pending.result()
        cosines = np.asarray([view.vector(r["id"]) @ q[0] for r, _ in hits], np.float32)
        return dense, [to_record(r, s) for r, s in hits], cosines

    def vectors_of(self, ids: list[str]) -> np.ndarray:
        """The stored unit vectors of `ids`, one row each in the given order; an unknown id raises KeyError."""
        if not ids:
            return np.zeros((0, self.dim), np.float32)
        view = self._published()
        if view is not None:
            missing = [i for i in ids if i not in view.slot]
            if not missing:
                return view.vectors[[view.slot[i] for i in ids]]
            raise KeyError(f"vectors_of(): unknown memory ids {missing[:5]}")
        with self._lock:
            view = self._view()
            if view is not None:
                missing = [i for i in ids if i not in view.slot]
                if not missing:
                    return view.vectors[[view.slot[i] for i in ids]]
            else:
                data = self._table.search().where(ids_where(ids)).select(["id", "vector"]).to_arrow()
                found = dict(zip(data["id"].to_pylist(), data["vector"].to_pylist()))
                missing = [i for i in ids if i not in found]
                if not missing:
                    return np.asarray([found[i] for i in ids], np.float32)
        raise KeyError(f"vectors_of(): unknown memory ids {missing[:5]}")

    def said_times(self, scope: Scope) -> list[tuple[str, str]]:
        """(timestamp, created_at) of every memory in `scope`: when each was said, and when it was written."""
        _check_scope(scope)
        view = self._published()
        if view is not None:
            return [(r["timestamp"] or "", r["created_at"] or "") for r in view.select(scope)]
        with self._lock:
            view = self._view()
            if view is not None:
                return [(r["timestamp"] or "", r["created_at"] or "") for r in view.select(scope)]
            q = self._table.search()
            where = sql_where(scope)
            if where:
                q = q.where(where)
            rows = q.select(["timestamp", "created_at"]).to_arrow().to_pylist()
        return [(r["timestamp"] or "", r["created_at"] or "") for r in rows]
