"""Searches do not wait for writers (store/reads.py, store/mirror.py): they read the mirror the store published last,
which never changes, so a search during a slow commit or compaction answers at once with the version before it,
never a row of an uncommitted write, never a row after its delete returned, and never a half-applied batch."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from memtune.policies.store import mirror as mirror_mod
from memtune.policies.store.changes import Change
from memtune.policies.store.mirror import _Mirror
from memtune.policies.store.store import MemoryStore
from memtune.policies.types import Scope

DIM = 8
ALICE = Scope("alice")


def unit(i: int) -> np.ndarray:
    v = np.random.default_rng(i).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def slow(store: MemoryStore, method: str, seconds: float, fail: bool = False) -> threading.Event:
    """Make the store's LanceDB table `method` (add, delete, merge_insert's execute, optimize) take `seconds` longer
    (then raise, if fail); the event is set once it has started."""
    started, table = threading.Event(), store._table
    real = getattr(table, method)

    def wrapped(*args, **kwargs):
        started.set()
        time.sleep(seconds)
        if fail:
            raise OSError("injected commit failure")
        return real(*args, **kwargs)

    setattr(table, method, wrapped)
    return started


def texts(store: MemoryStore, scope: Scope = ALICE) -> list[str]:
    return sorted(m.text for m in store.search(unit(0), scope, 1000))


@pytest.fixture
def store(tmp_path):
    s = MemoryStore(tmp_path / "s", dim=DIM, embedder_id="e", cache=True, compact_every=0, fts_index=True)
    s.apply([Change("ADD", f"memory {i}", unit(i), scope=ALICE) for i in range(30)])
    yield s
    s.close()


def timed_read(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def test_a_search_during_a_slow_add_commit_answers_at_once_with_the_old_version(store):
    before = texts(store)
    started = slow(store, "add", 1.5)
    writer = threading.Thread(target=store.apply, args=([Change("ADD", "new fact", unit(99), scope=ALICE)],))
    writer.start()
    assert started.wait(10)
    during, waited = timed_read(lambda: texts(store))
    kw, kw_waited = timed_read(lambda: [m.text for m in store.keyword_search("fact", ALICE, 5)])
    count, get_all = store.count(ALICE), [m.text for m in store.get_all(ALICE)]
    assert writer.is_alive()  # the commit was still running while all of that answered
    assert during == before and waited < 1.0 and kw == [] and kw_waited < 1.0
    assert count == 30 and "new fact" not in get_all
    writer.join()
    assert "new fact" in texts(store)  # published before apply() returned: read-your-writes


def test_a_search_during_a_slow_delete_sees_the_row_until_the_delete_returns(store):
    victim = store.search(unit(3), ALICE, 1)[0]
    started = slow(store, "delete", 1.0)
    writer = threading.Thread(target=store.apply, args=([Change("DELETE", memory_id=victim.id, scope=ALICE)],))
    writer.start()
    assert started.wait(10)
    during, waited = timed_read(lambda: store.get(victim.id))
    assert during is not None and waited < 0.5 and writer.is_alive()
    writer.join()
    assert store.get(victim.id) is None and victim.text not in texts(store)


def test_a_failed_commit_is_never_seen(store):
    before = texts(store)
    started = slow(store, "add", 0.5, fail=True)
    errors = []

    def write():
        try:
            store.apply([Change("ADD", "never committed", unit(98), scope=ALICE)])
        except OSError as e:
            errors.append(e)

    writer = threading.Thread(target=write)
    writer.start()
    assert started.wait(10)
    assert texts(store) == before
    writer.join()
    assert errors and texts(store) == before


def test_a_search_during_a_compaction_answers_at_once_and_the_same(store):
    before = [(m.id, m.score) for m in store.search(unit(3), ALICE, 5)]
    started = slow(store, "optimize", 1.5)
    compaction = threading.Thread(target=store.compact)
    compaction.start()
    assert started.wait(10)
    during, waited = timed_read(lambda: [(m.id, m.score) for m in store.search(unit(3), ALICE, 5)])
    compaction.join()
    assert during == before and waited < 1.0  # not behind the 1.5 s optimize
    assert [(m.id, m.score) for m in store.search(unit(3), ALICE, 5)] == before


def test_a_write_during_a_compaction_still_waits_for_it(store):
    started = slow(store, "optimize", 1.0)
    compaction = threading.Thread(target=store.compact)
    compaction.start()
    assert started.wait(10)
    store.apply([Change("ADD", "second", unit(1), scope=ALICE)])
    assert not compaction.is_alive()  # the write went after the compaction had finished
    compaction.join()
    assert "second" in texts(store)


def test_a_store_without_a_mirror_keeps_locked_reads(tmp_path):
    store = MemoryStore(tmp_path / "s", dim=DIM, embedder_id="e", cache=False, compact_every=0)
    store.apply([Change("ADD", "only", unit(0), scope=ALICE)])
    started = slow(store, "optimize", 0.8)
    compaction = threading.Thread(target=store.compact)
    compaction.start()
    assert started.wait(10)
    assert [m.text for m in store.search(unit(0), ALICE, 1)] == ["only"]
    assert not compaction.is_alive()  # read through LanceDB under the lock: after the compaction
    compaction.join()


def test_a_published_mirror_never_changes():
    m = _Mirror(DIM, 1)
    rows = [{"id": f"r{i}", "text": f"t{i}", "user_id": "u", "agent_id": "", "run_id": "", "provenance": [],
             "invalid_at": ""} for i in range(5)]  # fmt: skip
    m = m.changed([], rows, np.stack([unit(i) for i in range(5)]), 2)
    snapshot = (m.n, m.version, dict(m.slot), m.alive.copy(), [dict(r) for r in m.rows[: m.n]], m.top_k(
        unit(1)[None], Scope("u"), 5))  # fmt: skip
    updated = {**rows[1], "text": "t1 changed"}
    new = m.changed(["r0"], [updated, {**rows[0], "id": "r9"}], np.stack([unit(7), unit(9)]), 3)
    assert (m.n, m.version, m.slot, [dict(r) for r in m.rows[: m.n]]) == snapshot[:3] + (snapshot[4],)
    assert (m.alive == snapshot[3]).all() and m.top_k(unit(1)[None], Scope("u"), 5) == snapshot[5]
    assert new.get("r0") is None and new.get("r1")["text"] == "t1 changed" and len(new) == 5
    assert [r["text"] for r, _ in new.top_k(unit(7)[None], Scope("u"), 1)[0]] == ["t1 changed"]


def test_squeezing_keeps_the_rows(monkeypatch):
    m = _Mirror(DIM, 1)
    rows = [{"id": f"r{i}", "text": f"t{i}", "user_id": f"u{i % 3}", "agent_id": "", "run_id": "",
             "provenance": [], "invalid_at": ""} for i in range(3000)]  # fmt: skip
    m = m.changed([], rows, np.stack([unit(i) for i in range(3000)]), 2)
    squeezed = m.changed([f"r{i}" for i in range(2000)], [], None, 3)
    assert squeezed.n == 1000 and squeezed.dead == 0 and len(squeezed) == 1000
    assert sorted(r["id"] for r in squeezed.select(Scope("u1"))) == sorted(
        f"r{i}" for i in range(2000, 3000) if i % 3 == 1
    )
    assert m.n == 3000 and len(m) == 3000  # the mirror it came from is as it was


def test_the_dimension_major_product_ranks_like_the_row_major_one(monkeypatch):
    rng = np.random.default_rng(5)
    rows = [{"id": f"r{i}", "text": f"t{i}", "user_id": f"u{i % 2}", "agent_id": "", "run_id": "",
             "provenance": [], "invalid_at": "x" if i % 7 == 0 else ""} for i in range(500)]  # fmt: skip
    m = _Mirror(DIM, 1).changed([], rows, rng.normal(size=(500, DIM)).astype(np.float32), 2)
    queries = rng.normal(size=(3, DIM)).astype(np.float32)
    for scope in (Scope(), Scope("u1")):
        for inv in (False, True):
            einsum = m.top_k(queries, scope, 20, inv)
            monkeypatch.setattr(mirror_mod, "BLAS_MIN_ROWS", 10)
            blas = m.top_k(queries, scope, 20, inv)
            monkeypatch.setattr(mirror_mod, "BLAS_MIN_ROWS", 32_768)
            assert [[r["id"] for r, _ in q] for q in blas] == [[r["id"] for r, _ in q] for q in einsum]
            assert np.allclose([[s for _, s in q] for q in blas], [[s for _, s in q] for q in einsum], atol=1e-6)


def test_no_torn_reads_under_concurrent_writes(tmp_path):
    """Writers add and delete pairs of memories (both in one batch); readers search, list, count and keyword-search
    for ~2 s. A reader must always see both rows of a pair or neither, never a pair after its delete returned, and never a
    pair before its add started."""
    store = MemoryStore(tmp_path / "s", dim=DIM, embedder_id="e", cache=True, compact_every=7, fts_index=True)
    lock, added, deleted = threading.Lock(), {}, {}  # pair -> time the add started / the delete returned
    stop, failures, keyword_hits = threading.Event(), [], []

    def writer(w: int):
        k = 0
        while not stop.is_set():
            name = f"w{w}p{k}"
            with lock:
                added[name] = time.perf_counter()
            ids = [r[1] for r in store.apply([Change("ADD", f"{name} {s}", unit(k * 2 + i), scope=ALICE)
                                              for i, s in enumerate(("alpha", "beta"))])]  # fmt: skip
            if k % 2:
                store.apply([Change("DELETE", memory_id=i, scope=ALICE) for i in ids])
                with lock:
                    deleted[name] = time.perf_counter()
            k += 1

    def check(found: list[str], started: float) -> None:
        pairs: dict[str, int] = {}
        for t in found:
            name = t.split()[0]
            pairs[name] = pairs.get(name, 0) + 1
        with lock:
            for name, n in pairs.items():
                if n != 2:
                    failures.append(f"torn: {name} x{n}")
                if deleted.get(name, float("inf")) < started:
                    failures.append(f"deleted but seen: {name}")
                if name not in added:
                    failures.append(f"seen before its add: {name}")

    def reader(r: int):
        try:
            read(r)
        except Exception as e:  # e.g. a keyword search whose files a compaction deleted
            failures.append(f"reader {r}: {e!r}"[:300])

    def read(r: int):
        while not stop.is_set():
            started = time.perf_counter()
            if r % 4 == 0:
                check([m.text for m in store.search(unit(r), ALICE, 10_000)], started)
            elif r % 4 == 1:
                check([m.text for m in store.get_all(ALICE)], started)
            elif r % 4 == 3:  # LanceDB's FTS on the table a writer commits to, hits mapped through the mirror
                found = [m.text for m in store.keyword_search("alpha beta", ALICE, 10_000)]
                keyword_hits.append(len(found))
                check(found, started)
            else:
                n = store.count(ALICE)
                if n % 2:
                    failures.append(f"odd count {n}")

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(2)]
    threads += [threading.Thread(target=reader, args=(r,)) for r in range(4)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    stop.set()
    for t in threads:
        t.join(30)
    assert not failures, failures[:10]
    assert len(added) > 4 and deleted and max(keyword_hits) > 0  # the writers did write, keyword search found them
    final = [m.text.split()[0] for m in store.get_all(ALICE)]
    assert sorted(set(final)) == sorted(n for n in added if n not in deleted)
    store.close()


def _failing_once(store: MemoryStore, monkeypatch, message: str) -> list[int]:
    """store._table.search, whose first query raises `message` when it runs (as LanceDB's does when a cleanup
    deleted the files of the version it reads); returns the list of calls."""
    real, calls = store._table.search, []

    class Failing:
        def where(self, *a, **k):
            return self

        select = limit = where

        def to_arrow(self):
            raise RuntimeError(message)

    def search(*args, **kwargs):
        calls.append(1)
        return Failing() if len(calls) == 1 else real(*args, **kwargs)

    monkeypatch.setattr(store._table, "search", search)
    return calls


def test_a_keyword_search_whose_files_a_compaction_deleted_runs_again(store, monkeypatch):
    expected = [m.id for m in store.keyword_search("memory", ALICE, 5)]
    calls = _failing_once(store, monkeypatch, "lance error: LanceError(IO): Not found: s/memories.lance/data/x.lance")
    assert [m.id for m in store.keyword_search("memory", ALICE, 5)] == expected and len(calls) == 2


def test_any_other_keyword_search_error_is_raised(store, monkeypatch):
    calls = _failing_once(store, monkeypatch, "lance error: Invalid user input: no such column")
    with pytest.raises(RuntimeError, match="Invalid user input"):
        store.keyword_search("memory", ALICE, 5)
    assert len(calls) == 1
