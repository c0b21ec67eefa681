"""Parallel LM calls give the sequential result: several scopes ingested at once with each scope's extractions
ahead of its decisions (policies/pipeline.py) leave the same memories, ops, rolling state, meter totals and LM
prompts as MemoryPolicy.add pair by pair; errors stop the run; the priority pool runs the most urgent task first.
The LM is the deterministic fake OpenAI server (benchmarks/fake_openai.py) on a local port."""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from memtune.policies.lm import CostMeter, make_lm
from memtune.policies.pipeline import ScopeIngest, ingest_pairs, ingest_scopes
from memtune.policies.policy import MemoryPolicy
from memtune.policies.stages.answer import LLMAnswerer
from memtune.policies.stages.decide import LLMDecider
from memtune.policies.stages.extract import LLMExtractor
from memtune.policies.stages.retrieve import CosineRetriever
from memtune.policies.stages.summarize import LLMSummarizer
from memtune.policies.store.store import MemoryStore
from memtune.policies.taskpool import TaskPool
from memtune.policies.types import Message, Scope

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from fake_openai import serve_in_thread  # noqa: E402

WORDS = "garden piano Lisbon marathon sister painting camping adoption pottery violin bakery hiking".split()


def conversation(seed: int, pairs: int) -> list[list[Message]]:
    """Message pairs whose facts repeat and vary (so the decider ADDs, UPDATEs and NOOPs)."""
    out = []
    for i in range(pairs):
        topic = WORDS[(seed * 5 + i) % len(WORDS)]
        detail = WORDS[(seed + i * 7) % len(WORDS)]
        stamp = f"1:00 pm on {1 + i % 28} May, 2023"
        out.append(
            [
                Message(
                    "Ann", f"I have been thinking about the {topic} and my {detail} lately.", f"D1:{2 * i + 1}", stamp
                ),
                Message("Bob", f"Tell me more about the {topic}, it sounds lovely to me.", f"D1:{2 * i + 2}", stamp),
            ]
        )
    return out


def make_policy(tmp_path: Path, name: str, embedder, url: str, window: int = 4) -> MemoryPolicy:
    store = MemoryStore(tmp_path / name, dim=embedder.dim, embedder_id=embedder.id)
    return MemoryPolicy(
        extractor=LLMExtractor(recent_messages=4),
        summarizer=LLMSummarizer(window=window),
        decider=LLMDecider(similar_k=5),
        retriever=CosineRetriever(top_k=5),
        answerer=LLMAnswerer(),
        embedder=embedder,
        store=store,
        lm=make_lm("openai/fake", api_base=url, cache=False),
        meter=CostMeter(),
    )


def snapshot(policy: MemoryPolicy, scopes: list[Scope]) -> dict:
    """Everything ingestion decides (memory ids and wall times aside)."""
    return {
        "memories": {
            s.user_id: sorted((m.text, m.provenance, m.timestamp) for m in policy.store.get_all(s)) for s in scopes
        },
        "history": {s.user_id: history(policy, s) for s in scopes},
        "ops": dict(policy.op_counts),
        "state": {
            s.user_id: (policy._state[s].recent, policy._state[s].pending, policy._state[s].summary) for s in scopes
        },
        "meter": {
            name: (p.calls, p.prompt_tokens, p.completion_tokens, p.steps, p.failures)
            for name, p in policy.meter.phases.items()
            if p.calls
        },
        "sources": (policy.extractor.sources.as_dict(), policy.decider.sources.as_dict()),
    }


def history(policy: MemoryPolicy, scope: Scope) -> list[tuple]:
    """The scope's changes in the order they were applied (memory ids aside)."""
    policy.store.flush()
    rows = policy.store._history.search().where(f"user_id = '{scope.user_id}'").to_arrow().to_pylist()
    return [
        (r["op"], r["old_text"], r["new_text"], tuple(r["provenance"])) for r in sorted(rows, key=lambda r: r["seq"])
    ]


def prompts(record: list) -> Counter:
    return Counter(json.dumps(messages, sort_keys=True) for messages in record)


def test_parallel_ingestion_equals_the_sequential_add_loop(tmp_path, embedder):
    scopes = [Scope(user_id=f"u{k}") for k in range(3)]
    data = {s: conversation(k, 14 + 3 * k) for k, s in enumerate(scopes)}
    seq_record: list = []
    with serve_in_thread(record=seq_record) as url:
        seq = make_policy(tmp_path, "seq", embedder, url)
        for scope in scopes:
            for pair in data[scope]:
                seq.add(pair, scope)
    par_record: list = []
    with serve_in_thread(latency=0.01, record=par_record) as url:
        par = make_policy(tmp_path, "par", embedder, url)
        with TaskPool(6) as pool:
            ingest_scopes([ScopeIngest(par, data[s], s) for s in scopes], pool)
    expected, got = snapshot(seq, scopes), snapshot(par, scopes)
    assert expected["ops"]["UPDATE"] > 0 and expected["ops"]["ADD"] > 0  # the data exercises the decider
    assert expected["meter"]["summarize"][0] >= 3 * 6  # window 4 = a refresh every 2 pairs
    assert got == expected
    # every LM call saw exactly the prompt it saw sequentially: the same summary, recent messages, memories
    assert prompts(par_record) == prompts(seq_record)
    # and the state carries on: one more pair added to each scope afterwards, both ways, still agrees
    extra = [Message("Ann", "I finally sold the piano to my sister last week.", "D2:1", "2 June, 2023")]
    with serve_in_thread() as url:
        for policy in (seq, par):
            policy.lm = make_lm("openai/fake", api_base=url, cache=False)
            for scope in scopes:
                policy.add(extra, scope)
    assert snapshot(par, scopes) == snapshot(seq, scopes)


def test_ingest_pairs_runs_extractions_ahead_of_decisions(tmp_path, embedder):
    """One scope, 8 pairs, 8 threads: all 8 extractions are requested before the first decision returns (the
    sequential loop alternates extract, decide, extract, ...), and the result is the add() loop's."""
    pairs, scope = conversation(1, 8), Scope(user_id="one")
    record: list = []
    with serve_in_thread(latency=0.2, record=record) as url:
        policy = make_policy(tmp_path, "one", embedder, url, window=1000)
        ingest_pairs(policy, pairs, scope, max_concurrency=8)
    kinds = ["facts" if "`facts`" in messages[0]["content"] else "ops" for messages in record]
    assert kinds[:8] == ["facts"] * 8 and kinds.count("ops") == 8
    seq_record: list = []
    with serve_in_thread(record=seq_record) as url:
        seq = make_policy(tmp_path, "one-seq", embedder, url, window=1000)
        ingest_pairs(seq, pairs, scope, max_concurrency=1)  # the add() loop itself
    assert snapshot(policy, [scope]) == snapshot(seq, [scope]) and prompts(record) == prompts(seq_record)


class Boom(RuntimeError):
    pass


def test_an_error_in_one_scope_stops_the_run_and_is_raised(tmp_path, embedder):
    scopes = [Scope(user_id=f"e{k}") for k in range(3)]
    with serve_in_thread(latency=0.01) as url:
        policy = make_policy(tmp_path, "err", embedder, url)
        real = policy.extractor.extract

        def extract(new, recent, summary):
            if new[0].dia_id == "D1:9":  # pair 4 of every scope
                raise Boom("extraction broke")
            return real(new, recent, summary)

        policy.extractor.extract = extract  # type: ignore[method-assign]
        with TaskPool(4) as pool, pytest.raises(Boom, match="extraction broke"):
            ingest_scopes([ScopeIngest(policy, conversation(k, 10), s) for k, s in enumerate(scopes)], pool)
    # no scope got past the failing pair: its commit never ran, so neither did any later one
    for scope in scopes:
        assert {p for *_, provenance in history(policy, scope) for p in provenance} <= {f"D1:{n}" for n in range(1, 9)}


def test_a_scope_listed_twice_or_an_empty_batch_is_refused(tmp_path, embedder):
    with serve_in_thread() as url:
        policy = make_policy(tmp_path, "dup", embedder, url)
        scope = Scope(user_id="x")
        with TaskPool(2) as pool, pytest.raises(ValueError, match="appears twice"):
            ingest_scopes([ScopeIngest(policy, conversation(0, 1), scope)] * 2, pool)
        with pytest.raises(ValueError, match="batch 1 has no messages"):
            ScopeIngest(policy, [conversation(0, 1)[0], []], scope)


def test_taskpool_runs_the_lowest_priority_first_in_the_submitters_context():
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    order: list[str] = []
    gate = threading.Event()
    with TaskPool(1) as pool:
        first = pool.submit((0,), gate.wait)  # holds the only worker while the rest queue up
        var.set("caller")
        futures = [
            pool.submit(p, lambda p=p: order.append(f"{p}:{var.get()}")) for p in [(2, 1), (0, 5), (1, 0), (0, 2)]
        ]
        gate.set()
        for f in [first, *futures]:
            f.result(timeout=10)
    assert order == ["(0, 2):caller", "(0, 5):caller", "(1, 0):caller", "(2, 1):caller"]
    with pytest.raises(ValueError, match="at least 1 worker"):
        TaskPool(0)


def test_llm_free_policies_never_start_a_thread(tmp_path, embedder, monkeypatch):
    """No LM: ingest_all keeps the plain loop whatever max_concurrency says (no pool, no thread)."""
    from memtune.optimize.data.locomo import load_locomo
    from memtune.optimize.evaluation import parallel
    from memtune.optimize.evaluation.evaluate import ingest_all
    from memtune.policies.stages.answer import ExtractiveAnswerer
    from memtune.policies.stages.decide import ThresholdDecider
    from memtune.policies.stages.extract import HeuristicExtractor
    from memtune.policies.stages.summarize import NoSummarizer

    def no_threads(*args, **kwargs):
        raise AssertionError("an LLM-free policy started the parallel ingestion")

    monkeypatch.setattr(parallel, "ingest_parallel", no_threads)
    store = MemoryStore(tmp_path / "free", dim=embedder.dim, embedder_id=embedder.id)
    policy = MemoryPolicy(
        HeuristicExtractor(),
        NoSummarizer(),
        ThresholdDecider(),
        CosineRetriever(),
        ExtractiveAnswerer(),
        embedder,
        store,
    )
    facts = ingest_all(policy, load_locomo("data/fixture/fixture.json"), progress=False, max_concurrency=8)
    assert facts["message_pairs"] == 12 and facts["memories_stored"] > 0


def test_reserved_workers_keep_a_slot_for_urgent_tasks():
    """With one of two workers reserved, non-urgent tasks run one at a time and an urgent one starts at once."""
    running, peak, lock = [0], [0], threading.Lock()
    started, release = threading.Event(), threading.Event()

    def slow():
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        started.set()
        release.wait(10)
        with lock:
            running[0] -= 1

    with TaskPool(2) as pool, pool.reserving(1):
        others = [pool.submit((2, i), slow) for i in range(3)]
        # a non-urgent task holds one worker first (submitted together, the urgent one could run before any)
        assert started.wait(10)
        urgent = pool.submit((0, 0), lambda: "now")
        assert urgent.result(timeout=10) == "now"  # while a non-urgent task holds the other worker
        assert peak[0] == 1
        release.set()
        for f in others:
            f.result(timeout=10)
    assert peak[0] == 1  # never two non-urgent tasks at once


def test_minilm_vectors_do_not_depend_on_their_batch():
    """The pipeline embeds a pair's facts with its extraction, ahead of the commits, so a text may be embedded in
    another batch (and cached from it) than in the sequential loop: its vector must not depend on the batch."""
    import numpy as np

    from memtune.policies.embed.minilm import MiniLMEmbedder

    e = MiniLMEmbedder()
    text = "Caroline went to an LGBTQ support group on 7 May 2023"
    alone = e.embed([text])[0]
    for others in (
        ["hi"],
        ["Melanie painted a sunrise over the lake with her kids last summer, and it was lovely"] * 3,
    ):
        assert np.array_equal(e.embed([*others, text])[-1], alone)
