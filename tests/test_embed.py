"""Embedders: MiniLM on onnxruntime, the sqlite cache, the OpenAI-compatible client (against a local fake)."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import pickle
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from memtune.policies.embed.base import Embedder
from memtune.policies.embed.cache import CachedEmbedder
from memtune.policies.embed.minilm import MiniLMEmbedder
from memtune.policies.embed.openai_api import OpenAIEmbedder


# ---------------------------------------------------------------------------------------------------------
# MiniLM
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm():
    return MiniLMEmbedder()


def test_module_import_is_light():
    code = (
        "import sys, memtune.policies.embed.base, memtune.policies.embed.minilm, memtune.policies.embed.openai_api, "
        "memtune.policies.embed.cache; "
        "print([m for m in ('onnxruntime', 'tokenizers', 'openai', 'torch') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_minilm_shape_dtype_norm(minilm):
    texts = ["Caroline went to an LGBTQ support group.", "", "short", "x " * 600]  # empty and over-long too
    v = minilm.embed(texts)
    assert isinstance(minilm, Embedder)
    assert minilm.id == "minilm-l6-v2-onnx-int8" and minilm.dim == 384
    assert v.shape == (4, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(v).all()


def test_minilm_empty(minilm):
    v = minilm.embed([])
    assert v.shape == (0, 384) and v.dtype == np.float32


def test_minilm_rejects_a_bare_string(minilm):
    with pytest.raises(TypeError):
        minilm.embed("hello")


def test_minilm_semantics(minilm):
    a, b, c = minilm.embed(
        ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply on Monday."]
    )
    assert a @ b > a @ c + 0.3
    q, pos, neg = minilm.embed(
        [
            "What did Melanie paint last year?",
            "Melanie painted a sunrise over the lake in 2022.",
            "Caroline is researching adoption agencies.",
        ]
    )
    assert q @ pos > q @ neg


def test_minilm_batch_order_independence():
    texts = [
        "one",
        "a considerably longer sentence about hiking in the mountains with friends last summer",
        "Hey Mel! Good to see you! How have you been?",
        "",
        "one",
        "the third of ten texts, medium size",
    ]
    small = MiniLMEmbedder(batch_size=2)
    together = small.embed(texts)
    singles = np.vstack([small.embed([t]) for t in texts])
    np.testing.assert_allclose(together, singles, atol=1e-5)
    np.testing.assert_allclose(MiniLMEmbedder(batch_size=64).embed(texts[::-1])[::-1], together, atol=1e-5)


def test_minilm_identity_tracks_truncation():
    assert MiniLMEmbedder(max_length=128).id != MiniLMEmbedder().id
    with pytest.raises(ValueError):
        MiniLMEmbedder(max_length=1000)


def test_minilm_truncation_applies(minilm):
    long_a = "word " * 300 + "apples"
    long_b = "word " * 300 + "quantum chromodynamics"
    a, b = minilm.embed([long_a, long_b])
    np.testing.assert_allclose(a, b, atol=1e-6)  # the tails differ only beyond 256 tokens


def test_minilm_pickles(minilm):
    clone = pickle.loads(pickle.dumps(minilm))
    np.testing.assert_allclose(clone.embed(["hello"]), minilm.embed(["hello"]), atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------------------
class FakeEmbedder:
    """Deterministic vectors from the text hash; records every call."""

    def __init__(self, id: str = "fake-v1", dim: int = 8):
        self.id, self.dim, self.calls = id, dim, []

    def embed(self, texts):
        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256((self.id + t).encode()).digest()[:8], "little")
            out[i] = np.random.default_rng(seed).standard_normal(self.dim)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_cache_forwards_identity(tmp_path):
    c = CachedEmbedder(FakeEmbedder("fake-x", 5), tmp_path)
    assert c.id == "fake-x" and c.dim == 5 and isinstance(c, Embedder)
    assert c.embed([]).shape == (0, 5)
    assert c.inner.calls == []


def test_cache_second_call_no_inner_call(tmp_path):
    inner = FakeEmbedder()
    c = CachedEmbedder(inner, tmp_path)
    texts = ["alpha", "beta", "gamma"]
    first = c.embed(texts)
    assert inner.calls == [texts] and (c.hits, c.misses) == (0, 3)
    second = c.embed(texts)
    assert len(inner.calls) == 1 and (c.hits, c.misses) == (3, 3)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, FakeEmbedder().embed(texts), atol=0)
    # a mixed call sends only the new text, in one call
    mixed = c.embed(["beta", "delta", "alpha"])
    assert inner.calls[-1] == ["delta"] and len(inner.calls) == 2
    np.testing.assert_array_equal(mixed[[0, 2]], first[[1, 0]])


def test_cache_dedups_within_call(tmp_path):
    inner = FakeEmbedder()
    c = CachedEmbedder(inner, tmp_path)
    v = c.embed(["a", "b", "a", "a", "b", "c"])
    assert inner.calls == [["a", "b", "c"]]
    assert (c.hits, c.misses) == (3, 3)
    np.testing.assert_array_equal(v[0], v[2]) and np.testing.assert_array_equal(v[1], v[4])
    assert v.shape == (6, 8) and v.dtype == np.float32


def test_cache_persists_across_instances(tmp_path):
    c1 = CachedEmbedder(FakeEmbedder(), tmp_path)
    v1 = c1.embed(["persist me", "and me"])
    c1.close()
    inner2 = FakeEmbedder()
    c2 = CachedEmbedder(inner2, tmp_path)
    v2 = c2.embed(["and me", "persist me"])
    assert inner2.calls == [] and c2.hits == 2
    np.testing.assert_array_equal(v2, v1[::-1])


def test_cache_keys_depend_on_inner_id(tmp_path):
    a, b = FakeEmbedder("model-a"), FakeEmbedder("model-b")
    va = CachedEmbedder(a, tmp_path).embed(["same text"])
    cb = CachedEmbedder(b, tmp_path)
    vb = cb.embed(["same text"])
    assert b.calls == [["same text"]] and cb.misses == 1
    assert not np.allclose(va, vb)
    assert CachedEmbedder(a, tmp_path).key("t") != cb.key("t")


def test_cache_rejects_bad_inner_shape(tmp_path):
    class Broken(FakeEmbedder):
        def embed(self, texts):
            return super().embed(texts)[:-1]

    with pytest.raises(ValueError):
        CachedEmbedder(Broken(), tmp_path).embed(["a", "b"])


def test_cache_wraps_minilm(tmp_path, minilm):
    c = CachedEmbedder(minilm, tmp_path)
    v = c.embed(["cached minilm", "cached minilm"])
    np.testing.assert_allclose(v[0], minilm.embed(["cached minilm"])[0], atol=1e-6)
    assert (c.hits, c.misses) == (1, 1) and c.id == minilm.id


def _worker(cache_dir, start, q):
    c = CachedEmbedder(FakeEmbedder(), cache_dir)
    texts = [f"text {i}" for i in range(start, start + 300)]
    for i in range(0, 300, 30):
        c.embed(texts[i : i + 30])
    q.put(c.misses)


def test_cache_shared_by_processes(tmp_path):
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(tmp_path, s, q)) for s in (0, 150, 0)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert sum(q.get(timeout=5) for _ in procs) >= 450
    inner = FakeEmbedder()
    v = CachedEmbedder(inner, tmp_path).embed([f"text {i}" for i in range(450)])
    assert inner.calls == []
    np.testing.assert_array_equal(v, FakeEmbedder().embed([f"text {i}" for i in range(450)]))


def test_cache_pickles(tmp_path):
    c = CachedEmbedder(FakeEmbedder(), tmp_path)
    c.embed(["x"])
    clone = pickle.loads(pickle.dumps(c))
    clone.embed(["x"])
    assert clone.inner.calls == [["x"]]  # the copied inner saw only the first call: the second was a hit


# ---------------------------------------------------------------------------------------------------------
# OpenAI-compatible endpoint (local fake server)
# ---------------------------------------------------------------------------------------------------------
FAKE_DIM = 6


def fake_vector(text: str) -> list[float]:
    h = hashlib.sha256(text.encode()).digest()
    return [(b - 100) / 10.0 for b in h[:FAKE_DIM]]  # deterministic, not normalised


class FakeOpenAI(BaseHTTPRequestHandler):
    requests: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/embeddings":
            self.send_error(404)
            return
        type(self).requests.append({"body": body, "auth": self.headers.get("Authorization")})
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": fake_vector(t)} for i, t in enumerate(inputs)]
        payload = json.dumps(
            {
                "object": "list",
                "model": body["model"],
                "data": data[::-1],  # out of order
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture()
def fake_server():
    FakeOpenAI.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_openai_embedder(fake_server, monkeypatch):
    monkeypatch.setenv("FAKE_KEY", "sk-test")
    e = OpenAIEmbedder(model="fake-embed", base_url=fake_server, api_key_env="FAKE_KEY", dim=FAKE_DIM, batch_size=3)
    assert e.id == "openai:fake-embed" and e.dim == FAKE_DIM and isinstance(e, Embedder)
    texts = [f"text number {i}" for i in range(7)]
    v = e.embed(texts)
    assert v.shape == (7, FAKE_DIM) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    expected = np.array([fake_vector(t) for t in texts], dtype=np.float32)
    np.testing.assert_allclose(v, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-6)
    assert [r["body"]["input"] for r in FakeOpenAI.requests] == [texts[0:3], texts[3:6], texts[6:7]]
    assert all(r["body"]["model"] == "fake-embed" for r in FakeOpenAI.requests)
    assert FakeOpenAI.requests[0]["auth"] == "Bearer sk-test"
    assert e.embed([]).shape == (0, FAKE_DIM) and len(FakeOpenAI.requests) == 3


def test_openai_base_url_from_env_and_dim_check(fake_server, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", fake_server)
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    e = OpenAIEmbedder(model="m", api_key_env="NO_SUCH_KEY", dim=FAKE_DIM)  # local server: key optional
    assert e.base_url == fake_server
    assert e.embed(["a", ""]).shape == (2, FAKE_DIM)
    assert FakeOpenAI.requests[-1]["body"]["input"] == ["a", " "]
    with pytest.raises(ValueError, match="dim"):
        OpenAIEmbedder(model="m", api_key_env="NO_SUCH_KEY", dim=FAKE_DIM + 1).embed(["a"])


def test_openai_through_cache(fake_server, tmp_path):
    e = OpenAIEmbedder(model="m", base_url=fake_server, api_key_env="NO_SUCH_KEY", dim=FAKE_DIM)
    c = CachedEmbedder(e, tmp_path)
    c.embed(["x", "y", "x"])
    c.embed(["y", "x"])
    assert [r["body"]["input"] for r in FakeOpenAI.requests] == [["x", "y"]]
