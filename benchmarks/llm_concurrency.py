"""Parallel LM calls against sequential ones: memtune-eval with policy=mem0_llm and an LLM judge on the LOCOMO dev split,
the LM a fake OpenAI-compatible server (benchmarks/fake_openai.py, its own process) that answers every call after
`--latency` seconds, once at lm.max_concurrency=16 and once at 1, in this one run.

    uv run python benchmarks/llm_concurrency.py                                   # whole dev split, 300 ms a call
    uv run python benchmarks/llm_concurrency.py --conversations conv-26 conv-30 --max-sessions 4 --latency 0.3
    uv run python benchmarks/llm_concurrency.py --dry-run                         # + the dry run's projection error

Prints both wall times and their ratio (target >= 6x), whether the two runs agree (scores per category, every
prediction and judge label, ops, memories, LM calls and tokens per phase: they must be identical), and the lower
bound on the parallel wall time: the sequential chain of the longest conversation ((1 extraction + its decision
calls) x latency; a conversation's decisions run one after another) plus its share of the answer and judge calls
((answers + judgements) / concurrency x latency). The concurrency-16 run goes first with a cold embedding cache; the
sequential run then reads every vector from that cache (identical vectors; the speed-up favours the sequential run).
Imports (nltk for BLEU, tiktoken's table) and Hydra composition happen before both timings.
With --dry-run, the dry run's projection of tokens and wall time (at 16) is compared with the measured parallel run.
The whole dev split at 300 ms takes about 40 minutes (the sequential run): use --conversations / --max-sessions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "fake_openai.py"), "--port", str(port), "--latency", str(latency)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/v1/models", timeout=1).read()
            return proc, url + "/v1"
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("the fake OpenAI server died on start") from None
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the fake OpenAI server did not answer in 30 s")


def stats(url: str) -> dict:
    return json.loads(urllib.request.urlopen(url.removesuffix("/v1") + "/stats", timeout=5).read())


def decision_chains(dataset) -> dict[str, int]:
    """Per conversation: the decision calls the fake server's extractions lead to (a pair whose extraction gives no
    fact makes no decision call), computed from the messages exactly as the extractor renders them."""
    from fake_openai import extract

    from memtune.optimize.evaluation.parallel import message_batches
    from memtune.policies.stages.extract import numbered

    return {
        c.sample_id: sum(1 for pair in message_batches(c)[0] if extract({"new_messages": json.dumps(numbered(pair))}))
        for c in dataset.conversations
    }


def comparable(summary: dict, frame) -> dict:
    """Everything that must not depend on concurrency."""
    cost = summary["cost"]
    phases = {
        part: {
            p: (r["calls"], r["prompt_tokens"], r["completion_tokens"], r["failures"])
            for p, r in ((cost.get(part) or {}).get("phases") or {}).items()
            if r.get("calls")
        }
        for part in ("ingest", "answer", "judge")
    }
    return {
        "scores": summary["scores"],
        "ops": cost["ops"],
        "memories_stored": cost["memories_stored"],
        "phases": phases,
        "usd": cost["usd"]["total"],
        "rows": frame.select("qid", "prediction", "judge", "f1", "evidence_recall").sort("qid").rows(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per LM call (default 0.3)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--conversations", nargs="+", default=None, help="default: every dev conversation")
    parser.add_argument("--max-sessions", type=int, default=None)
    parser.add_argument("--no-judge", action="store_true", help="no LLM judge (fewer calls)")
    parser.add_argument("--dry-run", action="store_true", help="also project the run first and report the error")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    from hydra import compose, initialize_config_dir

    from memtune.optimize.data.locomo import load_locomo, resolve_path
    from memtune.optimize.evaluation.app import run
    from memtune.optimize.sweep.app import CONF_DIR

    load_before = os.getloadavg()
    proc, url = start_server(args.latency)
    tmp = Path(tempfile.mkdtemp(prefix="memtune-llm-concurrency-"))
    try:
        base = [
            "policy=mem0_llm",
            "lm=openai",
            f"lm.api_base={url}",
            "lm.model=openai/gpt-4o-mini",  # priced as gpt-4o-mini (conf/lm/prices.yaml); the server is the fake
            "lm.cache=false",
            "ingest_cache=false",
            "progress=false",
            f"cache_dir={tmp / 'cache'}",
            f"dataset.max_sessions={args.max_sessions if args.max_sessions else 'null'}",
        ]
        if args.conversations:
            base.append(f"dataset.conversations=[{','.join(args.conversations)}]")
        if not args.no_judge:
            base += [
                "judge=openai",
                f"judge.lm.api_base={url}",
                "judge.lm.model=openai/gpt-4o-mini",
                "judge.lm.cache=false",
            ]
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfgs = {
                n: compose(config_name="eval", overrides=[*base, f"lm.max_concurrency={n}"])
                for n in (args.concurrency, 1)
            }
            dry_cfg = compose(
                config_name="eval", overrides=[*base, f"lm.max_concurrency={args.concurrency}", "dry_run=true"]
            )
        # the first use of BLEU imports nltk (and scipy), seconds on a busy machine, and tiktoken loads its table:
        # done here, outside both timings (the first run would pay it alone)
        from memtune.optimize.evaluation.metrics import bleu1, count_tokens

        bleu1("warm up", "warm up"), count_tokens("warm up")
        ds = cfgs[1].dataset
        dataset = load_locomo(resolve_path(ds.path), conversations=ds.conversations, max_sessions=ds.max_sessions)
        turns = {c.sample_id: len(c.turns()) for c in dataset.conversations}
        chains = decision_chains(dataset)
        projected = None
        if args.dry_run:
            (tmp / "dry").mkdir()
            t0 = time.perf_counter()
            projected = run(dry_cfg, tmp / "dry")
            projected["seconds_dry_run"] = round(time.perf_counter() - t0, 1)
        results, walls, seen, ingest_walls = {}, {}, {}, {}
        for n, cfg in cfgs.items():
            out = tmp / f"c{n}"
            out.mkdir()
            before = stats(url)
            t0 = time.perf_counter()
            summary = run(cfg, out)
            walls[n] = time.perf_counter() - t0
            ingest_walls[n] = summary["ingest"]["seconds"]
            import polars as pl

            results[n] = comparable(summary, pl.read_parquet(out / "questions.parquet"))
            after = stats(url)
            seen[n] = {"requests": after["requests"] - before["requests"], "peak_in_flight": after["peak_in_flight"]}
            print(f"concurrency {n:>2}: {walls[n]:8.1f} s, {seen[n]['requests']} LM requests", flush=True)
        load_after = os.getloadavg()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    par, seq = results[args.concurrency], results[1]
    identical = par == seq
    differs = [k for k in seq if par.get(k) != seq.get(k)]
    calls = seen[1]["requests"]
    answer_calls = sum(r[0] for r in seq["phases"]["answer"].values()) + sum(
        r[0] for r in seq["phases"].get("judge", {}).values()
    )
    longest = max(chains, key=chains.__getitem__)
    bound_ingest = (1 + chains[longest]) * args.latency
    bound_answer = answer_calls / args.concurrency * args.latency
    ratio = walls[1] / walls[args.concurrency]
    report = {
        "latency_s": args.latency,
        "conversations": list(turns),
        "turns": sum(turns.values()),
        "questions": len(seq["rows"]),
        "lm_requests_per_run": calls,
        "wall_seconds": {str(n): round(w, 1) for n, w in walls.items()},
        "ingest_seconds": {str(n): w for n, w in ingest_walls.items()},
        "ratio": round(ratio, 2),
        "identical": identical,
        "differs": differs,
        "lower_bound_seconds": {
            "longest_conversation": longest,
            "decision_calls": chains[longest],
            "ingest_chain": round(bound_ingest, 1),
            "answers_and_judgements": round(bound_answer, 1),
            "total": round(bound_ingest + bound_answer, 1),
        },
        "sequential_lm_seconds": round(calls * args.latency, 1),
        "server_peak_in_flight": seen[args.concurrency]["peak_in_flight"],
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "cpus": os.cpu_count(),
        "usd_per_run_at_gpt_4o_mini": seq["usd"],
    }
    if projected is not None:
        tokens = sum(r[1] + r[2] for part in par["phases"].values() for r in part.values())
        proj_tokens = (
            projected["projection"]["total"]["prompt_tokens"] + projected["projection"]["total"]["completion_tokens"]
        )
        wall = projected["wall"][str(args.concurrency)]["total_seconds"]
        report["dry_run"] = {
            "sample": projected["sample"],
            "projected_tokens": proj_tokens,
            "measured_tokens": tokens,
            "token_error": round((proj_tokens - tokens) / tokens, 4),
            "projected_usd": projected["projection"]["total"]["usd"],
            "measured_usd": par["usd"],
            "projected_wall_seconds": wall,
            "measured_wall_seconds": round(walls[args.concurrency], 1),
            "wall_error": round((wall - walls[args.concurrency]) / walls[args.concurrency], 4),
        }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    print(
        f"\n{args.latency * 1000:.0f} ms a call, {len(turns)} conversations ({report['turns']} turns), "
        f"{report['questions']} questions, {calls} LM calls a run: concurrency 1 {walls[1]:.1f} s, "
        f"{args.concurrency} {walls[args.concurrency]:.1f} s -> {ratio:.1f}x less wall time; lower bound at "
        f"{args.concurrency}: {bound_ingest + bound_answer:.1f} s (chain of {longest}: {chains[longest]} decisions); "
        f"results identical: {identical}; load average {load_before[0]:.1f} -> {load_after[0]:.1f} on {os.cpu_count()} cpus"
    )
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
