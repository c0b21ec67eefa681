"""Search and add latency of a served policy: in-process `Memory` calls vs the same calls through the REST server.

    uv run python benchmarks/search_latency.py                    # 10k and 100k memories (about 5-8 minutes)
    uv run python benchmarks/search_latency.py --sizes 10000 --queries 100 --adds 50     # quicker

Per store size N: N synthetic memories in one user scope, written straight through the store (random unit 384-d
vectors, the real MiniLM dimension; one compaction afterwards, which builds the ANN index past the store's
`index_min_rows`), then the default offline policy (`policy=mem0_offline`, MiniLM embedder, no embedding cache)
over that store:

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

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LANCE_LOG", "error")  # IVF training on synthetic rows warns about empty partitions

DIM = 384
USER = "bench-user"
TOKEN = "bench-token-0123456789abcdef"
WARMUP = 10


def compose_cfg():
    from hydra import compose, initialize_config_module

    with initialize_config_module("memtune.conf", version_base="1.3"):
        return compose("eval", overrides=["policy=mem0_offline", "embedder=minilm", "lm=none"])


def open_memory(store_uri: Path):
    """The offline policy over the store at `store_uri`, as a Memory (what a bundle of it would load)."""
    from memtune.policies.build import build_policy
    from memtune.policies.runtime.memory import Memory

    return Memory(build_policy(compose_cfg(), store_uri, cache_dir=None), bundle_version="bench")


def fill_store(store_uri: Path, rows: int, seed: int = 0) -> float:
    """`rows` memories in one scope, written in batches through the store; returns seconds taken."""
    from hydra.utils import instantiate

    from memtune.policies.embed.minilm import MiniLMEmbedder
    from memtune.policies.store.changes import Change
    from memtune.policies.types import Scope

    cfg = compose_cfg()
    store = instantiate(cfg.store, uri=str(store_uri), dim=DIM, embedder_id=MiniLMEmbedder().id)
    rng = np.random.default_rng(seed)
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
                    f"synthetic memory {start + i}: the user mentioned topic {start + i}",
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


def queries(n: int, offset: int) -> list[str]:
    topics = [
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
    return [f"What did the user say about {topics[i % len(topics)]} in week {offset + i}?" for i in range(n)]


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


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) * 1e3


def timed(fn, items) -> list[float]:
    out = []
    for item in items:
        t0 = time.perf_counter()
        fn(item)
        out.append(time.perf_counter() - t0)
    return out


def phase_means(meter, marks: dict) -> dict:
    """Mean ms per step of each phase the policy's cost meter timed since `marks` (its step counts then)."""
    return {
        k: 1e3 * float(np.mean(v.seconds[marks.get(k, 0) :]))
        for k, v in meter.phases.items()
        if len(v.seconds) > marks.get(k, 0)
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RestServer:
    """memtune's REST app over the store in a separate process (uvicorn on loopback), and a keep-alive client."""

    def __init__(self, store_uri: Path):
        import httpx

        port = free_port()
        env = dict(os.environ, MEMTUNE_API_TOKEN=TOKEN)
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(store_uri), "--port", str(port)], env=env
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
    """Searches alternate between in-process and REST (both read-only, so the two share the machine's noise);
    adds run in-process, then over REST with the in-process Memory closed (one writer per store at a time)."""
    memory = open_memory(store_uri)
    server = RestServer(store_uri)
    local_search, rest_search = [], []
    meter = memory.policy.meter
    try:
        for i, q in enumerate(queries(n_queries + WARMUP, 0)):
            t0 = time.perf_counter()
            memory.search(q, user_id=USER, top_k=10)
            t1 = time.perf_counter()
            server.post("/v1/memories/search", {"query": q + " ", "user_id": USER, "top_k": 10})
            t2 = time.perf_counter()
            if i == WARMUP - 1:
                marks = {k: len(v.seconds) for k, v in meter.phases.items()}
            if i >= WARMUP:
                local_search.append(t1 - t0)
                rest_search.append(t2 - t1)
    finally:
        server.close()
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
            "search": local_search,
            "add": local_add,
            "search_phases_ms": search_phases,
            "add_phases_ms": add_phases,
        },
        "rest": {"search": rest_search, "add": rest_add},
    }


def serve(store_uri: str, port: int) -> None:
    """The server side of the REST measurement (a subprocess): the REST app over the store, on loopback."""
    import uvicorn

    from memtune.serve.rest import create_app

    memory = open_memory(Path(store_uri))
    uvicorn.run(create_app(memory, os.environ["MEMTUNE_API_TOKEN"]), host="127.0.0.1", port=port, log_level="warning")


def report(rows: int, fill_s: float, local: dict, rest: dict) -> None:
    print(f"\n== {rows:,} memories in one scope (store filled in {fill_s:.0f} s) ==")
    print(f"{'':28s} {'p50 ms':>8s} {'p95 ms':>8s} {'mean ms':>8s} {'n':>5s}")
    for name, xs in (
        ("search in-process", local["search"]),
        ("search REST", rest["search"]),
        ("add in-process", local["add"]),
        ("add REST", rest["add"]),
    ):
        print(f"{name:28s} {pct(xs, 50):8.2f} {pct(xs, 95):8.2f} {1e3 * np.mean(xs):8.2f} {len(xs):5d}")
    for what in ("search", "add"):
        r50 = pct(rest[what], 50) / pct(local[what], 50)
        r95 = pct(rest[what], 95) / pct(local[what], 95)
        extra = pct(rest[what], 50) - pct(local[what], 50)
        print(f"{what} REST / in-process: p50 x{r50:.2f}, p95 x{r95:.2f} (p50 +{extra:.2f} ms per call)")
    for what in ("search", "add"):
        timed_ms = local[f"{what}_phases_ms"]
        rest_ms = 1e3 * float(np.mean(local[what])) - sum(timed_ms.values())
        phases = ", ".join(f"{k} {v:.2f}" for k, v in sorted(timed_ms.items()))
        print(
            f"{what} in-process, mean ms per call by phase: {phases}, untimed {rest_ms:.2f}"
            + (" (embedding the query)" if what == "search" else "")
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--adds", type=int, default=100)
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        return serve(args.serve, args.port)
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
