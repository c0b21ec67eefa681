"""The client side of benchmarks/serve_load.py: closed-loop and open-loop load on memtune's REST server (loopback),
per-route latency percentiles, errors, and the adds each client saw acknowledged (for the crash check).

Closed loop: `clients` tasks, each one user (load-user-<i>), send one request at a time back to back (an add with
probability `add_share`, else a search of that user's memories) until the time is up: the server is saturated, so
the completed requests per second are its saturation throughput for this mix. Open loop: requests arrive at a fixed
offered rate (Poisson arrivals, a random user each), whatever the server does; latency counts from the scheduled
arrival, so a backlog shows in it (no coordinated omission). Every request has a timeout; every non-2xx answer or
transport failure is an error, counted by route.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import httpx
import numpy as np

ROUTES = ("add", "search")
SUBJECTS = ["I", "My sister", "My brother", "My friend Ana", "My neighbour", "My colleague Sam", "My dad", "My mum"]
DOINGS = [
    "went hiking near the lake",
    "started pottery classes",
    "adopted a grey cat",
    "moved to a flat in Denver",
    "finished a marathon",
    "read a book about whales",
    "took violin lessons",
    "painted the kitchen blue",
    "visited Paris for a week",
    "volunteered at the shelter",
    "planted tomatoes in the garden",
    "bought a second-hand bike",
]
WHENS = ["last weekend", "in May", "two years ago", "yesterday", "after work on Friday", "during the holidays"]


def user(i: int) -> str:
    return f"load-user-{i}"


def pair(n: int, rng: random.Random) -> list[dict]:
    """A distinct message pair (the heuristic extractor finds a fact in the user's sentence)."""
    who, what, when = rng.choice(SUBJECTS), rng.choice(DOINGS), rng.choice(WHENS)
    return [
        {"role": "user", "content": f"{who} {what} {when}, and it was number {n} on my list this year."},
        {"role": "assistant", "content": f"That sounds great! How did number {n} go?"},
    ]


def query(n: int, rng: random.Random) -> str:
    return f"What did {rng.choice(SUBJECTS).lower()} do {rng.choice(WHENS)}? (question {n})"


@dataclass
class Stats:
    latency: dict[str, list[float]] = field(default_factory=lambda: {r: [] for r in ROUTES})
    errors: dict[str, int] = field(default_factory=lambda: {r: 0 for r in ROUTES})
    error_kinds: dict[str, int] = field(default_factory=dict)
    acked: dict[str, list[dict]] = field(default_factory=dict)  # user -> acknowledged add events, in order
    in_flight: dict[str, bool] = field(default_factory=dict)  # user -> an add was sent and not answered
    seconds: float = 0.0

    def error(self, route: str, kind: str) -> None:
        self.errors[route] += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    def summary(self) -> dict:
        out: dict = {"seconds": round(self.seconds, 1), "routes": {}, "error_kinds": self.error_kinds}
        for r in ROUTES:
            ms = np.asarray(self.latency[r]) * 1000
            out["routes"][r] = {
                "ok": len(ms),
                "errors": self.errors[r],
                "per_s": round(len(ms) / self.seconds, 2) if self.seconds else 0.0,
                **{f"p{p}_ms": round(float(np.percentile(ms, p)), 1) if len(ms) else None for p in (50, 95, 99)},
            }
        total = sum(v["ok"] for v in out["routes"].values())
        out["total_per_s"] = round(total / self.seconds, 2) if self.seconds else 0.0
        return out


async def request(client: httpx.AsyncClient, stats: Stats, route: str, uid: str, n: int, rng: random.Random, t0: float):
    """One request; records its latency from `t0` (the send time, or the scheduled arrival) or an error."""
    try:
        if route == "add":
            stats.in_flight[uid] = True
            r = await client.post("/v1/memories", json={"messages": pair(n, rng), "user_id": uid})
        else:
            r = await client.post("/v1/memories/search", json={"query": query(n, rng), "user_id": uid, "top_k": 10})
    except httpx.HTTPError as e:
        stats.error(route, type(e).__name__)
        return
    if r.status_code // 100 != 2:
        stats.error(route, f"HTTP {r.status_code}")
        return
    stats.latency[route].append(time.perf_counter() - t0)
    if route == "add":
        stats.in_flight[uid] = False
        stats.acked.setdefault(uid, []).extend(r.json()["results"])


def _client(base: str, token: str, timeout: float) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=1024, max_keepalive_connections=1024)
    return httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=timeout, limits=limits
    )


async def closed_loop(
    base: str, token: str, clients: int, seconds: float, add_share: float, seed: int = 0, timeout: float = 30.0
) -> Stats:
    stats = Stats()
    end = time.perf_counter() + seconds

    async def one(i: int) -> None:
        rng, uid = random.Random(seed * 1000 + i), user(i)
        n = 0
        while time.perf_counter() < end:
            n += 1
            route = "add" if rng.random() < add_share else "search"
            await request(http, stats, route, uid, seed * 10**7 + i * 10**5 + n, rng, time.perf_counter())

    start = time.perf_counter()
    async with _client(base, token, timeout) as http:
        await asyncio.gather(*(one(i) for i in range(clients)))
    stats.seconds = time.perf_counter() - start
    return stats


async def open_loop(
    base: str,
    token: str,
    rate: float,
    seconds: float,
    add_share: float,
    users: int,
    seed: int = 1,
    timeout: float = 30.0,
    max_in_flight: int = 512,
) -> Stats:
    """Poisson arrivals at `rate` per second for `seconds`; at most `max_in_flight` requests open (beyond that an
    arrival is an error: "shed")."""
    stats, rng, tasks = Stats(), random.Random(seed), set()
    start = time.perf_counter()
    async with _client(base, token, timeout) as http:
        at, n = start, 0
        while at < start + seconds:
            at += rng.expovariate(rate)
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            n += 1
            route = "add" if rng.random() < add_share else "search"
            if len(tasks) >= max_in_flight:
                stats.error(route, "shed")
                continue
            uid = user(rng.randrange(users))
            task = asyncio.ensure_future(request(http, stats, route, uid, seed * 10**7 + n, random.Random(n), at))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*list(tasks))
    stats.seconds = time.perf_counter() - start
    return stats
