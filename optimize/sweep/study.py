"""`memtune-sweep`: tune policy knobs with Optuna (a Hydra app), then re-score the winners on held-out conversations.

    memtune-sweep                                   # offline knobs, LOCOMO dev: tune on 4 conversations, hold out 3
    memtune-sweep sweep.n_trials=60                 # the same study, resumed and extended to 60 finished trials
    memtune-sweep search_space=retrieval_only       # retrieval/answer knobs only: one cached ingestion for all
    memtune-sweep sweep=f1                          # one objective (answer F1), median pruning per conversation
    memtune-sweep dataset=fixture sweep.tune_conversations=null sweep.holdout_conversations=null tracking=none

Per trial: the search space (conf/search_space/) suggests Hydra overrides; the trial's config is composed from
the sweep's own command line plus those overrides; the policy is ingested and scored one tune conversation at a
time (ingestion cached per conversation by optimize/evaluation/ingest_cache.py). After each conversation the objective so
far is reported: single-objective studies prune with the configured pruner; multi-objective ones cannot (Optuna)
and log the steps only. A trial that raises is recorded FAILED with its error (Optuna user attrs + MLflow) and
the sweep goes on. Knobs no objective depends on (the answerer's in a recall-vs-tokens study;
optimize/sweep/knob_deps.py) are not sampled: a warning names them, they keep the base config's value, and
memtune-export's bundle records them as not sampled.

Resuming: the study lives in `sweep.storage` (sqlite by default) under `sweep.study_name`; re-running the same
command continues it. A study is its signature (optimize/sweep/identity.py): search space, objectives, tune and
holdout conversations, dataset file and the resolved base config (policy, embedder, lm, judge, store, dataset,
...): resuming with another one, e.g. `embedder=openai`, is refused with what differs and a new study name to
use; n_trials, sampler, pruner, workers and tracking may change. Only COMPLETE and PRUNED trials count towards
`sweep.n_trials`. A RUNNING trial left by a killed worker is failed and re-queued with the same knobs: at once
when its worker (host, pid, start time) is provably dead, else by the RDB heartbeat after
`sweep.heartbeat.grace_period` seconds. Several workers may share one storage; trial numbers decide which trials
fill the last slots, so the study ends with exactly n_trials finished trials (a trial started past the cap is
failed as `surplus` before it runs anything).

Outputs (Hydra run dir): trials/<n>/{summary.json,questions.parquet,policy.json}, trials.parquet,
pareto.parquet, heldout.json, sweep.json, plots/*.png; the same in MLflow (tracking=mlflow).

Files: this one drives the study (Sweep, run_sweep, main); sweep_eval.py evaluates one trial (objectives, split,
per-conversation loop), sweep_report.py writes the report, sweep_workers.py holds workers and the storage,
study_identity.py the signature and the refusal, knob_deps.py which knobs the objectives depend on.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm/mlflow hang offline without it

import hydra
import optuna
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from ..data.locomo import load_locomo, resolve_path
from ..evaluation.app import configure_dspy_cache
from .identity import StudyMismatch, claim_study, signature
from .knob_deps import KnobNotSampledWarning, restrict
from .report import REPORT_METRICS, _maybe, make_plots, print_report, trials_frame, write_report  # noqa: F401
from .search_space import SearchSpace
from .tracking import NullTracker, flatten, make_tracker, retrying, summary_metrics

# re-exported: these lived here before the split (tests, benchmarks and notebooks import them from here)
from .trial import (  # noqa: F401
    Objective,
    evaluate_conversations,
    get_path,
    merge_ingest,
    objectives_from,
    split_ids,
    subset,
    write_outputs,
)
from .workers import FINISHED, _start_ticks, make_storage, storage_label, worker_alive, worker_id  # noqa: F401

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


class Surplus(RuntimeError):
    """This trial started after the study already had n_trials finished or running trials (another worker)."""


# ------------------------------------------------------------------------------------------------ the sweep
class Sweep:
    def __init__(self, cfg: DictConfig, out_dir: Path, base_overrides: Sequence[str], config_name: str = "sweep"):
        self.cfg, self.out_dir = cfg, out_dir
        self.base_overrides = [o for o in base_overrides if not o.startswith("hydra.")]
        self.config_name = config_name
        self.objectives = objectives_from(cfg)
        # knobs no objective depends on are not sampled: they keep the base config's value (optimize/sweep/knob_deps.py)
        self.space, self.not_sampled = restrict(SearchSpace.from_config(cfg.search_space), self.objectives)
        if self.not_sampled:
            lines = "\n  ".join(f"{t}: {why}" for t, why in self.not_sampled.items())
            warnings.warn(f"search space {self.space.name!r}: not sampled:\n  {lines}", KnobNotSampledWarning, 2)
            print(f"[sweep] not sampled (no objective depends on them):\n  {lines}", file=sys.stderr, flush=True)
        self.n_trials = int(cfg.sweep.n_trials)
        self.worker = worker_id()
        self.tracker: NullTracker = NullTracker()
        self.ran: list[int] = []  # trial numbers this process ran
        ds = cfg.dataset
        self.dataset = load_locomo(
            resolve_path(ds.path),
            conversations=ds.conversations,
            max_sessions=ds.max_sessions,
            max_questions=ds.max_questions,
        )
        self.tune, self.holdout = split_ids(cfg, self.dataset)
        directions = [o.direction for o in self.objectives]
        # workers starting together race to create the storage's tables and the study: retry
        self.storage = retrying(lambda: make_storage(cfg.sweep, self._on_stale), "open the Optuna storage")
        self.study = retrying(
            lambda: optuna.create_study(
                storage=self.storage,
                study_name=str(cfg.sweep.study_name),
                directions=directions,
                load_if_exists=True,
                sampler=self._sampler(0),
                pruner=instantiate(cfg.sweep.pruner),
            ),
            "create or load the study",
        )
        sig = signature(
            self.space, self.objectives, self.tune, cfg, self.holdout, self.dataset.sha256, self.not_sampled
        )
        if claim_study(self.study, sig, directions, storage_label(cfg), self.base_overrides) and not self.study.trials:
            known = {k.param for k in self.space.knobs}  # a knob not sampled is not enqueued either
            for params in cfg.sweep.get("enqueue") or []:
                self.study.enqueue_trial({k: v for k, v in dict(params).items() if k in known})

    # ---- helpers ------------------------------------------------------------------------------------------
    def _sampler(self, offset: int):
        """The configured sampler, its seed shifted by the trial count: a resumed or parallel worker does not
        replay the random start-up proposals of another one, and a single-process sweep stays reproducible."""
        spec = OmegaConf.to_container(self.cfg.sweep.sampler, resolve=True)
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

    def _on_stale(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Heartbeat callback (RDB storage): the trial's heartbeat stopped for grace_period seconds."""
        self._retry(trial, "heartbeat stale: its worker stopped")

    def reap_dead_workers(self) -> int:
        """Fail RUNNING trials whose worker is provably dead (same host, pid gone or reused), then re-queue them."""
        reaped = 0
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker = t.user_attrs.get("worker")
            if not worker or worker_alive(worker) is not False:
                continue
            reason = f"worker {worker} died during the trial"
            try:
                self.storage.set_trial_user_attr(t._trial_id, "error", reason)
                if not self.storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker got there first
            reaped += 1
            self._retry(self.study._storage.get_trial(t._trial_id), reason)
        return reaped

    # ---- one trial ----------------------------------------------------------------------------------------
    def objective(self, trial: optuna.Trial):
        trial.set_user_attr("worker", self.worker)
        self.ran.append(trial.number)
        ahead = [
            t
            for t in self.study.get_trials(deepcopy=False)
            if t.state in FINISHED or (t.state == TrialState.RUNNING and t.number < trial.number)
        ]
        if len(ahead) >= self.n_trials:
            trial.set_user_attr("surplus", True)
            raise Surplus(
                f"the study already has {len(ahead)} finished or earlier running trials "
                f"(n_trials={self.n_trials}): this one is not needed"
            )
        t0 = time.perf_counter()
        overrides = self.space.suggest(trial)
        trial.set_user_attr("overrides", overrides)
        inactive = "inactive: its `when:` condition did not hold in this trial"
        not_sampled = self.not_sampled | {k.target: inactive for k in self.space.knobs if k.param not in trial.params}
        trial.set_user_attr("not_sampled", not_sampled)  # memtune-export records it in the bundle
        # memtune-export re-composes the trial's config from these exactly as compose() does
        trial.set_user_attr("base_overrides", list(self.base_overrides))
        trial.set_user_attr("config_name", self.config_name)
        run_id = self.tracker.start_trial(
            trial.number, {**trial.params, "overrides": " ".join(overrides), "not_sampled": json.dumps(not_sampled)}
        )
        trial.set_user_attr("mlflow_run_id", run_id)
        trial_dir = self.out_dir / "trials" / f"{trial.number:04d}"
        single = len(self.objectives) == 1
        steps: list[dict] = []
        last: dict = {}

        def on_step(i: int, summary: dict) -> None:
            values = {o.name: o.value(summary) for o in self.objectives}
            steps.append(values)
            last["summary"] = summary
            self.tracker.log_step(run_id, i, {f"step.{k}": v for k, v in values.items()})
            if single:
                trial.report(values[self.objectives[0].name], i)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after {i + 1} of {len(self.tune)} tune conversations")

        cfg_t = None
        try:
            cfg_t = self.compose(overrides)
            summary, frame = evaluate_conversations(cfg_t, self.dataset, self.tune, trial_dir, on_step)
            values = [o.value(summary) for o in self.objectives]
            files = write_outputs(trial_dir, summary, frame, cfg_t)
            seconds = time.perf_counter() - t0
            trial.set_user_attr("seconds", round(seconds, 2))
            trial.set_user_attr("cache_hit_rate", summary["ingest"]["cache_hit_rate"])
            trial.set_user_attr("summary", str(trial_dir / "summary.json"))
            trial.set_user_attr("metrics", {m: _maybe(summary, m) for m in REPORT_METRICS})
            self._log_trial(run_id, "FINISHED", cfg_t, summary, files[1:], values, seconds)
            print(
                f"[sweep] trial {trial.number:3d} COMPLETE  "
                + "  ".join(f"{o.name}={v:.4g}" for o, v in zip(self.objectives, values))
                + f"  ({seconds:.1f} s, ingest cache {summary['ingest']['cache_hit_rate']:.0%})  {' '.join(overrides)}",
                flush=True,
            )
            return values[0] if single else values
        except optuna.TrialPruned:
            seconds = time.perf_counter() - t0
            trial.set_user_attr("seconds", round(seconds, 2))
            self._log_trial(run_id, "KILLED", cfg_t, last.get("summary"), [], None, seconds, state="PRUNED")
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
                self.tracker.end_trial(run_id, "FAILED", error=traceback.format_exc(), params={"state": "FAIL"})
            except Exception as log_err:  # never hide the trial's own error behind a logging one
                print(f"[sweep] could not log the failure to MLflow: {log_err}", file=sys.stderr)
            print(f"[sweep] trial {trial.number:3d} FAILED  {error[:300]}  {' '.join(overrides)}", flush=True)
            raise

    def _log_trial(self, run_id, status, cfg_t, summary, artifacts, values, seconds, state="COMPLETE") -> None:
        if not self.tracker.enabled:
            return
        try:
            params = {"state": state}
            if cfg_t is not None:
                policy = OmegaConf.to_container(cfg_t.policy, resolve=True)
                params |= {f"policy.{k}": v for k, v in flatten(policy).items()}
            metrics = summary_metrics(summary) if summary else {}
            if values is not None:
                metrics |= {f"objective.{o.name}": v for o, v in zip(self.objectives, values)}
            metrics["trial.seconds"] = seconds
            dicts = {"policy.json": OmegaConf.to_container(cfg_t.policy, resolve=True)} if cfg_t is not None else {}
            self.tracker.end_trial(run_id, status, params=params, metrics=metrics, artifacts=artifacts, dicts=dicts)
        except Exception as err:  # the Optuna record is the source of truth; a logging hiccup must not fail a trial
            print(f"[sweep] MLflow logging failed for run {run_id}: {type(err).__name__}: {err}", file=sys.stderr)

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
            self.study.sampler = self._sampler(len(self.study.get_trials(deepcopy=False)))
            self.study.optimize(self.objective, n_trials=1, catch=(Exception,))
            last = (
                self.study._storage.get_trial(
                    self.study._storage.get_trial_id_from_study_id_trial_number(self.study._study_id, self.ran[-1])
                )
                if self.ran
                else None
            )
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
    def front(self) -> list[optuna.trial.FrozenTrial]:
        """The best trial, or the whole Pareto front sorted by the first objective."""
        if not any(t.state == TrialState.COMPLETE for t in self.study.get_trials(deepcopy=False)):
            return []
        if len(self.objectives) == 1:
            return [self.study.best_trial]
        return sorted(self.study.best_trials, key=lambda t: (t.values[0], t.number))

    def pick(self, front: list, reference: Mapping[str, Any] | None) -> dict[int, list[str]]:
        """Which front trials to re-score on the held-out conversations, and why: up to heldout.max_pareto
        spread along the first objective, plus, against a reference (the `defaults` baseline on the tune split),
        for each objective the front trial best on it among those no worse than the reference on the others
        (e.g. the highest recall at no more context tokens than the defaults)."""
        why: dict[int, list[str]] = {}
        if len(self.objectives) == 1:
            return {front[0].number: ["best trial"]} if front else {}
        cap = int(self.cfg.sweep.heldout.max_pareto)
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
                o, ref = self.objectives[j], reference.get(self.objectives[j].metric)
                if ref is None:
                    return False
                return t.values[j] >= ref if o.direction == "maximize" else t.values[j] <= ref

            for i, o in enumerate(self.objectives):
                ok = [t for t in front if all(no_worse(t, j) for j in range(len(self.objectives)) if j != i)]
                if ok:
                    sign = 1 if o.direction == "maximize" else -1
                    best = max(ok, key=lambda t: (sign * t.values[i], -t.number))
                    others = ", ".join(x.name for j, x in enumerate(self.objectives) if j != i)
                    why.setdefault(best.number, []).append(f"best {o.name} at {others} no worse than defaults")
        return why

    def score(self, name: str, overrides: Sequence[str], ids: Sequence[str]) -> dict:
        cfg_r = self.compose(overrides)
        summary, frame = evaluate_conversations(cfg_r, self.dataset, ids, self.out_dir / "heldout" / name)
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
        reason = self.optimize()
        return self.report(reason, time.perf_counter() - t_start)


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_sweep(cfg: DictConfig, out_dir: Path, base_overrides: Sequence[str] = (), config_name: str = "sweep") -> dict:
    """Run (or resume) the study; Hydra must be initialised (hydra.main or `initialize_config_dir`)."""
    if not GlobalHydra.instance().is_initialized():
        raise RuntimeError("run_sweep needs an initialised Hydra: use main() or sweep_from_overrides()")
    configure_dspy_cache(cfg.cache_dir)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # fail_stale_trials and TPESampler(group=True) are "experimental" in Optuna 5: said once in the docs, not per trial
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return Sweep(cfg, out_dir, base_overrides, config_name).run()


def sweep_from_overrides(overrides: Sequence[str], out_dir: str | Path) -> dict:
    """The sweep as a function (tests, notebooks): compose conf/sweep.yaml with `overrides` and run it."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="sweep", overrides=list(overrides))
        return run_sweep(cfg, Path(out_dir), overrides)


@hydra.main(config_path="pkg://memtune.conf", config_name="sweep", version_base="1.3")
def main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    warnings.simplefilter("ignore", KnobNotSampledWarning)  # the sweep prints the same news on its own line
    try:
        run_sweep(cfg, Path(hc.runtime.output_dir), list(hc.overrides.task), hc.job.config_name or "sweep")
    except StudyMismatch as err:  # a refusal to resume is an answer, not a crash: no traceback
        print(f"memtune-sweep: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
