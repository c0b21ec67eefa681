"""Sweep constraints: limits on summary.json metrics a trial must respect to count as a result.

    sweep:
      constraints:
        - {metric: health.duplicate_rate, max: 0.05}
        - {metric: scores.overall.evidence_recall, min: 0.4}

Each limit becomes an Optuna constraint of the trial (`Trial.set_constraint`, Optuna 5's replacement of the
samplers' deprecated `constraints_func`): value - max, or min - value, so <= 0 is feasible. TPESampler and
NSGAIISampler read them (an infeasible trial never ranks among the good ones), and `study.best_trial` /
`best_trials`, hence the Pareto front memtune-sweep re-scores on held-out conversations, hold feasible trials only.
A constraint's metric also counts for which knobs are sampled (knob_deps.py), and the constraints are part of the
study's identity (a study cannot be resumed under other limits). A pruned trial gets the constraints of the
conversations it finished. A metric missing or null in a trial's summary fails the trial loudly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .scoring import get_path


@dataclass(frozen=True)
class Constraint:
    metric: str  # a path into summary.json, like an objective's
    max: float | None = None
    min: float | None = None

    @property
    def name(self) -> str:
        return f"{self.metric}<={self.max}" if self.max is not None else f"{self.metric}>={self.min}"

    def violation(self, summary: Mapping[str, Any]) -> float:
        """How far the trial is outside the limit (<= 0: feasible)."""
        value = get_path(summary, self.metric)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"constraint {self.name}: metric {self.metric} is {value!r} in this run, not a number")
        return float(value) - self.max if self.max is not None else float(self.min) - float(value)  # type: ignore[arg-type]


def constraints_from(cfg: DictConfig) -> list[Constraint]:
    """sweep.constraints as Constraints; a limit with both or neither of max / min, a non-number or an unknown key
    is refused naming the item."""
    raw = cfg.sweep.get("constraints") or []
    items = OmegaConf.to_container(raw, resolve=True) if OmegaConf.is_config(raw) else raw
    out = []
    for i, item in enumerate(items if isinstance(items, list) else [items]):
        where = f"sweep.constraints[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("metric"), str) or not item["metric"]:
            raise ValueError(f"{where}: give {{metric: <summary path>, max: <number>}} (or min), got {item!r}")
        unknown = sorted(set(item) - {"metric", "max", "min"})
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; a constraint has metric and max or min")
        limits = {k: item.get(k) for k in ("max", "min") if item.get(k) is not None}
        if len(limits) != 1:
            raise ValueError(f"{where} ({item['metric']}): give exactly one of max or min (two limits: two items)")
        ((key, bound),) = limits.items()
        if isinstance(bound, bool) or not isinstance(bound, (int, float)):
            raise ValueError(f"{where} ({item['metric']}): {key} must be a number, got {bound!r}")
        out.append(Constraint(item["metric"], **{key: float(bound)}))
    return out


def set_constraints(trial: Any, constraints: list[Constraint], summary: Mapping[str, Any]) -> dict[str, float]:
    """Record each constraint's violation on the Optuna trial; returns {name: violation}."""
    violations = {c.name: c.violation(summary) for c in constraints}
    for name, value in violations.items():
        trial.set_constraint(name, value)
    return violations
