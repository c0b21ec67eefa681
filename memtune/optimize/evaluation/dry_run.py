"""`dry_run=true`: what a run would cost before it starts. The first `dry_run_sample.pairs` message pairs and the
first `dry_run_sample.questions` questions of every conversation run for real against the configured LM (DSPy's
cache off, so every call is billed and measured; a fresh store, no ingestion cache), then projection.py scales
them to the whole dataset: LM calls, tokens, dollars at conf/lm/prices.yaml, and wall time at lm.max_concurrency.
Writes dry_run.json and prints a table; memtune-sweep uses the same per-conversation projection for its trials.
"""

from __future__ import annotations

import json
import resource
import shutil
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, cast

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ...policies.build import build_embedder, build_policy
from ...policies.lm import CostMeter
from ...policies.pipeline import CURRENT_PAIR, ScopeIngest
from ..data.types import Conversation, Dataset, Session
from .evaluate import conversation_scope, observations_by_turn
from .judge_checks import canary_counts, judge_concurrency
from .metrics import bleu1
from .parallel import answer_concurrency, ingest_parallel, lm_concurrency, message_batches
from .parallel_answers import answer_parallel
from .prices import load_prices, price_for, warn_missing
from .projection import ConversationCounts, Step, add_calls, project_answers, project_ingest, project_wall, totals


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class StepMeter(CostMeter):
    """A CostMeter that also keeps every LLM-stage step with the conversation and pair it was made for."""

    def __init__(self, conversation_of: dict | None = None):
        super().__init__()
        self.steps: list[Step] = []
        self.conversation_of = conversation_of or {}  # Scope -> conversation id
        self._steps_lock = threading.Lock()

    def record_lm_step(
        self, phase, elapsed, calls, cached_calls, prompt_tokens, completion_tokens, cached=0, replayed=(0, 0)
    ) -> None:
        super().record_lm_step(phase, elapsed, calls, cached_calls, prompt_tokens, completion_tokens, cached, replayed)
        at = CURRENT_PAIR.get()
        scope, pair = at if at is not None else (None, None)
        step = Step(phase, self.conversation_of.get(scope, ""), pair, calls, prompt_tokens, completion_tokens, cached)
        with self._steps_lock:
            self.steps.append(replace(step, seconds=elapsed))


def sample_conversation(conversation: Conversation, pairs: int, questions: int) -> Conversation:
    """The first `pairs` message pairs (as ingestion cuts them: never across sessions) and `questions` questions."""
    sessions, taken = [], 0
    for session in conversation.sessions:
        if taken >= pairs:
            break
        turns = session.turns[: 2 * (pairs - taken)]
        taken += (len(turns) + 1) // 2
        sessions.append(Session(session.index, session.timestamp, turns))
    return replace(conversation, sessions=tuple(sessions), questions=conversation.questions[:questions])


def dry_run(cfg: DictConfig, dataset: Dataset, out_dir: Path, progress: bool = True) -> dict:
    """Run the sample, project the whole `dataset`; returns (and writes to out_dir/dry_run.json) the projection."""
    spec = cfg.get("dry_run_sample") or {}
    n_pairs, n_questions = int(spec.get("pairs", 20)), int(spec.get("questions", 10))
    if n_pairs < 2 or n_questions < 1:
        raise ValueError(
            f"dry_run_sample needs pairs >= 2 and questions >= 1, got pairs={n_pairs}, questions={n_questions}"
        )
    cfg = _uncached(cfg)
    store_dir = out_dir / "dry_run_store"
    shutil.rmtree(store_dir, ignore_errors=True)
    policy = build_policy(cfg, store_dir, embedder=build_embedder(cfg, cfg.cache_dir))
    requested = n_pairs
    if policy.summarizer.enabled:  # two summary refreshes in the sample: their tokens per call are measured
        n_pairs = max(n_pairs, 2 * -(-int(policy.summarizer.knobs.window) // 2))
    samples = [sample_conversation(c, n_pairs, n_questions) for c in dataset.conversations]
    scopes = {conversation_scope(c): c.sample_id for c in dataset.conversations}
    meter = policy.meter = StepMeter(scopes)
    full = {
        c.sample_id: ScopeIngest(policy, message_batches(c)[0], conversation_scope(c)) for c in dataset.conversations
    }
    policy.embedder.embed(["warm up"]), bleu1("warm up", "warm up")  # load the model / nltk outside the CPU clock
    t0, cpu0 = time.perf_counter(), _cpu()
    concurrency = lm_concurrency(cfg)
    ingest_parallel(policy, samples, concurrency, conversation_scope, observations_by_turn, progress)
    ingest_seconds, cpu1 = time.perf_counter() - t0, _cpu()
    judge = instantiate(cfg.judge) if cfg.get("judge") else None
    answer_meter = StepMeter(scopes)
    policy.meter = answer_meter
    if judge is not None:
        judge.meter = answer_meter  # judge steps land beside the answers (phase "judge")
    rows = answer_parallel(policy, samples, judge, max(answer_concurrency(cfg), 1), progress)
    cpu2 = _cpu()
    counts = [_counts(c, s, full[c.sample_id], policy, rows) for c, s in zip(dataset.conversations, samples)]
    steps = [*meter.steps, *answer_meter.steps]
    top_k = getattr(getattr(policy.retriever, "knobs", None), "top_k", None)
    ingest = project_ingest(steps, counts)
    answers = project_answers(steps, counts, top_k)
    canaries = canary_counts(dataset, cfg) if judge is not None else {}  # judged after the answers
    answers = add_calls(answers, "judge", canaries, steps)
    latency = _latency(steps, spec.get("latency_s"))
    # the canaries run after the answers, judge.lm.max_concurrency at once
    serial = sum(canaries.values()) * latency.get("judge", 0.0) / judge_concurrency(cfg)
    # this process's CPU seconds (every thread: DSPy and HTTP per call, the embedder, the store) per pair / question
    cpu_pair = (cpu1 - cpu0) / max(sum(c.pairs_sampled for c in counts), 1)
    cpu_q = (cpu2 - cpu1) / max(len(rows), 1)
    together = policy.graph is None and not getattr(policy.extractor, "oracle", False)
    result = {
        "method": "projection.py: the sample's calls as they are, the rest at the steady state of the sample's "
        "second half (ingestion) or per question (answers, judge), answer prompts corrected to the full store's "
        "top-k; wall time = max(LM seconds / concurrency, longest decision chain, non-LM seconds)",
        "sample": {
            "pairs_per_conversation": n_pairs,  # at least two summary windows
            "pairs_requested": requested,
            "questions_per_conversation": n_questions,
            "pairs": sum(c.pairs_sampled for c in counts),
            "questions": len(rows),
            "seconds": round(time.perf_counter() - t0, 2),
            "ingest_seconds": round(ingest_seconds, 2),
            "cost": priced(totals(_actual(steps)), cfg, judge),
        },
        "dataset": {
            "conversations": [c.conversation for c in counts],
            "pairs": sum(c.pairs for c in counts),
            "questions": sum(c.questions for c in counts),
            "canaries": sum(canaries.values()),  # judge calls on canary answers (judge_checks.canaries)
        },
        "latency_s": latency,
        "cpu_seconds": {"per_pair": round(cpu_pair, 5), "per_question": round(max(cpu_q, 0.0), 5)},
        "conversations": [asdict(c) for c in counts],
        "per_conversation": {
            c.conversation: {"ingest": ingest[c.conversation], "answer": answers[c.conversation]} for c in counts
        },
        "projection": priced(_merge(totals(ingest), totals(answers)), cfg, judge),
        "wall": {
            str(n): project_wall(ingest, answers, counts, latency, cpu_pair, max(cpu_q, 0.0), n, together, serial)
            for n in sorted({1, concurrency})
        },
        "together": together,
    }
    policy.store.close()
    shutil.rmtree(store_dir, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "dry_run.json").write_text(json.dumps(result, indent=2))
    return result


def _uncached(cfg: DictConfig) -> DictConfig:
    """The config with DSPy's LM cache off (a cached answer bills no tokens, and the sample must measure them)."""
    cfg = cast(DictConfig, OmegaConf.create(OmegaConf.to_container(cfg, resolve=False)))
    if cfg.get("lm"):
        cfg.lm.cache = False
    if cfg.get("judge") and cfg.judge.get("lm"):
        cfg.judge.lm.cache = False
    return cfg


def _counts(conversation, sample, job: ScopeIngest, policy, rows: list[dict]) -> ConversationCounts:
    mine = [r for r in rows if r["conversation_id"] == conversation.sample_id]
    sampled_batches = message_batches(sample)[0]
    folds_sampled = sum(1 for i in job.fold_at if i < len(sampled_batches))
    judged = [q for q in conversation.questions if q.category in (1, 2, 3, 4)]
    return ConversationCounts(
        conversation=conversation.sample_id,
        pairs=len(job.batches),
        pairs_sampled=len(sampled_batches),
        folds=len(job.folds),
        folds_sampled=folds_sampled,
        questions=len(conversation.questions),
        questions_sampled=len(mine),
        judged=len(judged),
        judged_sampled=sum(1 for r in mine if r["judge"] is not None and not r["answer_failed"]),
        memories_sampled=policy.store.count(conversation_scope(conversation)),
        retrieved_sampled=statistics.fmean([r["n_retrieved"] for r in mine]) if mine else 0.0,
        context_tokens_sampled=statistics.fmean([r["context_tokens"] for r in mine]) if mine else 0.0,
    )


def _latency(steps: Sequence[Step], given: Any) -> dict[str, float]:
    """Seconds per LM call by phase: `given` for every phase, else the sample's median step time per call."""
    phases = sorted({s.phase for s in steps})
    if given is not None:
        return {p: float(given) for p in phases}
    return {
        p: round(statistics.median(s.seconds / max(s.calls, 1) for s in steps if s.phase == p and s.calls), 4)
        for p in phases
        if any(s.phase == p and s.calls for s in steps)
    }


def _actual(steps: Sequence[Step]) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {"sample": {}}
    for s in steps:
        row = out["sample"].setdefault(s.phase, {"calls": 0.0, "prompt_tokens": 0.0, "completion_tokens": 0.0})
        row.setdefault("cached_prompt_tokens", 0.0)
        row["calls"] += s.calls
        row["prompt_tokens"] += s.prompt_tokens
        row["completion_tokens"] += s.completion_tokens
        row["cached_prompt_tokens"] += s.cached_prompt_tokens
    return out


def _merge(*parts: dict[str, dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for part in parts:
        for phase, row in part.items():
            into = out.setdefault(phase, {})
            for k, v in row.items():
                into[k] = into.get(k, 0.0) + v
    return out


def priced(phases: dict[str, dict], cfg: DictConfig, judge) -> dict:
    """Per phase and in total: calls, tokens (rounded) and dollars (None for an unpriced model)."""
    prices = load_prices(cfg.get("prices"))
    lm_model = str(cfg.lm.model) if cfg.get("lm") else None
    judge_model = judge.lm.model if judge is not None else None
    out: dict[str, dict] = {}
    for phase, row in sorted(phases.items()):
        model = judge_model if phase == "judge" else lm_model
        price = price_for(model, prices)
        tokens = row["prompt_tokens"] + row["completion_tokens"]
        usd = (
            price.usd(int(row["prompt_tokens"]), int(row["completion_tokens"]), int(row["cached_prompt_tokens"]))
            if price
            else (0.0 if tokens == 0 else None)
        )
        if usd is None:
            warn_missing(str(model))
        out[phase] = {k: round(v) for k, v in row.items()} | {"usd": None if usd is None else round(usd, 4)}
    total = {k: sum(r[k] for r in out.values()) for k in ("calls", "prompt_tokens", "completion_tokens")}
    usds = [r["usd"] for r in out.values()]
    total["usd"] = None if any(u is None for u in usds) else round(sum(usds), 4)
    return {"phases": out, "total": total}


def table(result: dict) -> str:
    """The projection as printed by memtune-eval / memtune-sweep dry_run=true."""
    proj, sample = result["projection"], result["sample"]
    lines = [
        f"dry run: sampled {sample['pairs']} message pairs and {sample['questions']} questions "
        f"({sample['cost']['total']['calls']} LM calls, {_usd(sample['cost']['total']['usd'])}, {sample['seconds']} s); "
        f"projected for {result['dataset']['pairs']} pairs and {result['dataset']['questions']} questions:",
        f"{'phase':<16}{'LM calls':>10}{'prompt tok':>14}{'output tok':>12}{'USD':>10}",
    ]
    for phase, row in proj["phases"].items():
        lines.append(
            f"{phase:<16}{row['calls']:>10,}{row['prompt_tokens']:>14,}{row['completion_tokens']:>12,}{_usd(row['usd']):>10}"
        )
    t = proj["total"]
    lines.append(
        f"{'total':<16}{t['calls']:>10,}{t['prompt_tokens']:>14,}{t['completion_tokens']:>12,}{_usd(t['usd']):>10}"
    )
    for n, wall in result["wall"].items():
        lines.append(
            f"wall time at concurrency {n}: {_hms(wall['total_seconds'])} (ingest {_hms(wall['ingest_seconds'])}, "
            f"bound: {wall['ingest_bound']}; answer {_hms(wall['answer_seconds'])}, bound: {wall['answer_bound']})"
        )
    lines.append("latency per LM call (s): " + ", ".join(f"{p} {v}" for p, v in result["latency_s"].items()))
    return "\n".join(lines)


def _usd(value) -> str:
    return "n/a (no price)" if value is None else f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
    )
