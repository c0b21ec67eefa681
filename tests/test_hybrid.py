"""Keyword search in the store (LanceDB's full-text index, store/fts.py) and the retriever levers over a real store:
the index follows adds, updates, deletes, compaction, rollback and purge; scopes bind keyword hits too; hybrid
retrieval finds what dense retrieval misses; each lever is free when off."""

from __future__ import annotations

import numpy as np
import pytest

from memtune.policies.lm import CostMeter
from memtune.policies.metering import metering
from memtune.policies.stages.retrieve import CosineRetriever
from memtune.policies.store.changes import Change
from memtune.policies.store.fts import has_fts_index
from memtune.policies.store.store import MemoryStore
from memtune.policies.types import Scope

DIM = 8
ALICE = Scope(user_id="alice")
OBRIEN = Scope(user_id="o'brien")


def unit(*xs: float) -> np.ndarray:
    v = np.zeros(DIM, np.float32)
    v[: len(xs)] = xs
    return v / np.linalg.norm(v)


@pytest.fixture(params=[(True, True), (True, False), (False, True)], ids=["index+mirror", "index", "flat+mirror"])
def store(tmp_path, request) -> MemoryStore:
    fts_index, cache = request.param
    return MemoryStore(tmp_path / "s", dim=DIM, embedder_id="e", fts_index=fts_index, cache=cache, compact_every=0)


def add(store, text, vec, scope=ALICE, timestamp="") -> str:
    return store.apply([Change("ADD", text, vec, scope=scope, timestamp=timestamp)])[0][1]


def kw(store, query, scope=ALICE, k=10) -> list[str]:
    return [m.text for m in store.keyword_search(query, scope, k)]


def test_keyword_search_follows_every_write(store):
    assert store.fts_index == has_fts_index(store._table)  # created with the table when asked for
    a = add(store, "Caroline went to a zeppelin museum", unit(1))
    add(store, "Melanie paints sunsets", unit(0, 1))
    assert kw(store, "zeppelin") == ["Caroline went to a zeppelin museum"]  # just added: found, before any compaction
    hit = store.keyword_search("what about the zeppelin", ALICE, 5)[0]
    assert hit.id == a and hit.score > 0 and hit.scope == ALICE and hit.text.endswith("museum")
    # the index lower-cases, stems and drops stop words; a flat scan (no index) matches exact tokens only
    assert kw(store, "What about the ZEPPELINS?") == (["Caroline went to a zeppelin museum"] if store.fts_index else [])
    store.apply([Change("UPDATE", "Caroline went to a glider club", unit(1), a, ALICE)])
    assert kw(store, "zeppelin") == [] and kw(store, "glider") == ["Caroline went to a glider club"]
    store.apply([Change("DELETE", memory_id=a, scope=ALICE)])
    assert kw(store, "glider") == [] and kw(store, "sunsets") == ["Melanie paints sunsets"]
    store.compact()  # folds the writes into the index (or builds it); answers stay the same
    assert has_fts_index(store._table) == store.fts_index
    assert kw(store, "glider") == [] and kw(store, "sunsets") == ["Melanie paints sunsets"]
    add(store, "Caroline flew in a glider", unit(1))
    assert kw(store, "glider") == ["Caroline flew in a glider"]
    assert kw(store, "") == [] and kw(store, "the and of") == [] and store.keyword_search("glider", ALICE, 0) == []


def test_scopes_bind_keyword_hits_and_quotes_are_safe(store):
    add(store, "O'Brien keeps a zeppelin model", unit(1), scope=OBRIEN)
    add(store, "Alice keeps a zeppelin poster", unit(1))
    add(store, "Alice's agent note on zeppelin", unit(1), scope=Scope("alice", agent_id="planner"))
    assert kw(store, "zeppelin", OBRIEN) == ["O'Brien keeps a zeppelin model"]
    assert sorted(kw(store, "zeppelin", ALICE)) == ["Alice keeps a zeppelin poster", "Alice's agent note on zeppelin"]
    assert kw(store, "zeppelin", Scope("alice", agent_id="planner")) == ["Alice's agent note on zeppelin"]
    assert kw(store, "zeppelin", Scope("nobody")) == []
    assert len(kw(store, "zeppelin", Scope())) == 3  # the empty scope is the whole store (as search does)
    for hostile in ("' OR 1=1 --", 'zeppelin") OR (text:*', "zeppelin AND NOT model", "text:zeppelin^9 ~ * \\"):
        hits = kw(store, hostile, OBRIEN)  # no query syntax: the words are words, the scope still binds
        assert all(t.startswith("O'Brien") for t in hits)
    with pytest.raises(ValueError, match="control character"):
        store.keyword_search("zeppelin", Scope("al\nice"), 5)


def test_keyword_index_after_restore_as_of_and_purge(tmp_path):
    s = MemoryStore(tmp_path / "s", dim=DIM, embedder_id="e", fts_index=True, compact_every=0, keep_last_versions=50)
    add(s, "Caroline went to a zeppelin museum", unit(1))
    v = s.version
    add(s, "Melanie rode a zeppelin", unit(0, 1))
    assert len(kw(s, "zeppelin")) == 2
    with s.as_of(v) as old:  # point-in-time keyword search
        assert kw(old, "zeppelin") == ["Caroline went to a zeppelin museum"]
    s.restore(v)
    assert kw(s, "zeppelin") == ["Caroline went to a zeppelin museum"]
    s.purge_versions()
    assert has_fts_index(s._table) and kw(s, "zeppelin") == ["Caroline went to a zeppelin museum"]


def test_an_old_store_gets_its_index_at_the_next_compaction(tmp_path):
    old = MemoryStore(tmp_path / "s", dim=DIM, embedder_id="e")  # the class default: no index
    add(old, "Caroline went to a zeppelin museum", unit(1))
    assert not has_fts_index(old._table) and kw(old, "zeppelin")  # a flat scan finds it meanwhile
    old.close()
    s = MemoryStore(tmp_path / "s", dim=DIM, embedder_id="e", fts_index=True)
    assert not has_fts_index(s._table)  # opening writes nothing
    s.compact()
    assert has_fts_index(s._table) and kw(s, "zeppelin") == ["Caroline went to a zeppelin museum"]


def test_vectors_of_and_said_times(store):
    a = add(store, "one", unit(1, 1), timestamp="1:56 pm on 8 May, 2023")
    b = add(store, "two", unit(0, 1))
    assert np.allclose(store.vectors_of([b, a]), [unit(0, 1), unit(1, 1)])
    assert store.vectors_of([]).shape == (0, DIM)
    with pytest.raises(KeyError, match="unknown memory ids"):
        store.vectors_of([a, "nope"])
    times = sorted(store.said_times(ALICE))
    assert times[0][0] == "" and times[1][0] == "1:56 pm on 8 May, 2023" and all(t[1] for t in times)
    assert store.said_times(Scope("nobody")) == []


# ---- the retriever over a real store ----------------------------------------------------------------------------
def filled(tmp_path) -> tuple[MemoryStore, dict[str, str]]:
    """Ten memories near the query vector about other things, and one far from it that names the query's rare word."""
    s = MemoryStore(tmp_path / "r", dim=DIM, embedder_id="e", fts_index=True)
    ids = {}
    for i in range(10):
        ids[f"near{i}"] = add(
            s, f"Caroline talked about her day number {i}", unit(1, 0.1 * i), timestamp=f"{i + 1} May 2023"
        )
    ids["far"] = add(s, "Melanie bought a theremin", unit(0, 0, 1), timestamp="1 March 2023")
    return s, ids


QUERY, QVEC = "Who bought a theremin?", unit(1)


def test_hybrid_finds_the_keyword_hit_dense_misses(tmp_path):
    s, ids = filled(tmp_path)
    dense = CosineRetriever(top_k=3).retrieve(QUERY, QVEC, s, ALICE)
    assert ids["far"] not in [m.id for m in dense]
    meter = CostMeter()
    with metering(meter):
        hybrid = CosineRetriever(top_k=3, hybrid=True).retrieve(QUERY, QVEC, s, ALICE)
    # RRF: far = 1/(60+1) from BM25 + 1/(60+11) dense = 0.0305; near0 = 1/61 only: far comes first
    assert hybrid[0].id == ids["far"] and len(hybrid) == 3
    assert hybrid[0].score == pytest.approx(0.0, abs=1e-6)  # .score stays the cosine to the query
    assert meter.phases["keyword_search"].steps == 1
    assert (
        CosineRetriever(top_k=3, hybrid=True, keyword_weight=0.0).retrieve(QUERY, QVEC, s, ALICE)[0].id == ids["near0"]
    )
    # a cosine threshold binds keyword hits too
    assert ids["far"] not in [
        m.id for m in CosineRetriever(top_k=3, hybrid=True, threshold=0.5).retrieve(QUERY, QVEC, s, ALICE)
    ]


def test_levers_off_cost_nothing(tmp_path, monkeypatch):
    s, ids = filled(tmp_path)
    called = []
    for name in ("keyword_search", "vectors_of", "said_times"):
        monkeypatch.setattr(s, name, lambda *a, _n=name, **k: called.append(_n))
    out = CosineRetriever(top_k=3).retrieve(QUERY, QVEC, s, ALICE)
    assert [m.id for m in out] == [ids["near0"], ids["near1"], ids["near2"]] and called == []


def test_recency_weight_by_hand(tmp_path):
    s, ids = filled(tmp_path)
    # reference day 10 May 2023 (the newest memory). Relevance min-max over the 11 candidates' cosines: near0 1.0,
    # far 0.0. recency_weight 10, half-life 30 d: near9 (10 May) +10, near0 (1 May) + 10 * 0.5 ** (9/30) = +8.12
    out = CosineRetriever(top_k=2, recency_weight=10.0).retrieve(QUERY, QVEC, s, ALICE)
    assert [m.id for m in out] == [ids["near9"], ids["near8"]]
    out = CosineRetriever(top_k=2, recency_weight=0.001).retrieve(QUERY, QVEC, s, ALICE)
    assert [m.id for m in out] == [ids["near0"], ids["near1"]]  # a small weight only breaks ties


def test_date_filter_and_boost(tmp_path):
    s, ids = filled(tmp_path)
    q = "What did Melanie buy in March 2023?"
    filtered = CosineRetriever(top_k=3, date_filter="filter").retrieve(q, QVEC, s, ALICE)
    assert [m.id for m in filtered] == [ids["far"]]  # the only candidate said in March 2023
    boosted = CosineRetriever(top_k=2, date_filter="boost", date_boost=2.0).retrieve(q, QVEC, s, ALICE)
    assert [m.id for m in boosted] == [ids["far"], ids["near0"]]
    none_inside = CosineRetriever(top_k=2, date_filter="filter").retrieve("What happened in 2019?", QVEC, s, ALICE)
    assert [m.id for m in none_inside] == [ids["near0"], ids["near1"]]  # nothing in 2019: the filter keeps all
    plain = CosineRetriever(top_k=2, date_filter="filter").retrieve("Who is Caroline?", QVEC, s, ALICE)
    assert [m.id for m in plain] == [ids["near0"], ids["near1"]]  # no time named: nothing changes


def test_near_duplicates_collapse_and_mmr(tmp_path):
    s = MemoryStore(tmp_path / "d", dim=DIM, embedder_id="e")
    copies = [add(s, f"Caroline likes tea ({i})", unit(1, 0.01 * i)) for i in range(5)]
    other = add(s, "Caroline likes hiking", unit(1, 1))
    plain = [m.id for m in CosineRetriever(top_k=2).retrieve("tea?", unit(1), s, ALICE)]
    assert plain == copies[:2]
    dedup = [m.id for m in CosineRetriever(top_k=2, dedup_threshold=0.95).retrieve("tea?", unit(1), s, ALICE)]
    assert dedup == [copies[0], other]
    # MMR, second pick. cos(query, copy1) = 1 / sqrt(1.0001) = 0.99995, cos(query, other) = 0.70711; relevance
    # min-max over the 6 candidates: copy1 0.99983, other 0; cos(copy0, copy1) = 0.99995, cos(copy0, other) = 0.70711.
    # lambda 0.2: copy1 0.2 * 0.99983 - 0.8 * 0.99995 = -0.59999 < other 0 - 0.8 * 0.70711 = -0.56569: other.
    # lambda 0.5: copy1 -0.00006 > other -0.35355: the copy.
    mmr = {lam: CosineRetriever(top_k=2, mmr_lambda=lam).retrieve("tea?", unit(1), s, ALICE) for lam in (0.2, 0.5)}
    assert [m.id for m in mmr[0.2]] == [copies[0], other] and [m.id for m in mmr[0.5]] == copies[:2]


def test_bad_knobs_are_refused_by_name():
    with pytest.raises(ValueError, match="fusion must be"):
        CosineRetriever(hybrid=True, fusion="max")
    with pytest.raises(ValueError, match="mmr_lambda"):
        CosineRetriever(mmr_lambda=2.0)
    with pytest.raises(ValueError, match="keyword_depth"):
        CosineRetriever(keyword_depth=0)
    with pytest.raises(ValueError, match="no scorer"):
        CosineRetriever(rerank=True)
    assert CosineRetriever(date_filter=False).knobs.date_filter == "off"  # YAML 1.1's bare off


def test_relative_question_times_count_from_the_conversations_last_day(tmp_path):
    """On LOCOMO the questions come after the conversation: "last year" is the year before its last session date
    (2022 here), not before the wall clock (which would name a year with no memory, and the filter keeps all)."""
    s = MemoryStore(tmp_path / "t", dim=DIM, embedder_id="e")
    old = add(s, "Melanie bought a canoe", unit(0, 1), timestamp="1:56 pm on 8 May, 2022")
    add(s, "Melanie bought a kayak", unit(1), timestamp="7:00 pm on 20 October, 2023")
    add(s, "Caroline adopted a dog", unit(1, 0.2), timestamp="10:00 am on 1 June, 2023")
    out = CosineRetriever(top_k=2, date_filter="filter").retrieve("What did Melanie buy last year?", unit(1), s, ALICE)
    assert [m.id for m in out] == [old]
    assert len(CosineRetriever(top_k=2).retrieve("What did Melanie buy last year?", unit(1), s, ALICE)) == 2


def test_every_lever_at_once_returns_at_most_top_k_of_the_scope(tmp_path):
    from memtune.policies.stages.rerank import FixedScorer

    s, ids = filled(tmp_path)
    add(s, "Bob bought a theremin too", unit(0, 0, 1), scope=Scope("bob"))
    retriever = CosineRetriever(
        top_k=4,
        hybrid=True,
        fusion="weighted",
        recency_weight=0.3,
        date_filter="boost",
        rerank=True,
        rerank_depth=6,
        scorer=FixedScorer(["theremin", "day"]),
        dedup_threshold=0.99,
        mmr_lambda=0.7,
    )
    out = retriever.retrieve("Who bought a theremin in March 2023?", QVEC, s, ALICE)
    assert len(out) == 4 and len({m.id for m in out}) == 4 and all(m.scope == ALICE for m in out)
    assert out[0].id == ids["far"]  # the scorer puts the theremin first; nothing below reorders it
    assert all(m.score is not None and -1.0 <= m.score <= 1.0 for m in out)  # cosines, not fused scores


def test_keyword_hits_skip_superseded_memories_unless_history_is_asked(store):
    """Soft invalidation binds the keyword side too: hybrid retrieval must not bring back through BM25 a memory that
    dense search hides (the retriever's include_history decides for both)."""
    old = add(store, "Caroline lives in Lisbon", unit(1), timestamp="1 May 2023")
    store.apply([Change("ADD", "Caroline lives in Porto now", unit(1, 0.2), scope=ALICE, supersedes=(old,))])
    assert kw(store, "Lisbon") == []
    assert [m.text for m in store.keyword_search("Lisbon", ALICE, 5, include_invalid=True)] == [
        "Caroline lives in Lisbon"
    ]
    now = CosineRetriever(top_k=5, hybrid=True, keyword_depth=5, dense_depth=5)
    ever = CosineRetriever(top_k=5, hybrid=True, keyword_depth=5, dense_depth=5, include_history="always")
    with metering(CostMeter()):
        current = [m.id for m in now.retrieve("Lisbon", unit(0, 0, 1), store, ALICE)]
        history = [m.id for m in ever.retrieve("Lisbon", unit(0, 0, 1), store, ALICE)]
    assert old not in current and len(current) == 1  # only the Porto memory
    assert old in history


@pytest.mark.parametrize("compact", [True, False], ids=["indexed", "unindexed tail"])
def test_keyword_scope_through_the_mirror_matches_lancedb_prefilter(tmp_path, compact):
    """The mirror path (wide scopes ranked over the whole table, narrow ones prefiltered by scope alone, invalidated
    hits dropped by the mirror) finds what LanceDB's full prefilter finds (cache=False), scope by scope."""
    mirror = MemoryStore(tmp_path / "s", dim=DIM, embedder_id="e", fts_index=True, cache=True, compact_every=0)
    rng = np.random.default_rng(3)
    words = "apple banana cherry delta echo".split()
    scopes = [Scope("big")] * 6 + [Scope("small"), Scope("small", "a1"), Scope("tiny")]
    ids = mirror.apply(
        [
            Change("ADD", f"m{i} " + " ".join(rng.choice(words, 3)), unit(*rng.normal(size=3)), scope=scopes[i % 9])
            for i in range(270)
        ]
    )
    for _, mid, _ in ids[::5]:  # invalidate a fifth, in every scope
        scope = mirror.get(mid).scope
        mirror.apply([Change("INVALIDATE", memory_id=mid, scope=scope)])
    if compact:
        mirror.compact()
    flat = MemoryStore(tmp_path / "s", dim=DIM, embedder_id="e", fts_index=True, cache=False, read_only=True)
    for scope in (Scope("big"), Scope("small"), Scope("small", "a1"), Scope("tiny"), Scope(), Scope("none")):
        for inv in (False, True):
            for query in ("apple", "banana cherry", "echo delta apple"):
                got = [(m.id, m.score) for m in mirror.keyword_search(query, scope, 7, include_invalid=inv)]
                want = [(m.id, m.score) for m in flat.keyword_search(query, scope, 7, include_invalid=inv)]
                assert all(
                    mirror.get(i).scope.user_id == (scope.user_id or mirror.get(i).scope.user_id) for i, _ in got
                )
                if compact:  # ties in BM25 come back in any order: compare the scores and the ids above the cut
                    assert [round(s, 4) for _, s in got] == [round(s, 4) for _, s in want]
                    cut = min((s for _, s in want), default=0)
                    assert {i for i, s in got if s > cut + 1e-6} == {i for i, s in want if s > cut + 1e-6}
                else:  # unindexed rows: LanceDB's statistics depend on its prefilter (fts.py); the same count
                    assert len(got) == len(want)
