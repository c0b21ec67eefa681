"""The `memtune-eval` run directories `memtune-report` reads: the metric columns, loading and validation."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ..data.types import CATEGORY_NAMES
from ..evaluation.oracle import oracle_label, summary_oracle

# Per-question columns that hold scores. Nulls are allowed only where the eval writes them on purpose.
QUALITY_METRICS = ("f1", "f1_squad", "bleu1", "evidence_recall", "judge", "abstained")
COST_METRICS = ("context_tokens",)
NULLABLE = {"evidence_recall": "the question has no evidence", "judge": "J is not defined for it (no judge, cat 5)"}
# LM failures, counted apart (a failed answer is scored 0 and is no abstention; a failed judgement counts WRONG)
FAILURE_COLUMNS = ("answer_failed", "judge_failed")
# conversation_id: the CIs resample conversations, then questions within them (optimize/report/stats.py)
REQUIRED_COLUMNS = ("qid", "conversation_id", "category", *QUALITY_METRICS, *COST_METRICS, *FAILURE_COLUMNS)
# Category 5 (adversarial) has no gold answer (the eval sets it to ''): F1/BLEU/J are undefined there,
# abstaining is the right answer. Evidence recall still scores retrieval of the turns the question is about.
ADVERSARIAL_METRICS = ("abstained", "evidence_recall", "context_tokens")
ANSWER_METRICS = ("f1", "f1_squad", "bleu1", "evidence_recall", "judge", "abstained", "context_tokens")
LABELS = {
    "f1": "F1",
    "f1_squad": "F1 (SQuAD)",
    "bleu1": "BLEU-1",
    "evidence_recall": "evidence recall",
    "judge": "J (judge)",
    "abstained": "abstained",
    "context_tokens": "context tokens",
}


@dataclass
class Run:
    path: Path
    label: str
    summary: dict
    questions: pl.DataFrame

    @property
    def policy(self) -> str:
        """The policy name; an oracle run (summary.json `oracle`) says so: 'mem0_offline [ORACLE: observations]'."""
        return oracle_label(str(self.summary["policy"]), self.oracle_stages)

    @property
    def oracle_stages(self) -> dict[str, str]:
        return summary_oracle(self.summary)

    @property
    def oracle(self) -> bool:
        return bool(self.oracle_stages)

    def has_judge(self) -> bool:
        return self.questions["judge"].is_not_null().any()


def _need(summary: dict, keys: tuple[str, ...], path: Path):
    """summary[k1][k2]...; a missing key fails naming it and the run dir."""
    node = summary
    for i, key in enumerate(keys):
        if not isinstance(node, dict) or key not in node:
            raise ValueError(
                f"{path}/summary.json has no {'.'.join(keys[: i + 1])!r} (was it written by an older memtune-eval?)"
            )
        node = node[key]
    return node


def load_run(run_dir: str | Path) -> tuple[dict, pl.DataFrame]:
    """Read and validate one run directory. Missing files, columns or unexpected nulls fail loudly."""
    path = Path(run_dir)
    for name in ("summary.json", "questions.parquet"):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path}: no {name} (expected a memtune-eval run directory)")
    summary = json.loads((path / "summary.json").read_text())
    _need(summary, ("policy",), path)
    frame = pl.read_parquet(path / "questions.parquet")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{path}/questions.parquet lacks column(s) {', '.join(map(repr, missing))}; "
            f"a report needs {', '.join(REQUIRED_COLUMNS)} (written by an older memtune-eval? run it again)"
        )
    if frame.height == 0:
        raise ValueError(f"{path}/questions.parquet has no questions")
    for col in (*QUALITY_METRICS, *COST_METRICS, *FAILURE_COLUMNS, "conversation_id"):
        if col in NULLABLE:
            continue
        nulls = frame[col].null_count()
        if nulls:
            raise ValueError(f"{path}/questions.parquet: column {col!r} has {nulls} null values")
    dupes = frame.height - frame["qid"].n_unique()
    if dupes:
        raise ValueError(f"{path}/questions.parquet: {dupes} duplicate qids")
    bad = sorted(set(frame["category"].unique().to_list()) - set(CATEGORY_NAMES))
    if bad:
        raise ValueError(f"{path}/questions.parquet: unknown categories {bad}")
    frame = frame.with_columns(pl.col(c).cast(pl.Float64) for c in (*QUALITY_METRICS, *COST_METRICS))
    return summary, frame


def load_runs(run_dirs: Sequence[str | Path]) -> list[Run]:
    loaded = [(Path(d), *load_run(d)) for d in run_dirs]
    names = [oracle_label(str(s["policy"]), summary_oracle(s)) for _, s, _ in loaded]
    labels = [f"{name} ({p.name})" for name, (p, _, _) in zip(names, loaded)]
    if len(set(labels)) < len(labels):  # e.g. Hydra's outputs/<date>/<time>: use two path parts
        labels = [f"{name} ({p.parent.name}/{p.name})" for name, (p, _, _) in zip(names, loaded)]
    if len(set(labels)) < len(labels):
        labels = [f"{label} #{i + 1}" for i, label in enumerate(labels)]
    return [Run(p, label, s, q) for (p, s, q), label in zip(loaded, labels)]
