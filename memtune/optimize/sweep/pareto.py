"""Which trials of a finished study are re-scored on the held-out conversations: the best trial, or a spread of
the Pareto front plus, per objective, the front trial best on it at no worse than the defaults on the others."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from .scoring import Objective


def pareto_front(study: optuna.Study, objectives: Sequence[Objective]) -> list[optuna.trial.FrozenTrial]:
    """The best trial, or the whole Pareto front sorted by the first objective; with sweep.constraints, of the
    trials that kept every limit (none: [])."""
    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return []
    if len(objectives) == 1:
        try:
            return [study.best_trial]
        except ValueError:  # no trial kept every limit of sweep.constraints (constraints.py)
            return []
    return sorted(study.best_trials, key=lambda t: (t.values[0], t.number))  # feasible trials only


def pick_for_heldout(
    front: list, objectives: Sequence[Objective], max_pareto: int, reference: Mapping[str, Any] | None
) -> dict[int, list[str]]:
    """Which front trials to re-score on the held-out conversations, and why: up to `max_pareto` (heldout.max_pareto)
    spread along the first objective, plus, against a reference (the `defaults` baseline on the tune split),
    for each objective the front trial best on it among those no worse than the reference on the others
    (e.g. the highest recall at no more context tokens than the defaults)."""
    why: dict[int, list[str]] = {}
    if len(objectives) == 1:
        return {front[0].number: ["best trial"]} if front else {}
    cap = int(max_pareto)
    spread = (
        front
        if len(front) <= cap
        else [front[i] for i in sorted({round(i * (len(front) - 1) / (cap - 1)) for i in range(cap)})]
        if cap > 1
        else []
    )
    for t in spread:
        why.setdefault(t.number, []).append("pareto (spread)")
    if reference:

        def no_worse(t, j):
            o, ref = objectives[j], reference.get(objectives[j].metric)
            if ref is None:
                return False
            return t.values[j] >= ref if o.direction == "maximize" else t.values[j] <= ref

        for i, o in enumerate(objectives):
            ok = [t for t in front if all(no_worse(t, j) for j in range(len(objectives)) if j != i)]
            if ok:
                sign = 1 if o.direction == "maximize" else -1
                best = max(ok, key=lambda t: (sign * t.values[i], -t.number))
                others = ", ".join(x.name for j, x in enumerate(objectives) if j != i)
                why.setdefault(best.number, []).append(f"best {o.name} at {others} no worse than defaults")
    return why
