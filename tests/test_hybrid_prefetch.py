"""Hybrid search starts the keyword search before the query is embedded (MemoryPolicy.start_keyword, the store's
start_keyword_search, handed to the retriever as `prefetched`): the same hits as without the early start, in every
scope, and the keyword search really runs while the embedder works."""

from __future__ import annotations

import threading

import pytest
from conftest import HashEmbedder

from memtune.policies.lm import CostMeter
from memtune.policies.policy import MemoryPolicy
from memtune.policies.runtime.memory import Memory
from memtune.policies.stages.rerank_lexical import LexicalScorer
from memtune.policies.stages.retrieve import CosineRetriever
from memtune.policies.store.changes import Change
from memtune.policies.store.store import MemoryStore
from memtune.policies.types import Scope

TOPICS = ["hiking trip", "pottery class", "sister Anna", "charity race", "the dog Rex", "music lessons"]
SCOPES = [Scope("alice"), Scope("alice", agent_id="coach"), Scope("bob"), Scope("bob", run_id="r1")]
QUERIES = ["What about the pottery class?", "Who is Anna?", "music", "the the", "dog race in May 2023"]

RETRIEVERS = {
    "hybrid": dict(top_k=5, hybrid=True, keyword_depth=7, dense_depth=8),
    "offline": dict(  # the shape of conf/policy/retriever/offline.yaml
        top_k=6,
        threshold=0.05,
        dense_depth=12,
        hybrid=True,
        fusion="weighted",
        keyword_weight=0.25,
        date_filter="boost",
        date_boost=1.75,
        rerank=True,
        rerank_depth=12,
        dedup_threshold=0.9,
        mmr_lambda=0.7,
        scorer=LexicalScorer(prior=3.0),
    ),
    "history": dict(top_k=4, hybrid=True, include_history="always"),
}


def make_store(path, compact: bool) -> MemoryStore:
    embedder = HashEmbedder()
    store = MemoryStore(path, dim=embedder.dim, embedder_id=embedder.id, compact_every=0, fts_index=True)
    changes = []
    for i in range(60):
        text = f"user said {TOPICS[i % len(TOPICS)]} on day {i} with note {i % 7}"
        changes.append(
            Change("ADD", text, embedder.embed([text])[0], scope=SCOPES[i % 4], timestamp=f"{1 + i % 28} May 2023")
        )
    store.apply(changes)
    if compact:
        store.compact()
    return store


def make_policy(store: MemoryStore, retriever: CosineRetriever, embedder=None) -> MemoryPolicy:
    return MemoryPolicy(None, None, None, retriever, None, embedder or HashEmbedder(), store, meter=CostMeter())


def ids(hits) -> list[tuple[str, float]]:
    return [(h.id, round(float(h.score), 6)) for h in hits]


@pytest.mark.parametrize("compact", [True, False])
@pytest.mark.parametrize("variant", list(RETRIEVERS))
def test_same_hits_with_and_without_the_early_start(tmp_path, compact, variant, monkeypatch):
    store = make_store(tmp_path / "s", compact)
    retriever = CosineRetriever(**RETRIEVERS[variant])
    policy = make_policy(store, retriever)
    submitted = []
    real = store._submit_keyword
    monkeypatch.setattr(store, "_submit_keyword", lambda *a: submitted.append(a[1]) or real(*a))
    searches = 0
    for scope in [*SCOPES, Scope()]:
        for query in QUERIES:
            before = len(submitted)
            early = policy.search(query, scope)  # starts the keyword search, then embeds
            searches += 1
            assert len(submitted) - before <= 1  # the early search was used: no second keyword search
            vector = HashEmbedder().embed([query])[0]
            plain = retriever.retrieve(query, vector, store, scope)  # no early start
            assert ids(early) == ids(plain), (variant, scope, query)
            assert all(store.get(h.id) is not None for h in early)
    assert submitted  # the early start ran (queries of stop words only start nothing)
    assert "keyword_search" in policy.meter.phases  # timed into the policy's meter


def test_a_prefetch_for_another_search_is_not_used(tmp_path):
    store = make_store(tmp_path / "s", True)
    retriever = CosineRetriever(**RETRIEVERS["hybrid"])
    vector = HashEmbedder().embed(["pottery class"])[0]
    other = retriever.start_keyword("pottery class", store, Scope("bob"))
    assert other is not None
    got = retriever.retrieve_prefetched("pottery class", vector, store, Scope("alice"), other)
    assert ids(got) == ids(retriever.retrieve("pottery class", vector, store, Scope("alice")))
    assert got and all(h.scope.user_id == "alice" for h in got)


def test_dense_retrievers_start_nothing(tmp_path):
    store = make_store(tmp_path / "s", True)
    policy = make_policy(store, CosineRetriever(top_k=5))
    assert policy.start_keyword("pottery class", Scope("alice")) is None
    assert policy.search("pottery class", Scope("alice"))


class GatedEmbedder(HashEmbedder):
    """Embeds only once the keyword search has started (or gives up after a while, recording that it had not)."""

    def __init__(self, started: threading.Event):
        self.started, self.saw_keyword_first = started, []

    def embed(self, texts):
        self.saw_keyword_first.append(self.started.wait(timeout=10))
        return super().embed(texts)


@pytest.mark.parametrize("api", ["policy", "memory"])
def test_the_keyword_search_starts_before_the_embedding_finishes(tmp_path, monkeypatch, api):
    store = make_store(tmp_path / "s", True)
    started = threading.Event()
    real = store._keyword_hits

    def keyword_hits(*args):
        started.set()
        return real(*args)

    monkeypatch.setattr(store, "_keyword_hits", keyword_hits)
    embedder = GatedEmbedder(started)
    policy = make_policy(store, CosineRetriever(**RETRIEVERS["hybrid"]), embedder)
    if api == "policy":
        hits = policy.search("the pottery class", Scope("alice"))
    else:  # the runtime API (and so REST) embeds the query itself
        hits = [h["id"] for h in Memory(policy, bundle_version="t").search("the pottery class", user_id="alice")]
    assert hits and embedder.saw_keyword_first == [True]
