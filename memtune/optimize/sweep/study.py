"""The Sweep: one Optuna study of policy knobs, run (or resumed) trial by trial until it has n_trials finished
ones, with dead workers' trials re-queued; what memtune-sweep does and the files around it: app.py."""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, cast

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm/mlflow hang offline without it

import hydra
import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from ..data.load import load_from_config
from .budget import Budget
from .constraints import constraints_from
from .defaults_trial import base_choices, defaults_trial
from .identity import claim_study, signature
from .joining import create_or_join, wait_for_signature
from .knob_deps import KnobNotSampledWarning, restrict
from .orphans import is_orphan, orphan_after
from .report import REPORT_METRICS, _maybe, write_report
from .scoring import Objective, evaluate_conversations, objectives_from, split_ids, write_outputs
from .search_space import SearchSpace
from .seeding import TrialSeeded
from .tracking import NullTracker, make_tracker, retrying
from .trial import run_trial
from .workers import make_storage, storage_label, worker_alive, worker_id


# ------------------------------------------------------------------------------------------------ the sweep
class Sweep:
    def __init__(self, cfg: DictConfig, out_dir: Path, base_overrides: Sequence[str], config_name: str = "sweep"):
        self.cfg, self.out_dir = cfg, out_dir
        self.base_overrides = [o for o in base_overrides if not o.startswith("hydra.")]
        self.config_name = config_name
        self.objectives = objectives_from(cfg)
        self.constraints = constraints_from(cfg)  # sweep.constraints: limits a trial must keep (constraints.py)
        limits = [Objective(c.name, c.metric, "minimize") for c in self.constraints]
        # knobs no objective (or constraint) depends on are not sampled: they keep the base config's value
        # (optimize/sweep/knob_deps.py)
        space = SearchSpace.from_config(cfg.search_space)
        self.space, self.not_sampled = restrict(space, [*self.objectives, *limits])
        if self.not_sampled:
            lines = "\n  ".join(f"{t}: {why}" for t, why in self.not_sampled.items())
            warnings.warn(f"search space {self.space.name!r}: not sampled:\n  {lines}", KnobNotSampledWarning, 2)
            print(f"[sweep] not sampled (no objective depends on them):\n  {lines}", file=sys.stderr, flush=True)
        self.n_trials = int(cfg.sweep.n_trials)
        self.worker = worker_id()
        self.tracker: NullTracker = NullTracker()
        self.ran: list[int] = []  # trial numbers this process ran
        ds = cfg.dataset
        self.dataset = load_from_config(ds)
        self.tune, self.holdout = split_ids(cfg, self.dataset)
        self.budget: Budget | None = None  # set once the study is open
        directions = [cast(Literal["minimize", "maximize"], o.direction) for o in self.objectives]  # checked
        # workers starting together race to create the storage's tables and the study: retry
        self.storage = retrying(lambda: make_storage(cfg.sweep, self._on_stale), "open the Optuna storage")
        name = str(cfg.sweep.study_name)
        created = retrying(lambda: create_or_join(self.storage, name, directions), "create or join the study")
        self.study = retrying(
            lambda: optuna.load_study(
                study_name=name,
                storage=self.storage,
                sampler=TrialSeeded(self._sampler),
                pruner=instantiate(cfg.sweep.pruner),
            ),
            "load the study",
        )
        self.budget = Budget(cfg, self.study, self.dataset, self.tune, out_dir)
        if not created:
            wait_for_signature(self.study)  # the creator enqueues the first trials; joiners check against it
        sig = signature(
            self.space, self.objectives, self.tune, cfg, self.holdout, self.dataset.sha256, self.not_sampled
        )
        if self.constraints:  # other limits, another study (studies without constraints keep their identity)
            sig["constraints"] = [c.__dict__ for c in self.constraints]
        if claim_study(self.study, sig, directions, storage_label(cfg), self.base_overrides) and not self.study.trials:
            for params in self.first_trials():
                self.study.enqueue_trial(params)

    # ---- helpers ------------------------------------------------------------------------------------------
    def first_trials(self) -> list[dict]:
        """What a new study runs first: the base config's own knob values (defaults_trial.py), then sweep.enqueue's."""
        known = {k.param for k in self.space.knobs}  # a knob not sampled is not enqueued either
        trials = [
            {k: v for k, v in dict(params).items() if k in known} for params in self.cfg.sweep.get("enqueue") or []
        ]
        if not self.cfg.sweep.get("enqueue_defaults", True):
            return trials
        params, left = defaults_trial(self.space, self.cfg, base_choices(self.config_name, self.base_overrides))
        for target, why in left.items():
            print(f"[sweep] defaults trial: {target} is left to the sampler ({why})", file=sys.stderr, flush=True)
        return [params, *trials]

    def _sampler(self, offset: int):
        """The configured sampler, its seed shifted by the trial's number (seeding.py): a resumed or parallel
        worker does not replay the random start-up proposals of another one; one process stays reproducible."""
        spec = cast(dict, OmegaConf.to_container(self.cfg.sweep.sampler, resolve=True))
        if spec.get("seed") is not None:
            spec["seed"] = int(spec["seed"]) + offset
        return instantiate(spec)

    def compose(self, overrides: Sequence[str]) -> DictConfig:
        return hydra.compose(config_name=self.config_name, overrides=[*self.base_overrides, *overrides])

    def counts(self) -> dict[str, int]:
        out = {s.name: 0 for s in TrialState}
        for t in self.study.get_trials(deepcopy=False):
            out[t.state.name] += 1
        return out

    def _retry(self, trial: optuna.trial.FrozenTrial, reason: str) -> None:
        """Re-queue a trial that did not finish (its worker died) with the same knobs, up to max_retry times."""
        self.tracker.mark_killed(trial.user_attrs.get("mlflow_run_id"), reason)
        history = [*trial.user_attrs.get("retry_history", []), trial.number]
        if len(history) > int(self.cfg.sweep.heartbeat.max_retry):
            print(f"[sweep] trial {trial.number}: not re-queued (retried {len(history) - 1} times already)")
            return
        self.study.enqueue_trial(
            trial.params, user_attrs={"retry_of": history[0], "retry_history": history}, skip_if_exists=False
        )
        print(f"[sweep] trial {trial.number} ({reason}) -> re-queued with the same knobs")

    def _trial_id(self, number: int) -> int:
        """The storage's id of this study's trial `number`, through the public storage API (a FrozenTrial keeps its id
        private). The storage writes through (Optuna's RDB cache too), so it reads what the study wrote."""
        study_id = self.storage.get_study_id_from_name(self.study.study_name)
        return self.storage.get_trial_id_from_study_id_trial_number(study_id, number)

    def _on_stale(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Heartbeat callback (RDB storage): the trial's heartbeat stopped for grace_period seconds."""
        self._retry(trial, "heartbeat stale: its worker stopped")

    def reap_dead_workers(self) -> int:
        """Fail RUNNING trials whose worker is provably dead (same host, pid gone or reused), or that no worker
        claimed (orphans.py), then re-queue them."""
        reaped = 0
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker = t.user_attrs.get("worker")
            if is_orphan(t, orphan_after(self.cfg.sweep)):
                reason = "no worker claimed it (its creator died, or its creation was retried)"
            elif not worker or worker_alive(worker) is not False:
                continue
            else:
                reason = f"worker {worker} died during the trial"
            trial_id = self._trial_id(t.number)
            try:
                self.storage.set_trial_user_attr(trial_id, "error", reason)
                if not self.storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker got there first
            reaped += 1
            self._retry(self.storage.get_trial(trial_id), reason)
        return reaped

    # ---- one trial ----------------------------------------------------------------------------------------
    def objective(self, trial: optuna.Trial) -> float | list[float]:
        return run_trial(self, trial)

    # ---- the loop -----------------------------------------------------------------------------------------
    def optimize(self) -> str:
        """Run trials until the study has n_trials finished ones. Returns why it stopped."""
        failures = 0
        limit = int(self.cfg.sweep.max_consecutive_failures)
        while True:
            self.reap_dead_workers()
            optuna.storages.fail_stale_trials(self.study)
            c = self.counts()
            finished, running = c["COMPLETE"] + c["PRUNED"], c["RUNNING"]
            if finished >= self.n_trials:
                return "complete"
            if finished + running >= self.n_trials:  # the last slots are being filled elsewhere
                if not self.cfg.sweep.wait_for_workers:
                    return "left to other workers"
                time.sleep(float(self.cfg.sweep.poll_seconds))
                continue
            if self.budget is not None and not self.budget.allows_next():  # sweep.budget_usd (budget.py)
                return "budget"
            try:
                self.study.optimize(self.objective, n_trials=1, catch=(Exception,))
            except optuna.exceptions.UpdateFinishedTrialError as err:  # another worker judged its heartbeat stale
                print(f"[sweep] the trial was failed elsewhere while it ran: {err}", file=sys.stderr, flush=True)
            if self.budget is not None:
                print(self.budget.line(), flush=True)
            last = self.storage.get_trial(self._trial_id(self.ran[-1])) if self.ran else None
            if last is not None and last.state == TrialState.FAIL and not last.user_attrs.get("surplus"):
                failures += 1
                if failures >= limit:
                    print(
                        f"[sweep] {failures} trials in a row failed: this worker stops (last error: "
                        f"{last.user_attrs.get('error')})",
                        file=sys.stderr,
                    )
                    return "too many failures"
            else:
                failures = 0

    # ---- the report ---------------------------------------------------------------------------------------

    def score(self, name: str, overrides: Sequence[str], ids: Sequence[str]) -> dict:
        cfg_r = self.compose(overrides)
        summary, frame = evaluate_conversations(
            cfg_r, self.dataset, ids, self.out_dir / "heldout" / name, prefetch=True
        )
        write_outputs(self.out_dir / "heldout" / name, summary, frame, cfg_r)
        return {m: _maybe(summary, m) for m in self._report_metrics()}

    def _report_metrics(self) -> list[str]:
        return list(dict.fromkeys([o.metric for o in self.objectives] + list(REPORT_METRICS)))

    def report(self, reason: str, opt_seconds: float) -> dict:
        return write_report(self, reason, opt_seconds)

    def run(self) -> dict:
        t_start = time.perf_counter()
        self.tracker = make_tracker(self.cfg.get("tracking"))
        key = f"{storage_label(self.cfg)}#{self.study.study_name}"
        self.tracker.start_study(
            key=_digest(key),
            name=self.study.study_name,
            params={
                "n_trials": self.n_trials,
                "storage": storage_label(self.cfg),
                "tune_conversations": ",".join(self.tune),
                "holdout_conversations": ",".join(self.holdout),
                "objectives": json.dumps([o.__dict__ for o in self.objectives]),
                "sampler": json.dumps(OmegaConf.to_container(self.cfg.sweep.sampler, resolve=True)),
                "pruner": json.dumps(OmegaConf.to_container(self.cfg.sweep.pruner, resolve=True)),
                "base_overrides": " ".join(self.base_overrides),
                **{f"space.{k}": v for k, v in self.space.describe().items()},
                "not_sampled": json.dumps(self.not_sampled),
            },
            tags={"memtune.study": self.study.study_name},
        )
        c = self.counts()
        print(
            f"[sweep] study {self.study.study_name!r} in {storage_label(self.cfg)}: "
            f"{c['COMPLETE'] + c['PRUNED']}/{self.n_trials} finished ({c['FAIL']} failed, {c['RUNNING']} running, "
            f"{c['WAITING']} queued); tune on {self.tune}, hold out {self.holdout}",
            flush=True,
        )
        if len(self.objectives) > 1:
            print("[sweep] multi-objective study: no pruning (Optuna's Trial.report is single-objective only)")
        self.tracker.link = self._link_run
        reason = self.optimize()
        self.tracker.settle(self.study, [o.name for o in self.objectives])  # MLflow agrees with the study
        return self.report(reason, time.perf_counter() - t_start)

    def _link_run(self, number: int, run_id: str) -> None:
        """A trial's MLflow run was created late (MLflow was unreachable): record its id while the trial runs."""
        try:
            self.storage.set_trial_user_attr(self._trial_id(number), "mlflow_run_id", run_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # finished already: settle() finds the run by its tags


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:16]
