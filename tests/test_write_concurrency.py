"""The write path of the Memory API (policies/runtime/scope_locks.py): adds of different scopes overlap, LM calls
included; adds of one scope run one at a time and in arrival order; a wide scope (a user's delete_all) waits for
every scope inside it; reads never wait."""

from __future__ import annotations

import itertools
import json
import threading
import time

import pytest
from dspy.utils.dummies import DummyLM

from memtune.policies.policy import MemoryPolicy
from memtune.policies.runtime.memory import Memory
from memtune.policies.runtime.scope_locks import ScopeLocks, overlap
from memtune.policies.stages.answer import ExtractiveAnswerer
from memtune.policies.stages.decide import ThresholdDecider
from memtune.policies.stages.extract import LLMExtractor
from memtune.policies.stages.retrieve import CosineRetriever
from memtune.policies.stages.summarize import NoSummarizer
from memtune.policies.types import Scope

DELAY = 0.4  # seconds per LM call


class SlowLM(DummyLM):
    """DummyLM that takes DELAY seconds per call (any number at once, like a real endpoint) and records when each
    call ran and for which user (the user's name is in the message text)."""

    def __init__(self, answer: dict, delay: float = DELAY):
        super().__init__([answer])
        self.answers = itertools.repeat(answer)
        self.delay, self.calls, self._guard = delay, [], threading.Lock()

    def __call__(self, *args, **kwargs):
        start = time.monotonic()
        time.sleep(self.delay)
        with self._guard:  # DummyLM's own state (answer iterator, history) is not thread-safe; the wait above is
            out = super().__call__(*args, **kwargs)
        text = json.dumps(kwargs.get("messages") or args)
        who = next((u for u in ("alice", "bob") if f"{u} says" in text), "?")
        with self._guard:
            self.calls.append((who, start, time.monotonic()))
        return out


def slow_memory(tmp_path, embedder) -> tuple[Memory, SlowLM]:
    from memtune.policies.store.store import MemoryStore

    lm = SlowLM({"facts": json.dumps([{"fact": "the user likes green tea", "sources": [1]}])})
    store = MemoryStore(tmp_path / "store", dim=embedder.dim, embedder_id=embedder.id)
    policy = MemoryPolicy(
        extractor=LLMExtractor(),
        summarizer=NoSummarizer(),
        decider=ThresholdDecider(),
        retriever=CosineRetriever(top_k=5),
        answerer=ExtractiveAnswerer(),
        embedder=embedder,
        store=store,
        lm=lm,
    )
    return Memory(policy), lm


def run_at_once(*calls) -> list:
    """Start every call in its own thread at (nearly) the same moment; returns their results in order."""
    results: list = [None] * len(calls)
    errors: list = []
    go = threading.Barrier(len(calls))

    def run(i, fn):
        go.wait()
        try:
            results[i] = fn()
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return results


def pair(user: str, n: int) -> list[dict]:
    return [{"role": "user", "content": f"{user} says: I drink green tea every morning, cup number {n}."}]


def test_adds_of_two_scopes_overlap_and_adds_of_one_scope_serialise(tmp_path, embedder):
    memory, lm = slow_memory(tmp_path, embedder)
    # two users at once: their extraction calls run at the same time
    run_at_once(
        lambda: memory.add(pair("alice", 1), user_id="alice"), lambda: memory.add(pair("bob", 1), user_id="bob")
    )
    (a, a0, a1), (b, b0, b1) = sorted(lm.calls)
    assert (a, b) == ("alice", "bob")
    assert a0 < b1 and b0 < a1, lm.calls  # the two calls' intervals overlap
    # one user, two adds at once: the second extraction starts after the first add is done
    lm.calls.clear()
    run_at_once(
        lambda: memory.add(pair("alice", 2), user_id="alice"), lambda: memory.add(pair("alice", 3), user_id="alice")
    )
    (_, s0, e0), (_, s1, e1) = sorted(lm.calls, key=lambda c: c[1])
    assert s1 >= e0, lm.calls  # no overlap
    # both adds happened, each against what the other wrote: the same fact is stored once (ADD, then NOOP)
    assert [m["memory"] for m in memory.get_all(user_id="alice")] == ["the user likes green tea"]
    assert [m["memory"] for m in memory.get_all(user_id="bob")] == ["the user likes green tea"]
    memory.close()


def test_reads_do_not_wait_for_a_slow_add(tmp_path, embedder):
    memory, lm = slow_memory(tmp_path, embedder)
    memory.add(pair("alice", 1), user_id="alice")
    started = threading.Event()
    done: list[float] = []

    def slow_add():
        started.set()
        memory.add(pair("alice", 2), user_id="alice")
        done.append(time.monotonic())

    t = threading.Thread(target=slow_add)
    t.start()
    started.wait()
    time.sleep(DELAY / 4)  # the add is inside its LM call now
    t0 = time.monotonic()
    hits = memory.search("green tea", user_id="alice")
    listed = memory.get_all(user_id="alice")
    read_done = time.monotonic()
    t.join()
    assert hits and listed and read_done < done[0]  # answered while the add was still running
    assert read_done - t0 < DELAY
    memory.close()


def test_scope_overlap():
    u1, u1p, u1c, u2 = Scope("u1"), Scope("u1", "planner"), Scope("u1", "coach"), Scope("u2")
    assert overlap(u1, u1p) and overlap(u1p, u1) and overlap(u1, u1)
    assert not overlap(u1p, u1c) and not overlap(u1, u2) and not overlap(u1p, u2)
    assert overlap(Scope(agent_id="planner"), u1p) and not overlap(Scope(agent_id="planner"), u1c)
    assert overlap(Scope("u1", run_id="r1"), u1p)  # (u1, planner, r1) lies in both
    assert all(overlap(Scope(), s) for s in (u1, u1p, u2))


def test_one_scope_keeps_arrival_order_and_a_wide_scope_is_not_starved():
    locks = ScopeLocks()
    order: list[str] = []
    release = threading.Event()

    def holder():
        with locks.hold(Scope("u1")):
            release.wait(10)
            order.append("first")

    def waiter(name: str, scope: Scope):
        with locks.hold(scope):
            order.append(name)

    threads = [threading.Thread(target=holder)]
    threads[0].start()
    while not locks.held():
        time.sleep(0.001)
    queued = [("second", Scope("u1")), ("wide", Scope("u1")), ("third", Scope("u1", "planner")), ("other", Scope("u2"))]
    for i, (name, scope) in enumerate(queued):
        threads.append(threading.Thread(target=waiter, args=(name, scope)))
        threads[-1].start()
        while len(locks._waiting) < i + 1 and name != "other":  # queued before the next one arrives
            time.sleep(0.001)
    threads[-1].join(timeout=10)
    assert order == ["other"]  # another user's scope did not wait for u1
    release.set()
    for t in threads:
        t.join(timeout=10)
    assert order == ["other", "first", "second", "wide", "third"]


def test_delete_all_of_a_user_waits_for_its_agents_adds(tmp_path, embedder):
    memory, lm = slow_memory(tmp_path, embedder)
    results = run_at_once(
        lambda: memory.add(pair("alice", 1), user_id="alice", agent_id="planner"),
        lambda: (time.sleep(DELAY / 4), memory.delete_all(user_id="alice"))[1],
    )
    # the add had started its LM call: delete_all waited for it and then deleted what it wrote
    assert results[1] == 1 and memory.get_all(user_id="alice") == []
    memory.close()


@pytest.mark.parametrize("method", ["update", "delete"])
def test_id_writes_lock_the_memorys_own_scope(tmp_path, embedder, method):
    memory, lm = slow_memory(tmp_path, embedder)
    (added,) = memory.add("alice says: I keep bees on the roof", user_id="alice", agent_id="planner", infer=False)
    seen: list[Scope] = []
    real = memory._locks.hold

    def spy(scope):
        seen.append(scope)
        return real(scope)

    memory._locks.hold = spy  # type: ignore[method-assign]
    if method == "update":
        memory.update(added["id"], "alice keeps bees", user_id="alice")
    else:
        memory.delete(added["id"], user_id="alice")
    assert seen == [Scope("alice", "planner")]  # the memory's scope, not the (wider) scope the caller named
    memory.close()
