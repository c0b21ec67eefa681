"""What a trial's MLflow run records from its summary.json: every numeric figure as a metric and the oracle flag
as a tag, under MLflow-safe names (tracking.py logs them)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from ...policies.lm import PhaseCost

_BAD = re.compile(r"[^A-Za-z0-9_\-./]")
# the summed fields of a phase's cost row: every PhaseCost field but the latency samples (a new field is merged
# across conversations and logged to MLflow without another list to keep in step)
COST_FIELDS = tuple(f.name for f in fields(PhaseCost) if f.name != "seconds")


def sanitize(name: str) -> str:
    """An MLflow-safe key: spaces and other characters become '_' ("1 multi-hop" -> "1_multi-hop")."""
    return _BAD.sub("_", name.strip())


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and value == value:  # not NaN
        return float(value)
    return None


def summary_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """Every numeric figure of a trial's summary.json, under MLflow-safe names:
    `<category>.<metric>` (overall.evidence_recall, 1_multi-hop.f1, ...), `cost.*`, `lm_requests.*`, `ingest.*`,
    `health.*` (duplicate_rate, stale_retrieval_rate, growth_slope, ...) and `currency.*` when present."""
    metrics: dict[str, float] = {}

    def put(name: str, value: Any) -> None:
        number = as_number(value)
        if number is not None:
            metrics[sanitize(name)] = number

    for category, row in summary.get("scores", {}).items():
        for name, value in row.items():
            put(f"{category}.{name}", value)
    cost = summary.get("cost", {})
    put("cost.memories_stored", cost.get("memories_stored"))
    put("cost.rejected_ops", cost.get("rejected_ops"))
    for op, n in (cost.get("ops") or {}).items():
        put(f"cost.ops.{op}", n)
    for part in ("ingest", "answer", "judge"):
        for phase, row in ((cost.get(part) or {}).get("phases") or {}).items():
            for name in COST_FIELDS:
                put(f"cost.{part}.{phase}.{name}", row.get(name))
        put(f"cost.{part}.lm_failures", len((cost.get(part) or {}).get("failures") or []) if cost.get(part) else None)
    for name, value in (cost.get("usd") or {}).items():  # dollars per phase, total, ingest, spent (None: unpriced)
        put(f"cost.usd.{name}", value)
    for name, value in (cost.get("tokens") or {}).items():
        put(f"cost.tokens.{name}", value)
    overall = summary.get("scores", {}).get("overall", {})
    put("cost.context_tokens", overall.get("context_tokens"))
    for name, value in flatten(summary.get("lm_requests", {})).items():
        put(f"lm_requests.{name}", value)
    ingest = summary.get("ingest", {})
    for name in ("turns", "message_pairs", "seconds", "turns_per_s", "cache_hit_rate", "seconds_this_run"):
        put(f"ingest.{name}", ingest.get(name))
    for block in ("health", "currency"):  # memory health and knowledge-update currency (lists such as growth skipped)
        for name, value in flatten(summary.get(block) or {}).items():
            put(f"{block}.{name}", value)
    put("wall_seconds", summary.get("wall_seconds"))
    put("oracle", bool(summary.get("oracle")))  # also the memtune.oracle tag (end_trial, summary_tags)
    return metrics


def summary_tags(summary: Mapping[str, Any]) -> dict[str, str]:
    """MLflow tags of a trial's summary.json: memtune.oracle (true/false) and, for an oracle, its stages."""
    stages = summary.get("oracle_stages") or {}
    tags = {"memtune.oracle": "true" if summary.get("oracle") else "false"}
    if stages:
        tags["memtune.oracle_stages"] = ", ".join(f"{k}={v}" for k, v in stages.items())
    return tags


def oracle_tags(metrics: Mapping[str, float] | None) -> dict[str, str]:
    """The memtune.oracle tag from the `oracle` metric of `summary_metrics` (what `end_trial` receives)."""
    if not metrics or "oracle" not in metrics:
        return {}
    return {"memtune.oracle": "true" if metrics["oracle"] else "false"}
