"""Load and crash test of memtune-serve (REST, loopback only, bounded in time and count).

    uv run python benchmarks/serve_load.py                          # all phases (about 10 minutes on 2 cores)
    uv run python benchmarks/serve_load.py --memories 10000 --seconds 20 --llm-seconds 20     # quicker

1. An offline bundle (memtune-export policy=`--policy`, default mem0_offline: the tuned offline defaults, MiniLM,
   the production store settings; mem0_offline_v0: the defaults before issue 14, dense cosine search) and a store prefilled with `--memories` memories over the `--clients` users, written
   straight through the store (MemoryStore.apply in batches of 10k, then one compaction): MiniLM embeddings of
   `--base-texts` distinct template sentences, each memory the pair (a, b) of two of them: text "a; also b",
   vector a + 0.35 b (+ tiny noise), renormalised. Real MiniLM geometry (clusters, near-duplicates) at the cost of
   embedding a few thousand sentences instead of 100k (50-200 sentences/s on these 2 busy cores).
2. memtune-serve over it (a separate process), then a closed loop: `--clients` clients, one user each, mixing add
   (`--add-share`) and search back to back for `--seconds`: throughput, p50/p95/p99 per route, errors; the
   completed requests per second are the saturation throughput (load_clients.py).
3. An open loop at half that total throughput (Poisson arrivals, same mix) for `--seconds`: search p95 is the
   target (< 50 ms at 100k memories).
4. Crash: the closed loop again; after `--kill-after` s the server gets SIGKILL. Then: the store opens (read-only)
   at its last committed version; the restarted server opens it for writing (reconciling a half-written write,
   store/recover.py) and serves; every add the clients saw acknowledged is there with the acknowledged text (per
   user, the acknowledged events replayed in order), nothing half-written (history replays to the table).
5. The LLM bundle (policy=mem0_llm) against benchmarks/fake_openai.py with `--lm-latency` s per request, on a fresh
   store: the closed loop again; the fake server's peak in-flight requests show LM calls of different users
   running at once (the per-scope write locks).
The machine's load average is printed with every phase (other jobs may share the cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as memtune-serve runs (serve/__init__.py); before numpy loads
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LANCE_LOG", "error")

import httpx
import numpy as np
from load_clients import DOINGS, SUBJECTS, WHENS, closed_loop, open_loop, user  # benchmarks/ is the folder

TOKEN = "load-token-0123456789abcdef"
BIN = Path(sys.executable).parent


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def say(*parts) -> None:
    print(*parts, flush=True)


def export(out: Path, *overrides: str) -> Path:
    from memtune.optimize.export.app import export_from_overrides

    return Path(export_from_overrides([*overrides, f"out={out}", "tracking=none"])["bundle"])


def prefill(bundle: Path, store_uri: Path, memories: int, users: int, base_texts: int) -> dict:
    """`memories` memories over `users` users, written through the store with the bundle's settings."""
    from memtune.policies.embed.minilm import MiniLMEmbedder
    from memtune.policies.runtime.memory import Memory
    from memtune.policies.store.changes import Change
    from memtune.policies.types import Scope

    rng = np.random.default_rng(0)
    sentences = sorted({f"{s} {d} {w}" for s in SUBJECTS for d in DOINGS for w in WHENS})
    extra = [f"{s} talked about topic {i} {w}" for i, (s, w) in enumerate(zip(SUBJECTS * 10**4, WHENS * 10**4))]
    sentences = (sentences + extra)[:base_texts]
    t0 = time.perf_counter()
    base = MiniLMEmbedder().embed(sentences)
    embed_s = time.perf_counter() - t0
    memory = Memory.from_bundle(bundle, store_uri)
    store = memory.store
    t1 = time.perf_counter()
    for start in range(0, memories, 10_000):
        n = min(10_000, memories - start)
        i = rng.integers(0, len(sentences), n)
        j = (i + rng.integers(1, len(sentences), n)) % len(sentences)
        vecs = base[i] + 0.35 * base[j] + rng.normal(0, 0.01, size=(n, base.shape[1])).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        store.apply(
            [
                Change("ADD", f"{sentences[a]}; also {sentences[b].lower()}", v, scope=Scope(user(k % users)))
                for k, (a, b, v) in enumerate(zip(i, j, vecs), start)
            ]
        )
    store.compact()
    write_s = time.perf_counter() - t1
    rows = store.count()
    memory.close()
    return {"rows": rows, "base_texts": len(sentences), "embed_s": round(embed_s, 1), "write_s": round(write_s, 1)}


class Server:
    """memtune-serve over the store, in its own process on a free loopback port."""

    def __init__(self, bundle: Path, store_uri: Path, log: Path, env: dict | None = None):
        self.bundle, self.store_uri, self.log, self.env = bundle, store_uri, log, env or {}
        with __import__("socket").socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 600) -> float:
        t0 = time.perf_counter()
        args = [f"bundle={self.bundle}", f"store_uri={self.store_uri}", f"port={self.port}", "log_level=warning"]
        env = dict(os.environ, MEMTUNE_API_TOKEN=TOKEN, **self.env)
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen([str(BIN / "memtune-serve"), *args], env=env, stdout=log, stderr=log)
        while True:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"memtune-serve did not come up (see {self.log})")
            time.sleep(0.2)
        up = time.perf_counter() - t0
        self.warm_up()
        return up

    def warm_up(self) -> None:
        """One add and one search of a user no check reads: the first call loads the embedder, LiteLLM, DSPy."""
        auth = {"Authorization": f"Bearer {TOKEN}"}
        pair = [{"role": "user", "content": "My sister went hiking near the lake last weekend with her dog."}]
        for path, body in (("/v1/memories", {"messages": pair}), ("/v1/memories/search", {"query": "hiking?"})):
            httpx.post(f"{self.base}{path}", json={**body, "user_id": "warm-up"}, headers=auth, timeout=600)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.kill()


def show(name: str, summary: dict) -> None:
    say(f"  {name}: {summary['total_per_s']} req/s over {summary['seconds']} s; {load()}")
    for route, r in summary["routes"].items():
        say(
            f"    {route:6s} ok {r['ok']:6d}  {r['per_s']:7.2f}/s  p50 {r['p50_ms']} ms  p95 {r['p95_ms']} ms  "
            f"p99 {r['p99_ms']} ms  errors {r['errors']}"
        )
    if summary["error_kinds"]:
        say(f"    error kinds: {summary['error_kinds']}")


def run_closed(base: str, args, seconds: float, seed: int):
    return asyncio.run(closed_loop(base, TOKEN, args.clients, seconds, args.add_share, seed=seed))


def crash(server: Server, store_uri: Path, bundle: Path, args) -> dict:
    """Kill -9 the server under load, restart it, check acknowledged adds, half-written writes and the version."""
    from crash_check import check_after_restart, on_disk

    async def load_then_kill():
        task = asyncio.ensure_future(
            closed_loop(server.base, TOKEN, args.clients, args.kill_after + 5, args.add_share, seed=7)
        )
        await asyncio.sleep(args.kill_after)
        server.kill()
        return await task

    stats = asyncio.run(load_then_kill())
    acked = sum(len(v) for v in stats.acked.values())
    say(f"  killed (SIGKILL) after {args.kill_after} s of load: {acked} add events acknowledged; {load()}")
    before = on_disk(store_uri, bundle)
    say(f"  on disk after the kill: {before}")
    restart_s = server.start()
    say(f"  restarted and serving in {restart_s:.1f} s")
    result = check_after_restart(server.base, TOKEN, store_uri, bundle, stats, before)
    for k, v in result.items():
        say(f"    {k}: {v}")
    return {"acknowledged_events": acked, "before_restart": before, "restart_s": round(restart_s, 1), **result}


def llm_case(work: Path, args) -> dict:
    """The LLM bundle with a fake OpenAI server that sleeps --lm-latency s per request; fresh store."""
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fake = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "fake_openai.py"), "--port", str(port)]
        + ["--latency", str(args.lm_latency)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {"OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1", "OPENAI_API_KEY": "fake", "MEMTUNE_LM_MODEL": "fake"}
    os.environ.update(env)
    try:
        bundle = export(work / "llm-bundle", "policy=mem0_llm", "lm=openai")
        server = Server(bundle, work / "llm-store", work / "llm-server.log", env)
        say(f"  LLM bundle {bundle.name}; server up in {server.start():.1f} s; fake LM latency {args.lm_latency} s")
        try:
            stats = run_closed(server.base, args, args.llm_seconds, seed=11)
        finally:
            server.stop()
        lm_stats = httpx.get(f"http://127.0.0.1:{port}/stats", timeout=10).json()
    finally:
        fake.terminate()
        fake.wait(timeout=30)
    summary = stats.summary()
    show(f"LLM bundle, {args.clients} clients closed loop", summary)
    say(f"    fake LM: {lm_stats['requests']} requests, peak {lm_stats['peak_in_flight']} in flight at once")
    return {"closed_loop": summary, "fake_lm": lm_stats}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--memories", type=int, default=100_000)
    ap.add_argument("--base-texts", type=int, default=1500)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--add-share", type=float, default=0.25, help="the share of requests that are adds")
    ap.add_argument("--kill-after", type=float, default=15.0)
    ap.add_argument("--llm-seconds", type=float, default=60.0)
    ap.add_argument("--lm-latency", type=float, default=0.3)
    ap.add_argument("--skip-llm", action="store_true")
    ap.add_argument("--rate", type=float, help="open-loop offered req/s (default: half the closed loop's throughput)")
    ap.add_argument("--policy", default="mem0_offline", help="the offline bundle's policy preset (conf/policy/)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--workdir", type=Path, help="keep bundles, stores and server logs here (default: a temp dir)")
    args = ap.parse_args(argv)
    random.seed(0)
    say(f"python {platform.python_version()}, {os.cpu_count()} cpus, {load()}; {time.strftime('%Y-%m-%d %H:%M %Z')}")
    with tempfile.TemporaryDirectory(prefix="memtune-load-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        bundle, store_uri = export(work / "bundle", f"policy={args.policy}"), work / "store"
        out: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
        out["prefill"] = prefill(bundle, store_uri, args.memories, args.clients, args.base_texts)
        say(f"prefill: {out['prefill']}; {load()}")
        server = Server(bundle, store_uri, work / "server.log")
        out["start_s"] = round(server.start(), 1)
        say(f"offline bundle {bundle.name}: server up in {out['start_s']} s")
        try:
            closed = run_closed(server.base, args, args.seconds, seed=1).summary()
            show(f"closed loop, {args.clients} clients, add share {args.add_share}", closed)
            rate = args.rate or closed["total_per_s"] / 2
            opened = asyncio.run(open_loop(server.base, TOKEN, rate, args.seconds, args.add_share, args.clients))
            what = "as asked (--rate)" if args.rate else "half the saturation throughput"
            show(f"open loop at {rate:.1f} req/s offered ({what})", opened.summary())
            out["closed_loop"], out["open_loop"] = closed, {"offered_per_s": rate, **opened.summary()}
            out["crash"] = crash(server, store_uri, bundle, args)
        finally:
            server.stop()
        if not args.skip_llm:
            out["llm"] = llm_case(work, args)
    say(f"done; {load()}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
