"""OmegaConf resolvers the optimize configs use (registered when memtune.optimize is imported).

${memtune.quality_metric:${judge}}   scores.overall.judge when a judge LM is configured, else scores.overall.f1
                                     (conf/sweep/llm.yaml: "J when a judge LM is configured, else F1")
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

JUDGE_METRIC = "scores.overall.judge"
F1_METRIC = "scores.overall.f1"


def quality_metric(judge: Any) -> str:
    """The answer-quality metric a config can score: J with a judge LM, else mem0's F1."""
    return F1_METRIC if judge is None else JUDGE_METRIC


def register() -> None:
    OmegaConf.register_new_resolver("memtune.quality_metric", quality_metric, replace=True)
