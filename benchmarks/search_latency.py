"""Search and add latency of a served policy: in-process `Memory` calls vs the same calls through the REST server,
for three retrievers over the same store, measured in the same run (arms):

* dense: `policy/retriever=cosine` (cosine top-k, no lever);
* hybrid: `policy/retriever=hybrid` (+ BM25 from LanceDB's full-text index, RRF-fused; the keyword search starts
  before the query is embedded and runs beside it: MemoryPolicy.start_keyword);
* default: `policy=mem0_offline` as shipped (conf/policy/retriever/offline.yaml: weighted hybrid fusion, the lexical
  reranker over 70 candidates, date boost, dedup 0.9, MMR 0.7; its cosine threshold 0.3 leaves nothing of the
  synthetic memories (random vectors) for those levers, so `default_nothreshold`, in-process only, is the same
  with `policy.retriever.threshold=null`: the levers' real work).

    uv run python benchmarks/search_latency.py                    # 10k and 100k memories (about 10-15 minutes)
    uv run python benchmarks/search_latency.py --sizes 10000 --queries 100 --adds 50     # quicker
    uv run python benchmarks/search_latency.py --rest-arms dense default                 # fewer REST servers

Per store size N: N synthetic memories in one user scope, written straight through the store (random unit 384-d
vectors, the real MiniLM dimension; texts of a few words from a 2,000-word vocabulary plus one of the queries'
topics, so keyword search has real posting lists to walk: a query's topic words match a twelfth of the rows and
"user" matches every row; one compaction afterwards, which builds the
ANN index past the store's `index_min_rows` and folds every row into the full-text index), then the offline
policy (`policy=mem0_offline`, MiniLM embedder, no embedding cache) with each arm's retriever over that store
(sharing the store in-process; one server process per arm for REST):

* search: `Memory.search(query, user_id=..., top_k=10)` on distinct queries (each embedded by MiniLM, then
  retrieved from N memories) in-process, then `POST /v1/memories/search` to a real uvicorn server (a separate
  process over the same store, the way it runs in production) through one keep-alive httpx client;
* add (dense arm): `Memory.add([user, assistant])` of distinct message pairs into the same scope (heuristic
  extraction, embed, s=10 similar memories, threshold decider, store write: no LM), in-process vs `POST /v1/memories`.

Latency is wall time per call on the client side, after warm-up. Both sides run one call at a time; the machine
may be shared, so the load average is printed, and in-process vs REST ratios are measured in the same run. Phases:
the policy's cost meter, plus `embed_query` (the query's embedding, timed here around the embedder); with hybrid
retrieval the keyword search overlaps the embedding and the dense product, so it is shown apart, not summed.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as memtune-serve runs (serve/__init__.py); before numpy loads
os.environ.setdefault("LANCE_CPU_THREADS", "1")  # as memtune-serve runs (serve/__init__.py)

import numpy as np
from latency_report import phase_means, report  # benchmarks/ is the script's folder
from rest_server import RestServer

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LANCE_LOG", "error")  # IVF training on synthetic rows warns about empty partitions

DIM = 384
USER = "bench-user"
WARMUP = 10


ARMS = {  # arm -> Hydra overrides on policy=mem0_offline
    "dense": ["policy/retriever=cosine"],
    "hybrid": ["policy/retriever=hybrid"],
    "default": [],  # as shipped: retriever/offline.yaml
    # the synthetic vectors are random, so no memory reaches the default's cosine threshold (0.3) and its reranker,
    # dedup and MMR get no candidates: this arm (in-process only by default) gives them the 70 they get in use
    "default_nothreshold": ["policy.retriever.threshold=null"],
}
REST_ARMS = ["dense", "hybrid", "default"]


def compose_cfg(arm: str = "dense"):
    from hydra import compose, initialize_config_module

    threads = (
        [f"+embedder.threads={os.environ['BENCH_EMBED_THREADS']}"] if os.environ.get("BENCH_EMBED_THREADS") else []
    )
    with initialize_config_module("memtune.conf", version_base="1.3"):
        return compose("eval", overrides=["policy=mem0_offline", "embedder=minilm", "lm=none", *ARMS[arm], *threads])


class TimedEmbedder:
    """The policy's embedder, its calls timed into the policy's cost meter as `embed_query` (Memory.search embeds
    the query outside the meter)."""

    def __init__(self, embedder, meter):
        self.inner, self.meter = embedder, meter
        self.id, self.dim = embedder.id, embedder.dim

    def embed(self, texts):
        with self.meter.timed("embed_query"):
            return self.inner.embed(texts)


def open_memory(store_uri: Path, arm: str = "dense"):
    """The offline policy with the arm's retriever over the store at `store_uri`, as a Memory (what a bundle of it
    would load)."""
    from memtune.policies.build import build_policy
    from memtune.policies.runtime.memory import Memory

    return Memory(build_policy(compose_cfg(arm), store_uri, cache_dir=None), bundle_version="bench")


def twin(memory, arm: str):
    """The same Memory with the arm's retriever, sharing its store (and mirror) and embedder; its own cost meter,
    and the query embedding timed into it."""
    import copy

    from hydra.utils import instantiate

    from memtune.policies.lm import CostMeter
    from memtune.policies.runtime.memory import Memory

    policy = copy.copy(memory.policy)
    policy.retriever = instantiate(compose_cfg(arm).policy.retriever)
    policy.meter = CostMeter()
    policy.embedder = TimedEmbedder(memory.policy.embedder, policy.meter)
    return Memory(policy, bundle_version="bench")


def fill_store(store_uri: Path, rows: int, seed: int = 0) -> float:
    """`rows` memories in one scope, written in batches through the store; returns seconds taken."""
    from hydra.utils import instantiate

    from memtune.policies.embed.minilm import MiniLMEmbedder
    from memtune.policies.store.changes import Change
    from memtune.policies.types import Scope

    cfg = compose_cfg("dense")
    store = instantiate(cfg.store, uri=str(store_uri), dim=DIM, embedder_id=MiniLMEmbedder().id)
    rng = np.random.default_rng(seed)
    vocabulary = [f"w{i}" for i in range(2000)]
    scope = Scope(user_id=USER)
    t0 = time.perf_counter()
    for start in range(0, rows, 10_000):
        n = min(10_000, rows - start)
        vecs = rng.normal(size=(n, DIM)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        store.apply(
            [
                Change(
                    "ADD",
                    f"synthetic memory {start + i}: the user mentioned topic {start + i}, "
                    f"{TOPICS[(start + i) % len(TOPICS)]} and {' '.join(rng.choice(vocabulary, 3))}",
                    vecs[i],
                    scope=scope,
                    provenance=(f"D{start + i}:1",),
                )
                for i in range(n)
            ]
        )
    store.compact()
    store.close()
    return time.perf_counter() - t0


TOPICS = [
    "hiking",
    "painting",
    "the new job",
    "her sister",
    "a trip to Paris",
    "adoption",
    "pottery",
    "the charity race",
    "camping",
    "a book she read",
    "music lessons",
    "the dog",
]


def queries(n: int, offset: int) -> list[str]:
    return [f"What did the user say about {TOPICS[i % len(TOPICS)]} in week {offset + i}?" for i in range(n)]


def pairs(n: int, offset: int) -> list[list[dict]]:
    return [
        [
            {
                "role": "user",
                "content": f"I finally finished the pottery class number {offset + i} last Tuesday "
                f"and made a blue bowl for my friend {offset + i}.",
            },
            {"role": "assistant", "content": f"That sounds lovely, how long did bowl {offset + i} take to make?"},
        ]
        for i in range(n)
    ]


def timed(fn, items) -> list[float]:
    out = []
    for item in items:
        t0 = time.perf_counter()
        fn(item)
        out.append(time.perf_counter() - t0)
    return out


def measure(store_uri: Path, n_queries: int, n_adds: int, rest_arms: list[str]) -> dict:
    """Searches alternate between in-process and REST and between the arms (all read-only, so they share the
    machine's noise); adds (dense arm) run in-process, then over REST with the in-process Memory closed (one writer
    per store at a time)."""
    memory = open_memory(store_uri)
    mems = {arm: twin(memory, arm) for arm in ARMS}
    servers = {arm: RestServer(store_uri, arm) for arm in rest_arms}
    local_search: dict[str, list[float]] = {arm: [] for arm in ARMS}
    rest_search: dict[str, list[float]] = {arm: [] for arm in rest_arms}
    topic_hits = dict.fromkeys(ARMS, 0)
    marks: dict[str, dict] = {}
    try:
        for i, q in enumerate(queries(n_queries + WARMUP, 0)):
            for arm, mem in mems.items():
                t0 = time.perf_counter()
                hits = mem.search(q, user_id=USER, top_k=10)
                t1 = time.perf_counter()
                if arm in servers:
                    servers[arm].post("/v1/memories/search", {"query": q + " ", "user_id": USER, "top_k": 10})
                t2 = time.perf_counter()
                if i >= WARMUP:
                    local_search[arm].append(t1 - t0)
                    if arm in servers:
                        rest_search[arm].append(t2 - t1)
                    topic = q.split("about ")[1].split(" in week")[0]  # hits naming it: the keyword side at work
                    topic_hits[arm] += sum(topic in h["memory"] for h in hits)
            if i == WARMUP - 1:
                marks = {a: {k: len(v.seconds) for k, v in m.policy.meter.phases.items()} for a, m in mems.items()}
    finally:
        for server in servers.values():
            server.close()
    phases = {arm: phase_means(m.policy.meter, marks[arm]) for arm, m in mems.items()}
    meter = memory.policy.meter
    for p in pairs(WARMUP, 10**6):
        memory.add(p, user_id=USER)
    add_marks = {k: len(v.seconds) for k, v in meter.phases.items()}
    local_add = timed(lambda p: memory.add(p, user_id=USER), pairs(n_adds, 0))
    add_phases = phase_means(meter, add_marks)
    memory.close()
    server = RestServer(store_uri)
    try:
        for p in pairs(WARMUP, 2 * 10**6):
            server.post("/v1/memories", {"messages": p, "user_id": USER})
        rest_add = timed(lambda p: server.post("/v1/memories", {"messages": p, "user_id": USER}), pairs(n_adds, 10**5))
    finally:
        server.close()
    return {
        "search": local_search,
        "search_rest": rest_search,
        "search_phases_ms": phases,
        "topic_hits": {arm: topic_hits[arm] / max(len(local_search[arm]), 1) for arm in ARMS},
        "add": local_add,
        "add_rest": rest_add,
        "add_phases_ms": add_phases,
    }


def serve(store_uri: str, port: int, arm: str = "dense") -> None:
    """The server side of the REST measurement (a subprocess): the REST app over the store, on loopback."""
    import uvicorn

    from memtune.serve.rest import create_app

    memory = open_memory(Path(store_uri), arm)
    uvicorn.run(create_app(memory, os.environ["MEMTUNE_API_TOKEN"]), host="127.0.0.1", port=port, log_level="warning")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--adds", type=int, default=100)
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--rest-arms", nargs="+", choices=list(ARMS), default=REST_ARMS, help="arms also over REST")
    ap.add_argument(
        "--embed-threads", type=int, help="onnxruntime threads of MiniLM (default: conf/embedder/minilm.yaml)"
    )
    ap.add_argument("--arm", choices=list(ARMS), default="dense", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.embed_threads is not None:  # the REST servers (subprocesses) read it too
        os.environ["BENCH_EMBED_THREADS"] = str(args.embed_threads)
    if args.serve:
        return serve(args.serve, args.port, args.arm)
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cpus, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    for rows in args.sizes:
        with tempfile.TemporaryDirectory(prefix="memtune-latency-") as tmp:
            store_uri = Path(tmp) / "store"
            fill_s = fill_store(store_uri, rows)
            report(rows, fill_s, measure(store_uri, args.queries, args.adds, args.rest_arms))
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
