"""Searches do not wait for a compaction (store/free_reads.py), and writes still do."""

from __future__ import annotations

import threading
import time

import numpy as np

from memtune.policies.store.changes import Change
from memtune.policies.store.free_reads import FreeReads
from memtune.policies.store.store import MemoryStore
from memtune.policies.types import Scope

DIM = 8
ALICE = Scope("alice")


def unit(i: int) -> np.ndarray:
    v = np.random.default_rng(i).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def slow_optimize(store: MemoryStore, seconds: float) -> threading.Event:
    """Make the store's LanceDB optimize take `seconds` longer; the event is set once it has started."""
    started, table = threading.Event(), store._table
    real = table.optimize

    def optimize(*args, **kwargs):
        started.set()
        time.sleep(seconds)
        return real(*args, **kwargs)

    table.optimize = optimize
    return started


def test_a_search_during_a_compaction_answers_at_once_and_the_same(tmp_path):
    store = MemoryStore(tmp_path / "s", dim=DIM, embedder_id="e", cache=True, compact_every=0)
    store.apply([Change("ADD", f"memory {i}", unit(i), scope=ALICE) for i in range(30)])
    before = [(m.id, m.score) for m in store.search(unit(3), ALICE, 5)]
    started = slow_optimize(store, 1.5)
    compaction = threading.Thread(target=store.compact)
    compaction.start()
    assert started.wait(10)
    t0 = time.perf_counter()
    during = [(m.id, m.score) for m in store.search(unit(3), ALICE, 5)]
    waited = time.perf_counter() - t0
    compaction.join()
    assert during == before and waited < 1.0  # not behind the 1.5 s optimize
    assert [(m.id, m.score) for m in store.search(unit(3), ALICE, 5)] == before


def test_a_write_during_a_compaction_still_waits_for_it(tmp_path):
    store = MemoryStore(tmp_path / "s", dim=DIM, embedder_id="e", cache=True, compact_every=0)
    store.apply([Change("ADD", "first", unit(0), scope=ALICE)])
    store.search(unit(0), ALICE, 1)  # the mirror is loaded and in sync
    started = slow_optimize(store, 1.0)
    compaction = threading.Thread(target=store.compact)
    compaction.start()
    assert started.wait(10)
    store.apply([Change("ADD", "second", unit(1), scope=ALICE)])
    assert not compaction.is_alive()  # the write went after the compaction had finished
    compaction.join()
    assert sorted(m.text for m in store.get_all(ALICE)) == ["first", "second"]


def test_the_span_closes_only_after_its_readers_leave():
    free, order = FreeReads(), []
    inside = threading.Event()

    def reader():
        with free.mirror() as mirror:
            assert mirror == "m"
            inside.set()
            time.sleep(0.3)
            order.append("reader done")

    with free.during_compaction("m"):
        thread = threading.Thread(target=reader)
        thread.start()
        assert inside.wait(5)
    order.append("span closed")
    thread.join()
    assert order == ["reader done", "span closed"]
    with free.mirror() as mirror:
        assert mirror is None  # outside a compaction: take the lock


def test_a_store_without_a_mirror_keeps_locked_reads(tmp_path):
    store = MemoryStore(tmp_path / "s", dim=DIM, embedder_id="e", cache=False, compact_every=0)
    store.apply([Change("ADD", "only", unit(0), scope=ALICE)])
    started = slow_optimize(store, 0.8)
    compaction = threading.Thread(target=store.compact)
    compaction.start()
    assert started.wait(10)
    assert [m.text for m in store.search(unit(0), ALICE, 1)] == ["only"]
    assert not compaction.is_alive()  # read through LanceDB under the lock: after the compaction
    compaction.join()
