"""One trial of memtune-sweep as Optuna's objective: knobs suggested by the search space, the trial's config
composed from the sweep's command line plus them, the tune conversations evaluated one at a time (each step
reported for pruning), outputs written and logged to MLflow; a trial past the n_trials cap fails as Surplus."""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from ..data.types import Dataset
from .constraints import Constraint, set_constraints
from .report import REPORT_METRICS, _maybe
from .run_record import flatten, summary_metrics
from .scoring import Objective, evaluate_conversations, write_outputs
from .search_space import SearchSpace
from .tracking import NullTracker
from .workers import FINISHED


class SweepState(Protocol):
    """What a trial reads of the study that runs it (study.Sweep)."""

    study: optuna.Study
    n_trials: int
    objectives: list[Objective]
    constraints: list[Constraint]
    space: SearchSpace
    not_sampled: dict[str, str]
    base_overrides: list[str]
    config_name: str
    dataset: Dataset
    tune: list[str]
    out_dir: Path
    tracker: NullTracker
    worker: str
    ran: list[int]

    def compose(self, overrides: Sequence[str]) -> DictConfig: ...


class Surplus(RuntimeError):
    """This trial started after the study already had n_trials finished or running trials (another worker)."""


def run_trial(sweep: SweepState, trial: optuna.Trial) -> float | list[float]:
    """One trial of the study (`Sweep.objective`): suggest the knobs, evaluate the tune conversations one by one
    (reporting each step for pruning), write and log the outputs; raises TrialPruned, Surplus or the trial's error."""
    trial.set_user_attr("worker", sweep.worker)
    sweep.ran.append(trial.number)
    ahead = [
        t
        for t in sweep.study.get_trials(deepcopy=False)
        if t.state in FINISHED or (t.state == TrialState.RUNNING and t.number < trial.number)
    ]
    if len(ahead) >= sweep.n_trials:
        trial.set_user_attr("surplus", True)
        raise Surplus(
            f"the study already has {len(ahead)} finished or earlier running trials "
            f"(n_trials={sweep.n_trials}): this one is not needed"
        )
    t0 = time.perf_counter()
    overrides = sweep.space.suggest(trial)
    trial.set_user_attr("overrides", overrides)
    inactive = "inactive: its `when:` condition did not hold in this trial"
    not_sampled = sweep.not_sampled | {k.target: inactive for k in sweep.space.knobs if k.param not in trial.params}
    trial.set_user_attr("not_sampled", not_sampled)  # memtune-export records it in the bundle
    # memtune-export re-composes the trial's config from these exactly as compose() does
    trial.set_user_attr("base_overrides", list(sweep.base_overrides))
    trial.set_user_attr("config_name", sweep.config_name)
    run_id = sweep.tracker.start_trial(
        trial.number, {**trial.params, "overrides": " ".join(overrides), "not_sampled": json.dumps(not_sampled)}
    )
    trial.set_user_attr("mlflow_run_id", run_id)
    trial_dir = sweep.out_dir / "trials" / f"{trial.number:04d}"
    single = len(sweep.objectives) == 1
    steps: list[dict] = []
    last: dict = {}

    def on_step(i: int, summary: dict) -> None:
        values = {o.name: o.value(summary) for o in sweep.objectives}
        steps.append(values)
        last["summary"] = summary
        sweep.tracker.log_step(run_id, i, {f"step.{k}": v for k, v in values.items()})
        if single:
            trial.report(values[sweep.objectives[0].name], i)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after {i + 1} of {len(sweep.tune)} tune conversations")

    cfg_t = None
    try:
        cfg_t = sweep.compose(overrides)
        summary, frame = evaluate_conversations(cfg_t, sweep.dataset, sweep.tune, trial_dir, on_step)
        values = [o.value(summary) for o in sweep.objectives]
        trial.set_user_attr("constraints", set_constraints(trial, sweep.constraints, summary))
        files = write_outputs(trial_dir, summary, frame, cfg_t)
        seconds = time.perf_counter() - t0
        trial.set_user_attr("seconds", round(seconds, 2))
        trial.set_user_attr("cache_hit_rate", summary["ingest"]["cache_hit_rate"])
        trial.set_user_attr("summary", str(trial_dir / "summary.json"))
        trial.set_user_attr("metrics", {m: _maybe(summary, m) for m in REPORT_METRICS})
        log_trial(sweep, run_id, "FINISHED", cfg_t, summary, files[1:], values, seconds)
        print(
            f"[sweep] trial {trial.number:3d} COMPLETE  "
            + "  ".join(f"{o.name}={v:.4g}" for o, v in zip(sweep.objectives, values))
            + f"  ({seconds:.1f} s, ingest cache {summary['ingest']['cache_hit_rate']:.0%})  {' '.join(overrides)}",
            flush=True,
        )
        return values[0] if single else values
    except optuna.TrialPruned:
        if last.get("summary") is not None:  # the limits over the conversations it finished
            trial.set_user_attr("constraints", set_constraints(trial, sweep.constraints, last["summary"]))
        seconds = time.perf_counter() - t0
        trial.set_user_attr("seconds", round(seconds, 2))
        log_trial(sweep, run_id, "KILLED", cfg_t, last.get("summary"), [], None, seconds, state="PRUNED")
        print(
            f"[sweep] trial {trial.number:3d} PRUNED after {len(steps)} conversation(s) "
            f"({seconds:.1f} s)  {' '.join(overrides)}",
            flush=True,
        )
        raise
    except Exception as err:
        error = f"{type(err).__name__}: {err}"
        trial.set_user_attr("error", error[:2000])
        trial.set_user_attr("traceback", traceback.format_exc()[-4000:])
        try:
            sweep.tracker.end_trial(run_id, "FAILED", error=traceback.format_exc(), params={"state": "FAIL"})
        except Exception as log_err:  # never hide the trial's own error behind a logging one
            print(f"[sweep] could not log the failure to MLflow: {log_err}", file=sys.stderr)
        print(f"[sweep] trial {trial.number:3d} FAILED  {error[:300]}  {' '.join(overrides)}", flush=True)
        raise


def log_trial(sweep: SweepState, run_id, status, cfg_t, summary, artifacts, values, seconds, state="COMPLETE") -> None:
    if not sweep.tracker.enabled:
        return
    try:
        params = {"state": state}
        if cfg_t is not None:
            policy = OmegaConf.to_container(cfg_t.policy, resolve=True)
            params |= {f"policy.{k}": v for k, v in flatten(policy).items()}
        metrics = summary_metrics(summary) if summary else {}
        if values is not None:
            metrics |= {f"objective.{o.name}": v for o, v in zip(sweep.objectives, values)}
        metrics["trial.seconds"] = seconds
        dicts = {"policy.json": OmegaConf.to_container(cfg_t.policy, resolve=True)} if cfg_t is not None else {}
        sweep.tracker.end_trial(run_id, status, params=params, metrics=metrics, artifacts=artifacts, dicts=dicts)
    except Exception as err:  # the Optuna record is the source of truth; a logging hiccup must not fail a trial
        print(f"[sweep] MLflow logging failed for run {run_id}: {type(err).__name__}: {err}", file=sys.stderr)
