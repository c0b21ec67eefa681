"""Search and add latency of a served policy: in-process `Memory` calls vs the same calls through the REST server,
with dense retrieval and with hybrid retrieval (`policy/retriever=hybrid`: + BM25 from LanceDB's full-text index,
RRF-fused), measured in the same run.

    uv run python benchmarks/search_latency.py                    # 10k and 100k memories (about 10-15 minutes)
    uv run python benchmarks/search_latency.py --sizes 10000 --queries 100 --adds 50     # quicker

Per store size N: N synthetic memories in one user scope, written straight through the store (random unit 384-d
vectors, the real MiniLM dimension; texts of a few words from a 2,000-word vocabulary plus one of the queries'
topics, so keyword search has real posting lists to walk: a query's topic words match a twelfth of the rows and
"user" matches every row; one compaction afterwards, which builds the
ANN index past the store's `index_min_rows` and folds every row into the full-text index), then the default offline
policy (`policy=mem0_offline`, MiniLM embedder, no embedding cache) over that store, and the same policy with
`policy/retriever=hybrid` (sharing the store in-process; its own server process for REST):

* search: `Memory.search(query, user_id=..., top_k=10)` on distinct queries (each embedded by MiniLM, then
  retrieved from N memories) in-process, then `POST /v1/memories/search` to a real uvicorn server (a separate
  process over the same store, the way it runs in production) through one keep-alive httpx client;
* add: `Memory.add([user, assistant])` of distinct message pairs into the same scope (heuristic extraction,
  embed, s=10 similar memories, threshold decider, store write: no LM), in-process vs `POST /v1/memories`.

Latency is wall time per call on the client side, after warm-up. Both sides run one call at a time; the machine
may be shared, so the load average is printed, and in-process vs REST ratios are measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as memtune-serve runs (serve/__init__.py); before numpy loads

import numpy as np
from latency_report import phase_means, report  # benchmarks/ is the script's folder

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LANCE_LOG", "error")  # IVF training on synthetic rows warns about empty partitions

DIM = 384
USER = "bench-user"
TOKEN = "bench-token-0123456789abcdef"
WARMUP = 10


def compose_cfg(hybrid: bool = False):
    from hydra import compose, initialize_config_module

    extra = ["policy/retriever=hybrid"] if hybrid else []
    with initialize_config_module("memtune.conf", version_base="1.3"):
        return compose("eval", overrides=["policy=mem0_offline", "embedder=minilm", "lm=none", *extra])


def open_memory(store_uri: Path, hybrid: bool = False):
    """The offline policy over the store at `store_uri`, as a Memory (what a bundle of it would load)."""
    from memtune.policies.build import build_policy
    from memtune.policies.runtime.memory import Memory

    return Memory(build_policy(compose_cfg(hybrid), store_uri, cache_dir=None), bundle_version="bench")


def hybrid_twin(memory):
    """The same Memory with the hybrid retriever, sharing its store (and mirror) and embedder; its own cost meter."""
    import copy

    from hydra.utils import instantiate

    from memtune.policies.lm import CostMeter
    from memtune.policies.runtime.memory import Memory

    policy = copy.copy(memory.policy)
    policy.retriever = instantiate(compose_cfg(True).policy.retriever)
    policy.meter = CostMeter()
    return Memory(policy, bundle_version="bench")


def fill_store(store_uri: Path, rows: int, seed: int = 0) -> float:
    """`rows` memories in one scope, written in batches through the store; returns seconds taken."""
    from hydra.utils import instantiate

    from memtune.policies.embed.minilm import MiniLMEmbedder
    from memtune.policies.store.changes import Change
    from memtune.policies.types import Scope

    cfg = compose_cfg()
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RestServer:
    """memtune's REST app over the store in a separate process (uvicorn on loopback), and a keep-alive client."""

    def __init__(self, store_uri: Path, hybrid: bool = False):
        import httpx

        port = free_port()
        env = dict(os.environ, MEMTUNE_API_TOKEN=TOKEN)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                str(store_uri),
                "--port",
                str(port),
                *(["--hybrid"] if hybrid else []),
            ],
            env=env,
        )
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
        )
        deadline = time.time() + 300
        while True:
            try:
                if self.client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                self.close()
                raise RuntimeError(f"the REST server on port {port} did not come up")
            time.sleep(0.2)

    def post(self, path: str, payload: dict):
        r = self.client.post(path, json=payload)
        r.raise_for_status()
        return r.json()

    def close(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(timeout=60)


def measure(store_uri: Path, n_queries: int, n_adds: int) -> dict:
    """Searches alternate between in-process and REST, dense and hybrid (all read-only, so the four share the
    machine's noise); adds run in-process, then over REST with the in-process Memory closed (one writer per store
    at a time)."""
    memory = open_memory(store_uri)
    hybrid = hybrid_twin(memory)
    servers = {"dense": RestServer(store_uri), "hybrid": RestServer(store_uri, hybrid=True)}
    local_search: dict[str, list[float]] = {"dense": [], "hybrid": []}
    rest_search: dict[str, list[float]] = {"dense": [], "hybrid": []}
    hybrid_hits = 0
    meter = memory.policy.meter
    try:
        for i, q in enumerate(queries(n_queries + WARMUP, 0)):
            for mode, mem in (("dense", memory), ("hybrid", hybrid)):
                t0 = time.perf_counter()
                hits = mem.search(q, user_id=USER, top_k=10)
                t1 = time.perf_counter()
                servers[mode].post("/v1/memories/search", {"query": q + " ", "user_id": USER, "top_k": 10})
                t2 = time.perf_counter()
                if i >= WARMUP:
                    local_search[mode].append(t1 - t0)
                    rest_search[mode].append(t2 - t1)
                    if mode == "hybrid":  # hits naming the query's topic: the keyword side at work
                        hybrid_hits += sum(q.split("about ")[1].split(" in week")[0] in h["memory"] for h in hits)
            if i == WARMUP - 1:
                marks = {k: len(v.seconds) for k, v in meter.phases.items()}
                hmarks = {k: len(v.seconds) for k, v in hybrid.policy.meter.phases.items()}
    finally:
        for server in servers.values():
            server.close()
    hybrid_phases = phase_means(hybrid.policy.meter, hmarks)
    search_phases = phase_means(meter, marks)
    for p in pairs(WARMUP, 10**6):
        memory.add(p, user_id=USER)
    marks = {k: len(v.seconds) for k, v in meter.phases.items()}
    local_add = timed(lambda p: memory.add(p, user_id=USER), pairs(n_adds, 0))
    add_phases = phase_means(meter, marks)
    memory.close()
    server = RestServer(store_uri)
    try:
        for p in pairs(WARMUP, 2 * 10**6):
            server.post("/v1/memories", {"messages": p, "user_id": USER})
        rest_add = timed(lambda p: server.post("/v1/memories", {"messages": p, "user_id": USER}), pairs(n_adds, 10**5))
    finally:
        server.close()
    return {
        "local": {
            "search": local_search["dense"],
            "search_hybrid": local_search["hybrid"],
            "add": local_add,
            "search_phases_ms": search_phases,
            "search_hybrid_phases_ms": hybrid_phases,
            "add_phases_ms": add_phases,
            "hybrid_topic_hits": hybrid_hits / max(len(local_search["hybrid"]), 1),
        },
        "rest": {"search": rest_search["dense"], "search_hybrid": rest_search["hybrid"], "add": rest_add},
    }


def serve(store_uri: str, port: int, hybrid: bool = False) -> None:
    """The server side of the REST measurement (a subprocess): the REST app over the store, on loopback."""
    import uvicorn

    from memtune.serve.rest import create_app

    memory = open_memory(Path(store_uri), hybrid)
    uvicorn.run(create_app(memory, os.environ["MEMTUNE_API_TOKEN"]), host="127.0.0.1", port=port, log_level="warning")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--adds", type=int, default=100)
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--hybrid", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        return serve(args.serve, args.port, args.hybrid)
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cpus, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    for rows in args.sizes:
        with tempfile.TemporaryDirectory(prefix="memtune-latency-") as tmp:
            store_uri = Path(tmp) / "store"
            fill_s = fill_store(store_uri, rows)
            result = measure(store_uri, args.queries, args.adds)
            report(rows, fill_s, result["local"], result["rest"])
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
