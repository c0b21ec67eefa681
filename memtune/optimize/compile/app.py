"""`memtune-compile`: compile one LLM stage with a DSPy optimiser against its stage metric (a Hydra app).

    memtune-compile stage=extractor optimizer=gepa lm=openai
    memtune-compile stage=decider optimizer=mipro lm=openai dataset=updates
    memtune-compile stage=answerer optimizer=bootstrap lm=openai judge=openai

The optimiser trains on examples of the tune conversations (trainset, and a disjoint valset MIPROv2 / GEPA select
on); the stage metric (optimize/compile/metrics.py) is reported before and after on examples of the held-out
conversations. The program state goes to <programs_dir>/<stage>/<name>.json with <name>.meta.json (optimizer,
trainset, metric before/after, LM, date), report.json to the run directory, and all of it to MLflow (the sweep's
tracking store, experiment memtune-compile). Select it with policy.<stage>.program=<name>.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm/mlflow hang offline without it

import dspy
import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ...policies.build import build_embedder
from ...policies.lm import make_lm
from ...policies.stages.programs import STAGES, save_program
from ..data.load import load_from_config
from ..data.locomo import resolve_path
from ..evaluation.app import configure_dspy_cache
from ..sweep.scoring import split_ids, subset
from .devsets import answer_examples, decision_examples, extraction_examples, sample
from .run import compile_stage, evaluate_stage
from .tasks import AnswerTask, DecisionTask, ExtractionTask
from .tracking import log_compile_run

PROMPT_KNOBS = {"extractor": ("instruction",), "decider": ("allowed_ops",), "answerer": ("instruction",)}


def build_student(cfg: DictConfig) -> dspy.Module:
    stage = str(cfg.stage)
    if stage not in STAGES:
        raise ValueError(f"stage={stage!r}: memtune-compile compiles one of {list(STAGES)}")
    student = instantiate(cfg.policy[stage])
    if not isinstance(student, dspy.Module):
        raise ValueError(
            f"policy.{stage} is {type(student).__name__}, not an LLM stage: compile the LLM variant "
            f"(policy=mem0_llm, or policy/{stage}=llm)"
        )
    return student


def build_sets(cfg: DictConfig, dataset) -> tuple[list, list, list, dict]:
    """(trainset, valset, report set, description): train and val from the tune conversations, disjoint; the
    report set from the held-out ones."""
    split = OmegaConf.create(
        {
            "dataset": cfg.dataset,
            "sweep": {"tune_conversations": cfg.tune_conversations, "holdout_conversations": cfg.holdout_conversations},
        }
    )
    tune, holdout = split_ids(split, dataset)
    if not holdout:
        raise ValueError("memtune-compile reports on held-out conversations: set holdout_conversations")
    stage = str(cfg.stage)
    if stage == "extractor":
        make = extraction_examples
    elif stage == "answerer":
        make = answer_examples
    else:
        labels = resolve_path(str(cfg.labels))
        belongs = json.loads(labels.read_text()).get("conversations_sha256")
        if belongs != dataset.sha256:
            raise ValueError(
                f"the decider's labels {labels} belong to the conversations with sha256 {str(belongs)[:12]}..., not to "
                f"dataset {cfg.dataset.name} ({dataset.sha256[:12]}...): run with dataset=updates"
            )

        def make(conversations):
            return decision_examples(conversations, labels, int(cfg.seed))

    pool = sample(make(subset(dataset, tune).conversations), None, int(cfg.seed))
    train, val = pool[: int(cfg.train_size)], pool[int(cfg.train_size) : int(cfg.train_size) + int(cfg.val_size)]
    report = sample(make(subset(dataset, holdout).conversations), int(cfg.report_size), int(cfg.seed))
    if not train or not report:
        raise ValueError(
            f"no {stage} examples in tune {tune} or held-out {holdout} conversations of {cfg.dataset.name}"
        )
    about = {
        "dataset": cfg.dataset.name,
        "sha256": dataset.sha256,
        "tune": tune,
        "holdout": holdout,
        "train": len(train),
        "val": len(val),
        "report": len(report),
        "seed": int(cfg.seed),
        "pool": len(pool),
    }
    return train, val, report, about


def build_task(cfg: DictConfig):
    stage = str(cfg.stage)
    if stage == "extractor":
        embedder = build_embedder(cfg, cfg.cache_dir)
        return ExtractionTask(embedder.embed, float(cfg.fact_match_cosine)), {"embedder": embedder.id}
    if stage == "decider":
        return DecisionTask(), {}
    judge = instantiate(cfg.judge) if cfg.get("judge") else None
    return AnswerTask(judge), {"judge": judge.lm.model if judge is not None else None}


def proposer(cfg: DictConfig) -> dspy.LM:
    """The task LM's endpoint with conf compile.yaml proposer_lm on top."""
    spec = cast(dict, OmegaConf.to_container(cfg.lm, resolve=True))
    over = {k: v for k, v in cast(dict, OmegaConf.to_container(cfg.proposer_lm, resolve=True)).items() if v is not None}
    spec.update(over)
    spec.pop("_target_", None)
    allowed = ("model", "api_base", "api_key_env", "temperature", "max_tokens", "cache", "num_retries", "timeout")
    return make_lm(**{k: v for k, v in spec.items() if k in allowed})


def run(cfg: DictConfig, out_dir: Path, lm: dspy.LM | None = None, proposer_lm: dspy.LM | None = None) -> dict:
    """Compile, score before/after, save, log. `lm` / `proposer_lm` (tests) replace the configured LMs."""
    t0 = time.perf_counter()
    configure_dspy_cache(cfg.cache_dir)
    if lm is None and not cfg.get("lm"):
        raise ValueError("memtune-compile needs a task LM: lm=openai (any OpenAI-compatible endpoint, OPENAI_BASE_URL)")
    lm = lm or instantiate(cfg.lm)
    proposer_lm = proposer_lm or (proposer(cfg) if cfg.optimizer.name in ("gepa", "mipro") else None)
    student = build_student(cfg)
    dataset = load_from_config(cfg.dataset)
    train, val, report_set, about = build_sets(cfg, dataset)
    task, task_about = build_task(cfg)
    threads = int(cfg.num_threads)
    optimizer = cast(dict, OmegaConf.to_container(cfg.optimizer, resolve=True))
    print(
        f"[compile] {cfg.stage} with {optimizer['name']}: train {len(train)}, val {len(val)}, report {len(report_set)}"
        f" examples ({about['tune']} / held out {about['holdout']})",
        flush=True,
    )
    with dspy.context(lm=lm):
        before = evaluate_stage(student, report_set, task, threads)
        print(f"[compile] before: {task.main} {before['score']:.4f} on {len(report_set)} held-out examples", flush=True)
        compiled = compile_stage(student, task, optimizer, train, val, proposer_lm=proposer_lm, num_threads=threads)
        after = evaluate_stage(compiled, report_set, task, threads)
    knobs = student.knobs
    meta = {
        "stage": str(cfg.stage),
        "optimizer": optimizer,
        "metric": {
            "name": task.main,
            "definition": "memtune/optimize/compile/metrics.py",
            **task_about,
            **({"fact_match_cosine": float(cfg.fact_match_cosine)} if cfg.stage == "extractor" else {}),
        },
        "trainset": about,
        "before": _public(before),
        "after": _public(after),
        "lm": getattr(lm, "model", str(lm)),
        "proposer_lm": getattr(proposer_lm, "model", None),
        "prompt_knobs": {k: getattr(knobs, k) for k in PROMPT_KNOBS[str(cfg.stage)]},
        "stage_knobs": OmegaConf.to_container(cfg.policy[str(cfg.stage)], resolve=True),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dspy": getattr(dspy, "__version__", ""),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    path = save_program(compiled, knobs.programs_dir, str(cfg.stage), str(cfg.name), meta)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {
        "name": str(cfg.name),
        "stage": str(cfg.stage),
        "program": str(path),
        **meta,
        "before_per_example": before["per_example"],
        "after_per_example": after["per_example"],
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    report["mlflow_run_id"] = log_compile_run(
        cfg.get("tracking"), str(cfg.name), meta, [path, path.with_suffix(".meta.json"), out_dir / "report.json"]
    )
    print(
        f"[compile] after:  {task.main} {after['score']:.4f} (tokens/example {before['tokens_per_example']:.0f} -> "
        f"{after['tokens_per_example']:.0f}); saved {path}"
    )
    if report["mlflow_run_id"]:
        print(f"[compile] MLflow run {report['mlflow_run_id']} (experiment {cfg.tracking.experiment})")
    print(f"[compile] use it: policy.{cfg.stage}.program={cfg.name}")
    return report


def _public(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "per_example"}


@hydra.main(config_path="pkg://memtune.conf", config_name="compile", version_base="1.3")
def main(cfg: DictConfig) -> None:
    logging.getLogger("LiteLLM").setLevel(logging.WARNING)  # Hydra's INFO root would print every LM call twice
    try:
        run(cfg, Path(HydraConfig.get().runtime.output_dir))
    except ValueError as err:  # a refused config is an answer, not a crash
        print(f"memtune-compile: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
