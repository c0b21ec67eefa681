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

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm/mlflow hang offline without it

import hydra
import polars as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from memtune.optimize.data import load_locomo, resolve_path
from memtune.optimize.evaluate import evaluate, score_table, summary_dict
from memtune.policies.build import build_policy


def configure_dspy_cache(cache_dir: str | Path) -> None:
    """Keep DSPy's LM cache under the project's cache dir so re-runs reproduce without calling the LM."""
    import dspy

    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True,
                         disk_cache_dir=str(Path(cache_dir) / "dspy"))


def run(cfg: DictConfig, out_dir: Path) -> dict:
    t_start = time.perf_counter()
    cache_dir = Path(cfg.cache_dir)
    configure_dspy_cache(cache_dir)
    ds = cfg.dataset
    dataset = load_locomo(resolve_path(ds.path), conversations=ds.conversations, max_sessions=ds.max_sessions,
                          max_questions=ds.max_questions)
    if dataset.report.entries:
        print(dataset.report.summary())
    policy = build_policy(cfg, store_uri=out_dir / "store", cache_dir=cache_dir)
    judge = instantiate(cfg.judge) if cfg.get("judge") else None
    frame, facts = evaluate(policy, dataset, judge=judge, progress=cfg.progress)
    table = score_table(frame, tuple(cfg.overall_categories))
    frame.write_parquet(out_dir / "questions.parquet")
    summary = {
        "policy": cfg.policy.name,
        "dataset": {"name": ds.name, "path": dataset.path, "sha256": dataset.sha256,
                    "conversations": [c.sample_id for c in dataset.conversations],
                    "questions": frame.height, "load_report": dataset.report.counts},
        "scores": summary_dict(table),
        "judge": ({"model": judge.lm.model, "cost": facts["judge"]} if judge else
                  {"model": None, "reason": "no judge LM configured: run with judge=openai to score J"}),
        "cost": {**facts["lm"], "memories_stored": facts["memories_stored"], "ops": facts["ops"]},
        "ingest": facts["ingest"],
        "lm_requests": facts["lm_requests"],
        "embedder": policy.embedder.id,
        "wall_seconds": round(time.perf_counter() - t_start, 2),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    shown = table.select(pl.concat_str("category", "category_name", separator=" ").alias("category"),
                         pl.exclude("category", "category_name", "n_with_evidence"))
    with pl.Config(tbl_rows=20, tbl_cols=12, float_precision=3, tbl_hide_dataframe_shape=True,
                   tbl_hide_column_data_types=True, tbl_width_chars=160):
        print(shown)
    print(f"memories stored: {facts['memories_stored']}  ops: {facts['ops']}  "
          f"ingest: {facts['ingest']['turns']} turns at {facts['ingest']['turns_per_s']} turns/s")
    return summary


@hydra.main(config_path="../conf", config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    run(cfg, out_dir)
    print(out_dir / "summary.json")


if __name__ == "__main__":
    main()
