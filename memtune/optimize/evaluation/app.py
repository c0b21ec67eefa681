"""`memtune-eval`: ingest + answer + score one policy on one dataset split (a Hydra app).

    memtune-eval                                   # default offline Mem0 policy on the LOCOMO dev split
    memtune-eval dataset=fixture                   # the tiny fixture
    memtune-eval dataset.path=/data/locomo10.json 'dataset.conversations=[conv-48]'
    memtune-eval policy=mem0_llm lm=openai         # any OpenAI-compatible endpoint (OPENAI_BASE_URL)

Writes questions.parquet and summary.json into the Hydra run directory and prints the summary's path last.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import cast

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm/mlflow hang offline without it

import hydra
import polars as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ...policies.provenance import PROVENANCE_KEYS
from ..data.load import load_from_config
from .currency import currency_summary
from .dry_run import dry_run
from .dry_run import table as dry_run_table
from .evaluate import BUDGET_METRICS, answer_all, score_table, summary_dict
from .health import health_summary
from .ingest_cache import prepare_policy
from .judge_checks import attach, build_judges, judge_checks, judge_checks_line
from .oracle import oracle_stages
from .parallel import answer_concurrency
from .prices import cost_figures


def configure_dspy_cache(cache_dir: str | Path) -> None:
    """Keep DSPy's LM cache under the project's cache dir so re-runs reproduce without calling the LM."""
    import dspy

    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=str(Path(cache_dir) / "dspy"))


def build_summary(
    cfg: DictConfig,
    dataset,
    frame: pl.DataFrame,
    table: pl.DataFrame,
    ingested: dict,
    answer_cost: dict,
    judge,
    embedder_id: str,
    wall_seconds: float,
) -> dict:
    """summary.json: scores per category, cost per phase, ingestion facts, the resolved config.
    Shared with memtune-sweep, whose trials write the same layout."""
    ds = cfg.dataset
    oracle = oracle_stages(cast(dict, OmegaConf.to_container(cfg.policy, resolve=True)))
    summary = {
        "policy": cfg.policy.name,
        # a stage reads the benchmark's annotations (policy/extractor=observations): not a policy, never report it
        # as the preset it was built from (optimize/evaluation/oracle.py)
        "oracle": bool(oracle),
        "oracle_stages": oracle,
        "dataset": {
            "name": ds.name,
            "path": dataset.path,
            "sha256": dataset.sha256,
            "conversations": [c.sample_id for c in dataset.conversations],
            "questions": frame.height,
            "load_report": dataset.report.counts,
        },
        "scores": summary_dict(table),
        "judge": (
            {
                "model": judge.lm.model,
                # J's denominator is scores.*.judge_n: judge failures and failed answers count as WRONG
                "failures_count_as": "WRONG",
            }
            if judge
            else {"model": None, "reason": "no judge LM configured: run with judge=openai to score J"}
        ),
        "cost": {
            "memories_stored": ingested["memories_stored"],
            "ops": ingested["ops"],
            "rejected_ops": ingested.get("rejected_ops", 0),
            "ingest": ingested["cost"],
            "answer": answer_cost,
            "judge": judge.meter.as_dict() if judge else None,
        },
        # "How many API requests are needed to create/update and to retrieve memories?"
        "lm_requests": {
            "per_message_pair": ingested["lm_requests_per_message_pair"],
            "per_query": {
                "answer": round(answer_cost["phases"].get("answer", {}).get("calls", 0) / max(frame.height, 1), 3)
            },
        },
        "ingest": {
            k: ingested.get(k)
            for k in ("turns", "message_pairs", "seconds", "turns_per_s", "cache_hit", "key", "store", *PROVENANCE_KEYS)
        },
        # memory health (health.py): duplicates, contradictions, stale retrievals, growth; and, for the
        # knowledge-update kinds (current / history / stable), whether the right memory is ranked first
        # (null when the ingestion facts predate them: an objective or constraint on health.* then fails loudly)
        "health": health_summary(ingested["health"], frame) if ingested.get("health") is not None else None,
        **({"currency": currency} if (currency := currency_summary(frame, ingested.get("health") or [])) else {}),
        "embedder": embedder_id,
        # Mem0g (policy.graph on/only): nodes, valid/invalid edges, bytes on disk after ingestion, growth per
        # session; graph context tokens and graph-only evidence recall per category are in `scores`
        **(
            {"graph": ingested["graph"], "graph_growth": ingested.get("graph_growth", [])}
            if ingested.get("graph")
            else {}
        ),
        "wall_seconds": round(wall_seconds, 2),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    # dollars per phase at conf/lm/prices.yaml (null for an unpriced model), and billed tokens: the config's total
    # and what this run paid (optimize/evaluation/prices.py)
    summary["cost"] |= cost_figures(cfg, ingested, summary["cost"], judge.lm.model if judge else None)
    return summary


def run(cfg: DictConfig, out_dir: Path) -> dict:
    t_start = time.perf_counter()
    configure_dspy_cache(cfg.cache_dir)
    ds = cfg.dataset
    dataset = load_from_config(ds)
    if dataset.report.entries:
        print(dataset.report.summary())
    if cfg.get("dry_run"):  # project the run from a sample instead (optimize/evaluation/dry_run.py)
        projected = dry_run(cfg, dataset, out_dir, progress=cfg.progress)
        print(dry_run_table(projected))
        return projected
    policy, ingested = prepare_policy(cfg, dataset, out_dir, progress=cfg.progress, use_cache=cfg.ingest_cache)
    judge = instantiate(cfg.judge) if cfg.get("judge") else None
    extra_judges = build_judges(cfg, judge)
    frame = answer_all(policy, dataset, judge=judge, progress=cfg.progress, max_concurrency=answer_concurrency(cfg))
    checks, canary_rows = judge_checks(frame, dataset, judge, extra_judges, cfg)
    table = score_table(frame, tuple(cfg.overall_categories))
    frame.write_parquet(out_dir / "questions.parquet")
    summary = build_summary(
        cfg,
        dataset,
        frame,
        table,
        ingested,
        policy.meter.as_dict(),
        judge,
        policy.embedder.id,
        time.perf_counter() - t_start,
    )
    attach(summary, checks, cfg.get("prices"))
    if canary_rows:
        pl.DataFrame(canary_rows).write_parquet(out_dir / "canaries.parquet")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    shown = table.select(
        pl.concat_str("category", "category_name", separator=" ").alias("category"),
        "n",
        "f1",
        "f1_squad",
        "bleu1",
        "evidence_recall",
        *BUDGET_METRICS,
        "judge",
        "context_tokens",
    )
    with pl.Config(
        tbl_rows=20,
        tbl_cols=14,
        float_precision=3,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
        tbl_width_chars=200,
    ):
        print(shown)
    overall = summary["scores"].get("overall", {})
    print(
        f"LM failures (scored 0, never abstentions): {int(overall.get('answer_failures') or 0)} answers; "
        + (
            f"J over {overall.get('judge_n')} questions: {overall.get('n_judged')} judged, "
            f"{overall.get('judge_failures')} judge failures (counted WRONG)"
            if judge
            else "J not scored (no judge LM)"
        )
    )
    if checks is not None:
        print(judge_checks_line(checks))
    if summary["oracle"]:
        print(f"ORACLE run ({summary['oracle_stages']}): reads the benchmark's annotations; not a policy")
    cached = " (reused from the ingestion cache)" if ingested["cache_hit"] else ""
    print(
        f"memories stored: {ingested['memories_stored']}  ops: {ingested['ops']}  ingest: {ingested['turns']} "
        f"turns at {ingested['turns_per_s']} turns/s{cached}"
    )
    return summary


@hydra.main(config_path="pkg://memtune.conf", config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    run(cfg, out_dir)
    print(out_dir / ("dry_run.json" if cfg.get("dry_run") else "summary.json"))


if __name__ == "__main__":
    main()
