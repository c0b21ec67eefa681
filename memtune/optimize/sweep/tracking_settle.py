"""Settle a study's MLflow trial runs from its Optuna study, the source of truth (run by each worker at its end).

For every finished or failed trial that `ours` accepts (the worker's own trials, those of dead workers, and those
that ended long enough ago for their worker to have sent its queued calls; RUNNING and WAITING ones are left to
their workers):
  - its run (the one named by the trial's `mlflow_run_id`, else the FINISHED or oldest one tagged with its number)
    gets the status the trial's state implies: COMPLETE -> FINISHED, PRUNED -> KILLED, FAIL -> FAILED (KILLED
    when its worker died); a run whose logging was cut short (an outage, a dead worker) is ended that way, with
    the tag memtune.settled saying what it was before;
  - any other run of the same trial (a creation retried after a lost reply) is ended KILLED, tag memtune.duplicate;
  - a COMPLETE or PRUNED trial with no run at all (its worker's calls never reached MLflow) gets one made from the
    study: its knobs, state and objective values, tag memtune.backfilled (the metrics of summary.json stay in
    the trial's directory). Workers settling at the same time may both make one: the newer is ended and deleted.
And the study has one parent run, which every trial run names (settle_parent). Idempotent: a second pass
changes nothing.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from .run_record import sanitize
from .tracking import MlflowTracker

WANT = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED", TrialState.FAIL: "FAILED"}


def wanted_status(trial: FrozenTrial) -> str:
    if trial.state == TrialState.FAIL:
        error = str(trial.user_attrs.get("error") or "")
        if "died" in error or "heartbeat" in error or "no worker" in error:
            return "KILLED"
    return WANT[trial.state]


def trial_runs(tracker: MlflowTracker) -> dict[int, list]:
    """The study's active trial runs by trial number, oldest first."""
    from mlflow.entities import ViewType

    out: dict[int, list] = defaultdict(list)
    token = None
    while True:
        page = tracker.client.search_runs(
            [tracker.experiment_id],
            filter_string=f"tags.`memtune.study_key` = '{tracker.study_key}' and tags.`memtune.role` = 'trial'",
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=1000,
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        for run in page:
            number = run.data.tags.get("memtune.trial")
            if number is not None and number.isdigit():
                out[int(number)].append(run)
        token = page.token
        if not token:
            return out


def settle_parent(tracker: MlflowTracker) -> int:
    """One parent run per study: the oldest active one (start time, then run id). Workers that created theirs at
    the same moment may each have kept their own; the others are ended and deleted, and every trial run of the
    study is re-tagged to the one that stays. Returns how many runs changed."""
    parents = tracker._parents()
    if not parents:
        return 0
    keep, changed = parents[0].info.run_id, 0
    for run in parents[1:]:
        tracker.client.set_terminated(run.info.run_id, "KILLED")
        tracker.client.delete_run(run.info.run_id)
        changed += 1
    tracker.parent_run_id = keep
    for runs in trial_runs(tracker).values():
        for run in runs:
            if run.data.tags.get("mlflow.parentRunId") != keep:
                tracker.client.set_tag(run.info.run_id, "mlflow.parentRunId", keep)
                changed += 1
    return changed


def settle_runs(
    tracker: MlflowTracker, study: optuna.Study, objectives: list[str], ours: Callable[[FrozenTrial], bool]
) -> dict[str, int]:
    """Settle the runs of every finished or failed trial `ours` accepts (module docstring); `objectives` names
    the trial values. Returns how many runs each action touched (and how many trials could not be settled)."""
    if not tracker.study_key:
        return {}
    counts = {"ended": 0, "duplicates": 0, "backfilled": 0, "errors": 0, "parent_fixes": settle_parent(tracker)}
    runs = trial_runs(tracker)
    for trial in study.get_trials(deepcopy=False):
        if trial.state not in WANT or not ours(trial):
            continue
        try:
            _settle_trial(tracker, trial, runs.get(trial.number, []), objectives, counts)
        except Exception as err:  # e.g. a run another worker deleted meanwhile: the others still get settled
            counts["errors"] += 1
            print(f"[tracking] trial {trial.number}: not settled: {type(err).__name__}: {err}", file=sys.stderr)
    return counts


def _settle_trial(tracker: MlflowTracker, trial: FrozenTrial, mine: list, objectives: list[str], counts) -> None:
    want = wanted_status(trial)
    main = _main_run(trial, mine)
    for run in mine:
        if run is main or run.info.status in ("KILLED", "FAILED"):
            continue
        tracker.client.set_tag(run.info.run_id, "memtune.duplicate", f"a second run of trial {trial.number}")
        tracker.client.set_terminated(run.info.run_id, "KILLED")
        counts["duplicates"] += 1
    if main is None:
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            counts["backfilled"] += _backfill(tracker, trial, want, objectives)
        return
    status = main.info.status
    if status == want or (trial.state == TrialState.FAIL and status in ("FAILED", "KILLED")):
        return
    run_id = main.info.run_id
    tracker.client.set_tag(run_id, "memtune.settled", f"was {status}; Optuna trial {trial.state.name}")
    if trial.state == TrialState.COMPLETE and trial.values is not None:
        tracker._metrics(run_id, _objectives(trial, objectives))
    if trial.state == TrialState.FAIL and trial.user_attrs.get("error"):
        tracker.client.set_tag(run_id, "memtune.error", str(trial.user_attrs["error"])[:5000])
    tracker.client.set_terminated(run_id, want)
    counts["ended"] += 1


def _main_run(trial: FrozenTrial, runs: list) -> Any:
    if not runs:
        return None
    named = trial.user_attrs.get("mlflow_run_id")
    for run in runs:
        if run.info.run_id == named:
            return run
    finished = [r for r in runs if r.info.status == "FINISHED"]
    return (finished or runs)[0]


def _objectives(trial: FrozenTrial, names: list[str]) -> dict[str, float]:
    """objective.<name> = the trial's value, as the trial's own logging names it (trial.log_trial)."""
    return {f"objective.{sanitize(n)}": float(v) for n, v in zip(names, trial.values or [])}


def _backfill(tracker: MlflowTracker, trial: FrozenTrial, want: str, objectives: list[str]) -> int:
    """A run for a finished trial that has none, from the Optuna study; 0 when a parallel settle made one first."""
    run = tracker.client.create_run(
        tracker.experiment_id,
        run_name=f"trial-{trial.number:04d}",
        tags={
            "mlflow.parentRunId": tracker.parent_run_id or "",
            "memtune.role": "trial",
            "memtune.study_key": tracker.study_key,
            "memtune.trial": str(trial.number),
            "memtune.backfilled": "logged from the Optuna study: the worker's own calls never reached MLflow",
        },
    )
    run_id = run.info.run_id
    params = {**trial.params, "state": trial.state.name, "overrides": " ".join(trial.user_attrs.get("overrides") or [])}
    tracker.log_params(run_id, params)
    tracker._metrics(run_id, _objectives(trial, objectives))
    tracker.client.set_terminated(run_id, want)
    oldest = trial_runs(tracker).get(trial.number, [])
    if oldest and oldest[0].info.run_id != run_id:  # another worker's settle got there first
        tracker.client.delete_run(run_id)
        return 0
    return 1
