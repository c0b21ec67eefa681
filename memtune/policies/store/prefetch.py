"""The hand-off of a keyword search started early: hybrid retrieval starts the store's keyword search for the query
text (fts.py start_keyword_search) before it embeds the query, and dense_and_keyword() consumes the running search
instead of starting its own."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass

from ..types import Scope
from .mirror import _Mirror


@dataclass(frozen=True)
class KeywordPrefetch:
    """A keyword search started before the query is embedded (start_keyword_search), on one published mirror:
    dense_and_keyword() takes its hits for the same (query, scope, keyword_k, include_invalid) and reads the dense
    list from the same mirror, so the fused result is what it would have been without the early start."""

    view: _Mirror
    query: str
    scope: Scope
    keyword_k: int
    include_invalid: bool
    pending: Future

    def serves(self, query: str, scope: Scope, keyword_k: int, include_invalid: bool) -> bool:
        return (self.query, self.scope, self.keyword_k, self.include_invalid) == (
            query,
            scope,
            keyword_k,
            include_invalid,
        )
