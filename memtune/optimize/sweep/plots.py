"""The study's plots for memtune-sweep's report (Optuna's matplotlib views): the Pareto front, and per objective
the optimisation history and the knob importances."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from .scoring import Objective


def _value_of(i: int) -> Callable[[optuna.trial.FrozenTrial], float]:
    """A trial's i-th objective value (the `target` of Optuna's plots of one objective of a multi-objective study)."""
    return lambda t: t.values[i]


def make_plots(study: optuna.Study, objectives: Sequence[Objective], out: Path) -> list[Path]:
    """Optimisation history, Pareto front (2+ objectives) and parameter importances as PNG (matplotlib)."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    out.mkdir(parents=True, exist_ok=True)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if len(complete) < 2:
        return []
    jobs: list[tuple[str, Callable[[], Any]]] = []
    names = [o.name for o in objectives]
    if len(objectives) >= 2:
        jobs.append(("pareto_front.png", lambda: ovm.plot_pareto_front(study, target_names=names[:3])))
    for i, o in enumerate(objectives):
        target = _value_of(i) if len(objectives) > 1 else None
        jobs.append(
            (
                f"history_{o.name}.png",
                partial(ovm.plot_optimization_history, study, target=target, target_name=o.name),
            )
        )
        jobs.append(
            (
                f"importances_{o.name}.png",
                partial(ovm.plot_param_importances, study, target=target, target_name=o.name),
            )
        )
    written = []
    for name, job in jobs:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax: Any = job()  # one Axes, or an array of them
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(9, 6)
            fig.tight_layout()
            fig.savefig(out / name, dpi=80)
            plt.close(fig)
            written.append(out / name)
        except Exception as err:  # e.g. importances need varying knobs
            print(f"[sweep] plot {name} skipped: {type(err).__name__}: {err}")
    return written
