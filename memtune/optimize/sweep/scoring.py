"""Scoring a config for memtune-sweep: objectives read from summary.json, the tune/holdout split, and the
per-conversation ingest + answer + score loop (pruning needs the objective after each conversation)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ...policies.lm import CostMeter
from ...policies.provenance import PROVENANCE_KEYS
from ..data.types import Dataset
from ..evaluation.app import build_summary
from ..evaluation.evaluate import METRICS, answer_questions, score_table
from ..evaluation.ingest_cache import prepare_policy
from ..evaluation.judge_checks import attach, build_judges, judge_checks
from ..evaluation.parallel import answer_concurrency
from .prefetch import prefetch_policies
from .run_record import COST_FIELDS


def get_path(summary: Mapping[str, Any], path: str) -> Any:
    """`scores.overall.f1` -> summary["scores"]["overall"]["f1"]; a missing key fails loudly."""
    node: Any = summary
    for i, part in enumerate(path.split(".")):
        if not isinstance(node, Mapping) or part not in node:
            where = ".".join(path.split(".")[:i]) or "<summary>"
            known = sorted(node) if isinstance(node, Mapping) else type(node).__name__
            raise KeyError(f"metric {path!r}: no {part!r} under {where} (has: {known})")
        node = node[part]
    return node


@dataclass(frozen=True)
class Objective:
    name: str
    metric: str
    direction: str

    def value(self, summary: Mapping[str, Any]) -> float:
        value = get_path(summary, self.metric)
        if value is None:
            raise ValueError(
                f"objective {self.name!r}: metric {self.metric} is null in this run "
                "(e.g. judge without a judge LM): pick another metric or configure it"
            )
        return float(value)


def objectives_from(cfg: DictConfig) -> list[Objective]:
    objectives = [Objective(str(o.name), str(o.metric), str(o.direction)) for o in cfg.sweep.objectives]
    if not objectives:
        raise ValueError("sweep.objectives is empty: name at least one metric path into summary.json")
    for o in objectives:
        if o.metric.startswith("judge_checks"):
            raise ValueError(
                f"objective {o.name!r}: {o.metric} reports on the judges (canaries, agreement), not on the policy; "
                "to optimise another judge's J make it the main one (e.g. judge.prompt=strict, scores.overall.judge)"
            )
        if o.direction not in ("maximize", "minimize"):
            raise ValueError(f"objective {o.name!r}: direction must be maximize or minimize, got {o.direction!r}")
    return objectives


def split_ids(cfg: DictConfig, dataset: Dataset) -> tuple[list[str], list[str]]:
    """(tune, holdout) conversation ids; they never overlap."""
    known = [c.sample_id for c in dataset.conversations]
    holdout = list(cfg.sweep.holdout_conversations or [])
    tune = (
        list(cfg.sweep.tune_conversations) if cfg.sweep.tune_conversations else [c for c in known if c not in holdout]
    )
    for cid in tune + holdout:
        if cid not in known:
            raise ValueError(f"sweep: conversation {cid!r} is not in dataset {cfg.dataset.name!r} (has: {known})")
    overlap = sorted(set(tune) & set(holdout))
    if overlap:
        raise ValueError(
            f"sweep: {overlap} are in both tune_conversations and holdout_conversations: a held-out "
            "score must come from conversations the sweep never tuned on"
        )
    if not tune:
        raise ValueError("sweep: no tune conversations")
    return tune, holdout


def subset(dataset: Dataset, ids: Sequence[str]) -> Dataset:
    return Dataset(
        conversations=[dataset.conversation(i) for i in ids],
        report=dataset.report,
        path=dataset.path,
        sha256=dataset.sha256,
    )


def merge_ingest(facts: Sequence[dict], ids: Sequence[str]) -> dict:
    """Ingestion facts of several conversations (each ingested and cached on its own) as one."""
    pairs = sum(f["message_pairs"] for f in facts)
    seconds = sum(f["seconds"] for f in facts)
    phases = _merge_phases(facts)
    for name, row in phases.items():  # percentiles do not add up: exact for one conversation only
        row["seconds_total"] = round(row["seconds_total"], 4)
        row["seconds_p50"] = facts[0]["cost"]["phases"][name].get("seconds_p50") if len(facts) == 1 else None
        row["seconds_p95"] = facts[0]["cost"]["phases"][name].get("seconds_p95") if len(facts) == 1 else None
    ops: dict[str, int] = {}
    for f in facts:
        for op, n in f["ops"].items():
            ops[op] = ops.get(op, 0) + n
    hits = [bool(f.get("cache_hit")) for f in facts]
    return {
        "turns": sum(f["turns"] for f in facts),
        "message_pairs": pairs,
        "seconds": round(seconds, 3),
        "turns_per_s": round(sum(f["turns"] for f in facts) / seconds, 2) if seconds else None,
        "memories_stored": sum(f["memories_stored"] for f in facts),
        "ops": ops,
        "rejected_ops": sum(f.get("rejected_ops", 0) for f in facts),
        "lm_requests_per_message_pair": {
            p: round(phases.get(p, {}).get("calls", 0) / pairs, 3) if pairs else None
            for p in ("extract", "summarize", "decide")
        },
        "cost": {"phases": phases, "failures": [x for f in facts for x in f["cost"].get("failures", [])]},
        "cache_hit": all(hits),
        # the ingestion phases this run paid for (cached conversations were paid by the run that ingested them)
        "cost_this_run": {"phases": _merge_phases([f for f, hit in zip(facts, hits) if not hit])},
        "cache_hit_rate": round(sum(hits) / len(hits), 3) if hits else None,
        "seconds_this_run": round(sum(f["seconds"] for f, hit in zip(facts, hits) if not hit), 3),
        "key": [f.get("key") for f in facts],
        "store": [f.get("store") for f in facts],
        **_merge_provenance(facts),
        # per conversation (evaluation/health.py); None when a conversation's facts predate them (an old ingest.json)
        "health": [h for f in facts for h in f["health"]] if all("health" in f for f in facts) else None,
        **_merge_graph(facts),
        "per_conversation": [
            {
                "conversation": cid,
                "key": f.get("key"),
                "cache_hit": f.get("cache_hit"),
                "memories_stored": f["memories_stored"],
                "seconds": f["seconds"],
            }
            for cid, f in zip(ids, facts)
        ],
    }


def _merge_phases(facts: Sequence[dict]) -> dict[str, dict]:
    """The cost rows (calls, tokens, ...) of several ingestions' phases, added up."""
    phases: dict[str, dict] = {}
    for f in facts:
        for name, row in f["cost"]["phases"].items():
            merged = phases.setdefault(name, {k: 0 for k in COST_FIELDS})
            for k in COST_FIELDS:
                merged[k] += row.get(k) or 0
    return phases


def _merge_provenance(facts: Sequence[dict]) -> dict:
    """Provenance facts of several conversations as one: the mean weighted by memories stored, the max, summed
    counts; None when a conversation's facts predate them (an old cached ingest.json)."""
    if not facts or any(k not in f for f in facts for k in PROVENANCE_KEYS):
        return {k: None for k in PROVENANCE_KEYS}
    stored = sum(f["memories_stored"] for f in facts)
    turns = sum((f["provenance_turns_mean"] or 0) * f["memories_stored"] for f in facts)
    maxes = [f["provenance_turns_max"] for f in facts if f["provenance_turns_max"] is not None]
    return {
        "provenance_turns_mean": round(turns / stored, 4) if stored else None,
        "provenance_turns_max": max(maxes, default=None),
        **{k: sum(f[k] for f in facts) for k in PROVENANCE_KEYS[2:]},
    }


def _merge_graph(facts: Sequence[dict]) -> dict:
    """Mem0g graph facts of several conversations as one: counts and bytes add up; growth rows stay per conversation."""
    graphs = [f["graph"] for f in facts if f.get("graph")]
    if not graphs:
        return {}
    merged = {
        k: (sum(g.get(k) or 0 for g in graphs) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
        for k, v in graphs[0].items()
    }
    growth = [row | {"conversation": i} for i, f in enumerate(facts) for row in f.get("graph_growth", [])]
    return {"graph": merged, "graph_growth": growth}


def evaluate_conversations(
    cfg: DictConfig, dataset: Dataset, ids: Sequence[str], out_dir: Path, on_step=None, prefetch: bool = False
) -> tuple[dict, pl.DataFrame]:
    """Ingest (cached per conversation) + answer + score `ids`, one conversation at a time.

    After conversation i, `on_step(i, summary_so_far)` runs (it may raise optuna.TrialPruned). Returns the
    summary (summary.json layout of memtune-eval) and the per-question frame, both over all of `ids`.
    `prefetch` (with an LM and lm.max_concurrency > 1): ingest every conversation at once first (prefetch.py)."""
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    judge = instantiate(cfg.judge) if cfg.get("judge") else None
    answer_meter = CostMeter()
    concurrency = answer_concurrency(cfg)
    rows: list[dict] = []
    facts: list[dict] = []
    embedder_id = ""
    summary: dict = {}
    frame = pl.DataFrame()

    def summarize(upto: Sequence[str]) -> dict:  # summary.json of the conversations answered so far
        return build_summary(
            cfg,
            subset(dataset, upto),
            frame,
            table,
            merged,
            answer_meter.as_dict(),
            judge,
            embedder_id,
            time.perf_counter() - t0,
        )

    prepared = prefetch_policies(cfg, {cid: subset(dataset, [cid]) for cid in ids}, out_dir) if prefetch else {}
    try:
        for i, cid in enumerate(ids):
            part = subset(dataset, [cid])
            if cid in prepared:
                policy, ingested = prepared.pop(cid)
            else:
                policy, ingested = prepare_policy(
                    cfg, part, out_dir / cid, progress=cfg.progress, use_cache=cfg.ingest_cache
                )
            policy.meter = answer_meter  # the answer phase of every conversation on one meter
            embedder_id = policy.embedder.id
            try:
                rows += answer_questions(
                    policy, part.conversations[0], judge=judge, progress=cfg.progress, max_concurrency=concurrency
                )
            finally:
                policy.store.close()
            facts.append(ingested)
            frame = pl.DataFrame(rows, schema_overrides={m: pl.Float64 for m in METRICS if m != "abstained"})
            table = score_table(frame, tuple(cfg.overall_categories))
            merged = merge_ingest(facts, ids[: i + 1])
            summary = summarize(ids[: i + 1])
            summary["ingest"].update({k: merged[k] for k in ("cache_hit_rate", "seconds_this_run", "per_conversation")})
            if on_step is not None:
                on_step(i, summary)
    finally:  # a pruned or failed trial: the prefetched stores it did not reach are closed too
        for other, _ in prepared.values():
            other.store.close()
    # the judges' checks (canaries, agreement) once over every conversation: they report on the judges, not the policy
    checks = judge_checks(frame, subset(dataset, ids), judge, build_judges(cfg, judge), cfg)[0]
    if checks is not None:  # the canaries' judge calls are part of what the trial cost (as in memtune-eval)
        ingest_facts = summary["ingest"]  # with the per-conversation facts added above
        summary = summarize(ids)
        summary["ingest"] = ingest_facts
    attach(summary, checks, cfg.get("prices"))
    return summary, frame


def write_outputs(out_dir: Path, summary: dict, frame: pl.DataFrame, cfg: DictConfig) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    frame.write_parquet(out_dir / "questions.parquet")
    (out_dir / "policy.json").write_text(json.dumps(OmegaConf.to_container(cfg.policy, resolve=True), indent=2))
    return [out_dir / "summary.json", out_dir / "questions.parquet", out_dir / "policy.json"]
