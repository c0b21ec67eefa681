"""The reranker stage (stages/rerank.py): an OpenAI-compatible /rerank endpoint (a tiny local fake server), an LM
scorer through DSPy (DummyLM), and every failure kept to the fused order and counted, never raised."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from dspy.utils.dummies import DummyLM

from memtune.policies.lm import CostMeter
from memtune.policies.metering import metering
from memtune.policies.policy import MemoryPolicy
from memtune.policies.stages.answer import ExtractiveAnswerer
from memtune.policies.stages.decide import AddOnlyDecider
from memtune.policies.stages.extract import ChunkExtractor
from memtune.policies.stages.rerank import FixedScorer, RerankStats, Scorer, rerank
from memtune.policies.stages.rerank_http import HttpRerankScorer, parse_results
from memtune.policies.stages.rerank_llm import LLMScorer
from memtune.policies.stages.retrieve import CosineRetriever
from memtune.policies.stages.summarize import NoSummarizer
from memtune.policies.store.changes import Change
from memtune.policies.store.store import MemoryStore
from memtune.policies.types import Scope

ALICE = Scope(user_id="alice")
TEXTS = ["Caroline likes tea", "Melanie bought a theremin", "Caroline went hiking"]


class FakeRerankServer:
    """POST /v1/rerank scores each document by how many of the query's words it contains (a stand-in for a
    cross-encoder); `mode` makes it fail in the ways real endpoints do."""

    def __init__(self):
        self.mode, self.requests = "ok", []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((self.path, dict(self.headers), body))
                words = set(body["query"].lower().strip("?").split())
                results = [
                    {"index": i, "relevance_score": float(len(words & set(d.lower().split())))}
                    for i, d in enumerate(body["documents"])
                ]
                results.sort(key=lambda r: -r["relevance_score"])  # servers answer best first, with the index
                if outer.mode == "500":
                    return self._send(500, {"error": "overloaded"})
                if outer.mode == "short":
                    results = results[:1]
                if outer.mode == "garbage":
                    return self._send(200, {"data": "nope"})
                self._send(200, {"model": body["model"], "results": results})

            def _send(self, code, payload):
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    server = FakeRerankServer()
    yield server
    server.close()


def test_http_scorer_speaks_the_rerank_protocol(fake, monkeypatch):
    monkeypatch.setenv("MY_RERANK_KEY", "sk-test")
    scorer = HttpRerankScorer(fake.url + "/", "bge-reranker", api_key_env="MY_RERANK_KEY")
    assert isinstance(scorer, Scorer)
    assert scorer.score("who bought a theremin?", TEXTS) == [0.0, 3.0, 0.0]  # document order, not response order
    path, headers, body = fake.requests[-1]
    assert path == "/v1/rerank" and headers["Authorization"] == "Bearer sk-test"
    assert body == {"model": "bge-reranker", "query": "who bought a theremin?", "documents": TEXTS, "top_n": 3}
    assert scorer.score("q", []) == []
    with pytest.raises(ValueError, match="http"):
        HttpRerankScorer("localhost:8000", "m")


@pytest.mark.parametrize(
    "payload, error",
    [
        ({"results": [{"index": 0, "relevance_score": 1}]}, "did not score documents \\[1\\]"),
        ({"results": [{"index": 0, "relevance_score": 1}, {"index": 0, "relevance_score": 2}]}, "twice"),
        ({"results": [{"index": 2, "relevance_score": 1}]}, "bad index"),
        ({"results": [{"index": 0, "relevance_score": "high"}]}, "numeric"),
        ({"scores": [1, 2]}, "no 'results'"),
    ],
)
def test_malformed_rerank_responses_are_errors(payload, error):
    with pytest.raises(ValueError, match=error):
        parse_results(payload, 2)


def filled(tmp_path) -> MemoryStore:
    s = MemoryStore(tmp_path / "s", dim=4, embedder_id="e", fts_index=True)
    for text, vec in zip(TEXTS, ([1, 0, 0, 0], [0.6, 0.8, 0, 0], [0.9, 0, 0.1, 0])):
        s.apply([Change("ADD", text, np.asarray(vec, np.float32), scope=ALICE)])
    return s


QVEC = np.asarray([1, 0, 0, 0], np.float32)


def test_the_retriever_reranks_the_fused_candidates(tmp_path, fake):
    s = filled(tmp_path)
    dense = [m.text for m in CosineRetriever(top_k=2).retrieve("who bought a theremin?", QVEC, s, ALICE)]
    assert dense == ["Caroline likes tea", "Caroline went hiking"]
    retriever = CosineRetriever(top_k=2, rerank=True, rerank_depth=3, scorer=HttpRerankScorer(fake.url, "m"))
    meter = CostMeter()
    with metering(meter):
        out = retriever.retrieve("who bought a theremin?", QVEC, s, ALICE)
    assert [m.text for m in out] == ["Melanie bought a theremin", "Caroline likes tea"]  # ties keep the fused order
    assert out[0].score == pytest.approx(0.6)  # still the cosine
    assert fake.requests[-1][2]["documents"] == [
        "Caroline likes tea",
        "Caroline went hiking",
        "Melanie bought a theremin",
    ]
    assert retriever.rerank_stats == RerankStats(calls=1, failures=0) and meter.phases["rerank"].steps == 1


@pytest.mark.parametrize("mode", ["500", "short", "garbage", "down"])
def test_a_failing_endpoint_keeps_the_fused_order_and_is_counted(tmp_path, fake, mode):
    s = filled(tmp_path)
    fake.mode = mode
    url = "http://127.0.0.1:9/v1" if mode == "down" else fake.url  # port 9 (discard): nothing listens
    retriever = CosineRetriever(top_k=2, rerank=True, scorer=HttpRerankScorer(url, "m", timeout=2))
    meter = CostMeter(max_consecutive_failures=2)
    for _ in range(3):  # more failures in a row than an LM stage may have: a reranker never stops the run
        with metering(meter):
            out = retriever.retrieve("who bought a theremin?", QVEC, s, ALICE)
        assert [m.text for m in out] == ["Caroline likes tea", "Caroline went hiking"]
    assert retriever.rerank_stats == RerankStats(calls=3, failures=3)
    assert meter.phases["rerank"].failures == 3 and meter.failures[-1].phase == "rerank"


class Broken:
    def __init__(self, scores):
        self.scores = scores

    def score(self, query, texts):
        if isinstance(self.scores, Exception):
            raise self.scores
        return self.scores


@pytest.mark.parametrize("scores", [[1.0], [1.0, float("nan")], RuntimeError("boom")])
def test_wrong_scores_are_failures(scores):
    stats = RerankStats()
    assert rerank("q", ["a", "b"], Broken(scores), stats) is None and stats.failures == 1
    assert rerank("q", ["a", "b"], FixedScorer(["b"]), stats) == [0.0, 1.0]


def test_llm_scorer_listwise_and_pointwise_with_dummy_lm():
    import dspy

    with dspy.context(lm=DummyLM([{"ranking": "[2, 9, 2, 3]"}])):  # 9 is not listed, the second 2 repeats
        assert LLMScorer().score("who bought a theremin?", TEXTS) == [-1.0, 3.0, 2.0]
    with dspy.context(lm=DummyLM([{"relevance": "1"}, {"relevance": "9"}, {"relevance": "0"}])):
        assert LLMScorer(mode="pointwise").score("who bought a theremin?", TEXTS) == [1.0, 9.0, 0.0]
    with dspy.context(lm=DummyLM([{"ranking": "[7]"}] * 4)), pytest.raises(ValueError, match="names no listed"):
        LLMScorer(retries=1).score("q", TEXTS)  # retried once, then raised (the stage counts it)
    with pytest.raises(ValueError, match="mode"):
        LLMScorer(mode="pairwise")


def policy_with(store, embedder, retriever, lm):
    return MemoryPolicy(
        ChunkExtractor(), NoSummarizer(), AddOnlyDecider(), retriever, ExtractiveAnswerer(), embedder, store, lm=lm
    )


def test_an_llm_reranker_uses_the_policys_lm_and_needs_one(tmp_path, embedder):
    store = MemoryStore(tmp_path / "p", dim=embedder.dim, embedder_id=embedder.id, fts_index=True)
    with pytest.raises(ValueError, match="retriever.scorer"):
        policy_with(store, embedder, CosineRetriever(rerank=True, scorer=LLMScorer()), None)
    lm = DummyLM([{"ranking": "[2, 1]"}])
    policy = policy_with(store, embedder, CosineRetriever(top_k=2, rerank=True, scorer=LLMScorer()), lm)
    for text in ("Caroline likes tea", "Caroline bought a theremin"):
        store.apply([Change("ADD", text, embedder.embed([text])[0], scope=ALICE)])
    dense = [m.text for m in policy.search("Caroline likes tea?", ALICE, retriever=CosineRetriever(top_k=2))]
    reranked = [m.text for m in policy.search("Caroline likes tea?", ALICE)]
    assert reranked == dense[::-1]
    assert policy.meter.phases["rerank"].calls == 1  # LM calls are metered under the rerank phase
