"""`memtune-sweep`: tune policy knobs with Optuna (a Hydra app), then re-score the winners on held-out conversations.

    memtune-sweep                                   # offline knobs, LOCOMO dev: tune on 4 conversations, hold out 3
    memtune-sweep sweep.n_trials=60                 # the same study, resumed and extended to 60 finished trials
    memtune-sweep search_space=retrieval_only       # retrieval/answer knobs only: one cached ingestion for all
    memtune-sweep sweep=f1                          # one objective (answer F1), median pruning per conversation
    memtune-sweep dataset=fixture sweep.tune_conversations=null sweep.holdout_conversations=null tracking=none

Per trial: the search space (conf/search_space/) suggests Hydra overrides; the trial's config is composed from
the sweep's own command line plus those overrides; the policy is ingested and scored one tune conversation at a
time (ingestion cached per conversation by optimize/ingest_cache.py). After each conversation the objective so
far is reported: single-objective studies prune with the configured pruner; multi-objective ones cannot (Optuna)
and log the steps only. A trial that raises is recorded FAILED with its error (Optuna user attrs + MLflow) and
the sweep goes on.

Resuming: the study lives in `sweep.storage` (sqlite by default) under `sweep.study_name`; re-running the same
command continues it. Only COMPLETE and PRUNED trials count towards `sweep.n_trials`. A RUNNING trial left by a
killed worker is failed and re-queued with the same knobs: at once when its worker (host, pid, start time) is
provably dead, else by the RDB heartbeat after `sweep.heartbeat.grace_period` seconds. Several workers may share
one storage; trial numbers decide which trials fill the last slots, so the study ends with exactly n_trials
finished trials (a trial started past the cap is failed as `surplus` before it runs anything).

Outputs (Hydra run dir): trials/<n>/{summary.json,questions.parquet,policy.json}, trials.parquet,
pareto.parquet, heldout.json, sweep.json, plots/*.png; the same in MLflow (tracking=mlflow).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm/mlflow hang offline without it

import hydra
import optuna
import polars as pl
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from memtune.optimize.data import Dataset, load_locomo, resolve_path
from memtune.optimize.evaluate import METRICS, answer_questions, score_table
from memtune.optimize.evaluate_app import build_summary, configure_dspy_cache
from memtune.optimize.ingest_cache import prepare_policy
from memtune.optimize.search_space import SearchSpace
from memtune.optimize.tracking import COST_FIELDS, NullTracker, absolute_sqlite, flatten, make_tracker, retrying, \
    sanitize, summary_metrics
from memtune.policies.lm import CostMeter

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
REPORT_METRICS = ("scores.overall.evidence_recall", "scores.overall.context_tokens", "scores.overall.recall_at_1000",
                  "scores.overall.f1", "cost.memories_stored")


class Surplus(RuntimeError):
    """This trial started after the study already had n_trials finished or running trials (another worker)."""


# ------------------------------------------------------------------------------------------------ workers

def _start_ticks(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 (starttime), counted after the command name


def worker_id() -> str:
    """host:pid:starttime: names this process uniquely on this host (a reused pid has another start time)."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or '?'}"


def worker_alive(worker: str) -> bool | None:
    """True/False for a worker on this host; None when that cannot be known (another host, no /proc)."""
    try:
        host, pid, ticks = worker.rsplit(":", 2)
        pid_n = int(pid)
    except ValueError:
        return None
    if host != socket.gethostname() or ticks == "?":
        return None
    if not Path("/proc").is_dir():
        return None
    return _start_ticks(pid_n) == ticks


# ------------------------------------------------------------------------------------------------ config

def get_path(summary: Mapping[str, Any], path: str) -> Any:
    """`scores.overall.f1` -> summary["scores"]["overall"]["f1"]; a missing key fails loudly."""
    node: Any = summary
    for i, part in enumerate(path.split(".")):
        if not isinstance(node, Mapping) or part not in node:
            where = ".".join(path.split(".")[:i]) or "<summary>"
            known = sorted(node) if isinstance(node, Mapping) else type(node).__name__
            raise KeyError(f"metric {path!r}: no {part!r} under {where} (has: {known})")
        node = node[part]
    return node


@dataclass(frozen=True)
class Objective:
    name: str
    metric: str
    direction: str

    def value(self, summary: Mapping[str, Any]) -> float:
        value = get_path(summary, self.metric)
        if value is None:
            raise ValueError(f"objective {self.name!r}: metric {self.metric} is null in this run "
                             "(e.g. judge without a judge LM): pick another metric or configure it")
        return float(value)


def objectives_from(cfg: DictConfig) -> list[Objective]:
    objectives = [Objective(str(o.name), str(o.metric), str(o.direction)) for o in cfg.sweep.objectives]
    if not objectives:
        raise ValueError("sweep.objectives is empty: name at least one metric path into summary.json")
    for o in objectives:
        if o.direction not in ("maximize", "minimize"):
            raise ValueError(f"objective {o.name!r}: direction must be maximize or minimize, got {o.direction!r}")
    return objectives


def split_ids(cfg: DictConfig, dataset: Dataset) -> tuple[list[str], list[str]]:
    """(tune, holdout) conversation ids; they never overlap."""
    known = [c.sample_id for c in dataset.conversations]
    holdout = list(cfg.sweep.holdout_conversations or [])
    tune = list(cfg.sweep.tune_conversations) if cfg.sweep.tune_conversations else [c for c in known if c not in holdout]
    for cid in tune + holdout:
        if cid not in known:
            raise ValueError(f"sweep: conversation {cid!r} is not in dataset {cfg.dataset.name!r} (has: {known})")
    overlap = sorted(set(tune) & set(holdout))
    if overlap:
        raise ValueError(f"sweep: {overlap} are in both tune_conversations and holdout_conversations: a held-out "
                         "score must come from conversations the sweep never tuned on")
    if not tune:
        raise ValueError("sweep: no tune conversations")
    return tune, holdout


def subset(dataset: Dataset, ids: Sequence[str]) -> Dataset:
    return Dataset(conversations=[dataset.conversation(i) for i in ids], report=dataset.report, path=dataset.path,
                   sha256=dataset.sha256)


# ------------------------------------------------------------------------------------------------ evaluation

def merge_ingest(facts: Sequence[dict], ids: Sequence[str]) -> dict:
    """Ingestion facts of several conversations (each ingested and cached on its own) as one."""
    pairs = sum(f["message_pairs"] for f in facts)
    seconds = sum(f["seconds"] for f in facts)
    phases: dict[str, dict] = {}
    for f in facts:
        for name, row in f["cost"]["phases"].items():
            merged = phases.setdefault(name, {k: 0 for k in COST_FIELDS})
            for k in COST_FIELDS:
                merged[k] += row.get(k) or 0
    for name, row in phases.items():  # percentiles do not add up: exact for one conversation only
        row["seconds_total"] = round(row["seconds_total"], 4)
        row["seconds_p50"] = facts[0]["cost"]["phases"][name].get("seconds_p50") if len(facts) == 1 else None
        row["seconds_p95"] = facts[0]["cost"]["phases"][name].get("seconds_p95") if len(facts) == 1 else None
    ops: dict[str, int] = {}
    for f in facts:
        for op, n in f["ops"].items():
            ops[op] = ops.get(op, 0) + n
    hits = [bool(f.get("cache_hit")) for f in facts]
    return {
        "turns": sum(f["turns"] for f in facts), "message_pairs": pairs, "seconds": round(seconds, 3),
        "turns_per_s": round(sum(f["turns"] for f in facts) / seconds, 2) if seconds else None,
        "memories_stored": sum(f["memories_stored"] for f in facts), "ops": ops,
        "rejected_ops": sum(f.get("rejected_ops", 0) for f in facts),
        "lm_requests_per_message_pair": {p: round(phases.get(p, {}).get("calls", 0) / pairs, 3) if pairs else None
                                         for p in ("extract", "summarize", "decide")},
        "cost": {"phases": phases, "failures": [x for f in facts for x in f["cost"].get("failures", [])]},
        "cache_hit": all(hits), "cache_hit_rate": round(sum(hits) / len(hits), 3) if hits else None,
        "seconds_this_run": round(sum(f["seconds"] for f, hit in zip(facts, hits) if not hit), 3),
        "key": [f.get("key") for f in facts], "store": [f.get("store") for f in facts],
        "per_conversation": [{"conversation": cid, "key": f.get("key"), "cache_hit": f.get("cache_hit"),
                              "memories_stored": f["memories_stored"], "seconds": f["seconds"]}
                             for cid, f in zip(ids, facts)],
    }


def evaluate_conversations(cfg: DictConfig, dataset: Dataset, ids: Sequence[str], out_dir: Path,
                           on_step=None) -> tuple[dict, pl.DataFrame]:
    """Ingest (cached per conversation) + answer + score `ids`, one conversation at a time.

    After conversation i, `on_step(i, summary_so_far)` runs (it may raise optuna.TrialPruned). Returns the
    summary (summary.json layout of memtune-eval) and the per-question frame, both over all of `ids`."""
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    judge = instantiate(cfg.judge) if cfg.get("judge") else None
    answer_meter = CostMeter()
    rows: list[dict] = []
    facts: list[dict] = []
    embedder_id = ""
    summary: dict = {}
    frame = pl.DataFrame()
    for i, cid in enumerate(ids):
        part = subset(dataset, [cid])
        policy, ingested = prepare_policy(cfg, part, out_dir / cid, progress=cfg.progress,
                                          use_cache=cfg.ingest_cache)
        policy.meter = answer_meter  # the answer phase of every conversation on one meter
        embedder_id = policy.embedder.id
        try:
            rows += answer_questions(policy, part.conversations[0], judge=judge, progress=cfg.progress)
        finally:
            policy.store.close()
        facts.append(ingested)
        frame = pl.DataFrame(rows, schema_overrides={m: pl.Float64 for m in METRICS if m != "abstained"})
        table = score_table(frame, tuple(cfg.overall_categories))
        merged = merge_ingest(facts, ids[: i + 1])
        summary = build_summary(cfg, subset(dataset, ids[: i + 1]), frame, table, merged, answer_meter.as_dict(),
                                judge, embedder_id, time.perf_counter() - t0)
        summary["ingest"].update({k: merged[k] for k in ("cache_hit_rate", "seconds_this_run", "per_conversation")})
        if on_step is not None:
            on_step(i, summary)
    return summary, frame


def write_outputs(out_dir: Path, summary: dict, frame: pl.DataFrame, cfg: DictConfig) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    frame.write_parquet(out_dir / "questions.parquet")
    (out_dir / "policy.json").write_text(json.dumps(OmegaConf.to_container(cfg.policy, resolve=True), indent=2))
    return [out_dir / "summary.json", out_dir / "questions.parquet", out_dir / "policy.json"]


# ------------------------------------------------------------------------------------------------ the sweep

def make_storage(cfg: DictConfig, on_stale) -> optuna.storages.BaseStorage:
    """An RDB storage (any SQLAlchemy URL; relative sqlite paths made absolute) with a heartbeat, or a journal
    file (a path ending in .journal/.log, no heartbeat: dead local workers are still detected by pid)."""
    url = str(cfg.storage)
    if url.endswith((".journal", ".log")) and "://" not in url:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    url = absolute_sqlite(url)
    hb = cfg.heartbeat
    return optuna.storages.RDBStorage(
        url, engine_kwargs={"connect_args": {"timeout": 120}} if url.startswith("sqlite") else None,
        heartbeat_interval=hb.interval, grace_period=hb.grace_period, heartbeat_stale_trial_callback=on_stale)


def storage_label(cfg: DictConfig) -> str:
    url = str(cfg.sweep.storage)
    return str(Path(url).resolve()) if url.endswith((".journal", ".log")) and "://" not in url else absolute_sqlite(url)


def signature(space: SearchSpace, objectives: Sequence[Objective], tune: Sequence[str], cfg: DictConfig) -> dict:
    """What must not change while a study is resumed (n_trials may)."""
    return {"search_space": space.describe(), "objectives": [o.__dict__ for o in objectives], "tune": list(tune),
            "dataset": {"name": cfg.dataset.name, "path": str(cfg.dataset.path)}}


class Sweep:
    def __init__(self, cfg: DictConfig, out_dir: Path, base_overrides: Sequence[str], config_name: str = "sweep"):
        self.cfg, self.out_dir = cfg, out_dir
        self.base_overrides = [o for o in base_overrides if not o.startswith("hydra.")]
        self.config_name = config_name
        self.space = SearchSpace.from_config(cfg.search_space)
        self.objectives = objectives_from(cfg)
        self.n_trials = int(cfg.sweep.n_trials)
        self.worker = worker_id()
        self.tracker: NullTracker = NullTracker()
        self.ran: list[int] = []  # trial numbers this process ran
        ds = cfg.dataset
        self.dataset = load_locomo(resolve_path(ds.path), conversations=ds.conversations,
                                   max_sessions=ds.max_sessions, max_questions=ds.max_questions)
        self.tune, self.holdout = split_ids(cfg, self.dataset)
        directions = [o.direction for o in self.objectives]
        # workers starting together race to create the storage's tables and the study: retry
        self.storage = retrying(lambda: make_storage(cfg.sweep, self._on_stale), "open the Optuna storage")
        self.study = retrying(lambda: optuna.create_study(
            storage=self.storage, study_name=str(cfg.sweep.study_name), directions=directions, load_if_exists=True,
            sampler=self._sampler(0), pruner=instantiate(cfg.sweep.pruner)), "create or load the study")
        if list(self.study.directions) != [optuna.study.StudyDirection[d.upper()] for d in directions]:
            raise ValueError(f"study {cfg.sweep.study_name!r} exists with directions {self.study.directions}, not "
                             f"{directions}: choose another sweep.study_name")
        sig = signature(self.space, self.objectives, self.tune, cfg)
        stored = self.study.user_attrs.get("signature")
        if stored is None:
            self.study.set_user_attr("signature", sig)
            self.study.set_user_attr("holdout", list(self.holdout))
            if not self.study.trials:
                for params in cfg.sweep.get("enqueue") or []:
                    known = {k.param for k in self.space.knobs}
                    self.study.enqueue_trial({k: v for k, v in dict(params).items() if k in known})
        elif json.loads(json.dumps(stored)) != json.loads(json.dumps(sig)):
            raise ValueError(f"study {cfg.sweep.study_name!r} in {storage_label(cfg)} was started with another search "
                             f"space / objectives / tune split:\n  stored: {stored}\n  now:    {sig}\n"
                             "Resume with the same settings, or start a new study with sweep.study_name=<new name>.")

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
        self.study.enqueue_trial(trial.params, user_attrs={"retry_of": history[0], "retry_history": history},
                                 skip_if_exists=False)
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
        ahead = [t for t in self.study.get_trials(deepcopy=False)
                 if t.state in FINISHED or (t.state == TrialState.RUNNING and t.number < trial.number)]
        if len(ahead) >= self.n_trials:
            trial.set_user_attr("surplus", True)
            raise Surplus(f"the study already has {len(ahead)} finished or earlier running trials "
                          f"(n_trials={self.n_trials}): this one is not needed")
        t0 = time.perf_counter()
        overrides = self.space.suggest(trial)
        trial.set_user_attr("overrides", overrides)
        # memtune-export re-composes the trial's config from these exactly as compose() does
        trial.set_user_attr("base_overrides", list(self.base_overrides))
        trial.set_user_attr("config_name", self.config_name)
        run_id = self.tracker.start_trial(trial.number, {**trial.params, "overrides": " ".join(overrides)})
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
            print(f"[sweep] trial {trial.number:3d} COMPLETE  "
                  + "  ".join(f"{o.name}={v:.4g}" for o, v in zip(self.objectives, values))
                  + f"  ({seconds:.1f} s, ingest cache {summary['ingest']['cache_hit_rate']:.0%})  {' '.join(overrides)}",
                  flush=True)
            return values[0] if single else values
        except optuna.TrialPruned:
            seconds = time.perf_counter() - t0
            trial.set_user_attr("seconds", round(seconds, 2))
            self._log_trial(run_id, "KILLED", cfg_t, last.get("summary"), [], None, seconds, state="PRUNED")
            print(f"[sweep] trial {trial.number:3d} PRUNED after {len(steps)} conversation(s) "
                  f"({seconds:.1f} s)  {' '.join(overrides)}", flush=True)
            raise
        except Exception as err:
            error = f"{type(err).__name__}: {err}"
            trial.set_user_attr("error", error[:2000])
            trial.set_user_attr("traceback", traceback.format_exc()[-4000:])
            try:
                self.tracker.end_trial(run_id, "FAILED", error=traceback.format_exc(),
                                       params={"state": "FAIL"})
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
            last = self.study._storage.get_trial(self.study._storage.get_trial_id_from_study_id_trial_number(
                self.study._study_id, self.ran[-1])) if self.ran else None
            if last is not None and last.state == TrialState.FAIL and not last.user_attrs.get("surplus"):
                failures += 1
                if failures >= limit:
                    print(f"[sweep] {failures} trials in a row failed: this worker stops (last error: "
                          f"{last.user_attrs.get('error')})", file=sys.stderr)
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
        spread = front if len(front) <= cap else [
            front[i] for i in sorted({round(i * (len(front) - 1) / (cap - 1)) for i in range(cap)})] if cap > 1 else []
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
        self.out_dir.mkdir(parents=True, exist_ok=True)
        trials = trials_frame(self.study, self.objectives)
        trials.write_parquet(self.out_dir / "trials.parquet")
        c = self.counts()
        finished = c["COMPLETE"] + c["PRUNED"]
        heldout_cfg = self.cfg.sweep.heldout
        metrics = self._report_metrics()
        do_heldout = bool(heldout_cfg.enabled) and bool(self.holdout) and reason == "complete"
        baselines = []
        for baseline in heldout_cfg.baselines or []:
            name, extra = str(baseline.name), list(baseline.overrides or [])
            baselines.append({"name": name, "trial": None, "overrides": extra, "why": ["baseline"],
                              "tune": self.score(f"{name}-tune", extra, self.tune),
                              "heldout": self.score(name, extra, self.holdout) if do_heldout else None})
        reference = next((b["tune"] for b in baselines if b["name"] == "defaults"), None)
        front = self.front()
        why = self.pick(front, reference)
        rows, front_rows = [], []
        for t in front:
            overrides = t.user_attrs.get("overrides") or self.space.overrides_for(t.params)
            tune_scores = t.user_attrs.get("metrics") or {}
            tune_scores = {m: tune_scores.get(m) for m in metrics} | {o.metric: v for o, v in zip(self.objectives, t.values)}
            row = {"name": f"trial-{t.number}", "trial": t.number, "overrides": overrides, "why": why.get(t.number, []),
                   "tune": tune_scores,
                   "heldout": self.score(f"trial-{t.number}", overrides, self.holdout)
                   if do_heldout and t.number in why else None}
            front_rows.append(row)
            if t.number in why:
                rows.append(row)
        pareto = pl.DataFrame([{"trial": r["trial"], "overrides": " ".join(r["overrides"]), "why": "; ".join(r["why"]),
                                **{f"tune.{k}": v for k, v in r["tune"].items()},
                                **{f"heldout.{k}": (r["heldout"] or {}).get(k) for k in metrics}} for r in front_rows],
                              infer_schema_length=None) if front_rows else pl.DataFrame()
        pareto.write_parquet(self.out_dir / "pareto.parquet")
        heldout = {
            "study": self.study.study_name, "storage": storage_label(self.cfg),
            "tune_conversations": self.tune, "holdout_conversations": self.holdout,
            "note": ("'tune' scores come from the conversations the sweep tuned on (optimistic: selected on them); "
                     "'heldout' scores come only from holdout_conversations, never tuned on."
                     if do_heldout else "no held-out scores: " + (
                         "no holdout_conversations configured" if not self.holdout else
                         "heldout.enabled=false" if not heldout_cfg.enabled else f"the study did not finish ({reason})")),
            "objectives": [o.__dict__ for o in self.objectives],
            "selected": rows, "baselines": baselines,
        }
        (self.out_dir / "heldout.json").write_text(json.dumps(heldout, indent=2, default=str))
        elapsed = opt_seconds  # the optimisation loop only (not the held-out re-scoring)
        ran_here = [t for t in self.study.get_trials(deepcopy=False) if t.number in set(self.ran) and t.state in FINISHED]
        span = _span_hours(self.study)
        info = {"study": self.study.study_name, "storage": storage_label(self.cfg), "stopped": reason,
                "n_trials": self.n_trials, "states": {k: v for k, v in c.items() if v},
                "finished": finished, "this_worker": {"trials_finished": len(ran_here), "seconds": round(elapsed, 1),
                                                      "trials_per_hour": round(len(ran_here) / elapsed * 3600, 1)
                                                      if elapsed else None},
                "study_trials_per_hour": round(finished / span, 1) if span else None,
                "tune_conversations": self.tune, "holdout_conversations": self.holdout,
                "mlflow": self.tracker.ui_hint()}
        (self.out_dir / "sweep.json").write_text(json.dumps(info, indent=2))
        plots = make_plots(self.study, self.objectives, self.out_dir / "plots")
        print_report(info, heldout, self.objectives, metrics)
        finished_study = reason == "complete"
        parent_metrics = {}
        for r in rows + baselines:
            for split in ("tune", "heldout"):
                for m, v in (r[split] or {}).items():
                    parent_metrics[f"{split}.{r['name']}.{m.removeprefix('scores.overall.')}"] = v
        parent_metrics |= {"trials.finished": finished, "trials.failed": c["FAIL"],
                           "trials_per_hour": info["study_trials_per_hour"] or 0}
        try:
            self.tracker.end_study(metrics={sanitize(k): v for k, v in parent_metrics.items() if v is not None},
                                   artifacts=[self.out_dir / f for f in ("trials.parquet", "pareto.parquet",
                                                                          "heldout.json", "sweep.json")] + plots,
                                   finished=finished_study)
        except Exception as err:
            print(f"[sweep] MLflow logging of the study failed: {type(err).__name__}: {err}", file=sys.stderr)
        return info | {"heldout": heldout}

    def run(self) -> dict:
        t_start = time.perf_counter()
        self.tracker = make_tracker(self.cfg.get("tracking"))
        key = f"{storage_label(self.cfg)}#{self.study.study_name}"
        self.tracker.start_study(
            key=_digest(key), name=self.study.study_name,
            params={"n_trials": self.n_trials, "storage": storage_label(self.cfg),
                    "tune_conversations": ",".join(self.tune), "holdout_conversations": ",".join(self.holdout),
                    "objectives": json.dumps([o.__dict__ for o in self.objectives]),
                    "sampler": json.dumps(OmegaConf.to_container(self.cfg.sweep.sampler, resolve=True)),
                    "pruner": json.dumps(OmegaConf.to_container(self.cfg.sweep.pruner, resolve=True)),
                    "base_overrides": " ".join(self.base_overrides),
                    **{f"space.{k}": v for k, v in self.space.describe().items()}},
            tags={"memtune.study": self.study.study_name})
        c = self.counts()
        print(f"[sweep] study {self.study.study_name!r} in {storage_label(self.cfg)}: "
              f"{c['COMPLETE'] + c['PRUNED']}/{self.n_trials} finished ({c['FAIL']} failed, {c['RUNNING']} running, "
              f"{c['WAITING']} queued); tune on {self.tune}, hold out {self.holdout}", flush=True)
        if len(self.objectives) > 1:
            print("[sweep] multi-objective study: no pruning (Optuna's Trial.report is single-objective only)")
        reason = self.optimize()
        return self.report(reason, time.perf_counter() - t_start)


# ------------------------------------------------------------------------------------------------ reporting

def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _maybe(summary: Mapping[str, Any], path: str) -> Any:
    try:
        return get_path(summary, path)
    except KeyError:
        return None


def _span_hours(study: optuna.Study) -> float | None:
    done = [t for t in study.get_trials(deepcopy=False) if t.state in FINISHED and t.datetime_complete]
    starts = [t.datetime_start for t in study.get_trials(deepcopy=False) if t.datetime_start]
    if not done or not starts:
        return None
    return (max(t.datetime_complete for t in done) - min(starts)).total_seconds() / 3600 or None


def trials_frame(study: optuna.Study, objectives: Sequence[Objective]) -> pl.DataFrame:
    """One row per trial: state, objective values, knobs (numeric where every value is), timing, errors."""
    trials = study.get_trials(deepcopy=False)
    names = sorted({p for t in trials for p in t.params})
    numeric = {p: all(isinstance(t.params.get(p), (int, float)) for t in trials if p in t.params) for p in names}
    rows = []
    for t in trials:
        values = t.values if t.values is not None else [None] * len(objectives)
        if t.state == TrialState.PRUNED and t.intermediate_values:
            values = [t.intermediate_values[max(t.intermediate_values)]] + [None] * (len(objectives) - 1)
        row = {"number": t.number, "state": t.state.name,
               **{f"value.{o.name}": (float(v) if v is not None else None) for o, v in zip(objectives, values)},
               **{f"param.{p}": (float(t.params[p]) if numeric[p] else str(t.params[p])) if p in t.params else None
                  for p in names},
               "overrides": " ".join(t.user_attrs.get("overrides") or []),
               "seconds": t.user_attrs.get("seconds"),
               "cache_hit_rate": t.user_attrs.get("cache_hit_rate"),
               "datetime_start": t.datetime_start, "datetime_complete": t.datetime_complete,
               "worker": t.user_attrs.get("worker"), "error": t.user_attrs.get("error"),
               "surplus": bool(t.user_attrs.get("surplus", False)), "retry_of": t.user_attrs.get("retry_of"),
               "steps": len(t.intermediate_values)}
        rows.append(row)
    return pl.DataFrame(rows, infer_schema_length=None)


def make_plots(study: optuna.Study, objectives: Sequence[Objective], out: Path) -> list[Path]:
    """Optimisation history, Pareto front (2+ objectives) and parameter importances as PNG (matplotlib)."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    out.mkdir(parents=True, exist_ok=True)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if len(complete) < 2:
        return []
    jobs = []
    names = [o.name for o in objectives]
    if len(objectives) >= 2:
        jobs.append(("pareto_front.png", lambda: ovm.plot_pareto_front(study, target_names=names[:3])))
    for i, o in enumerate(objectives):
        target = (lambda t, i=i: t.values[i]) if len(objectives) > 1 else None
        jobs.append((f"history_{o.name}.png",
                     lambda target=target, o=o: ovm.plot_optimization_history(study, target=target, target_name=o.name)))
        jobs.append((f"importances_{o.name}.png",
                     lambda target=target, o=o: ovm.plot_param_importances(study, target=target, target_name=o.name)))
    written = []
    for name, job in jobs:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = job()
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(9, 6)
            fig.tight_layout()
            fig.savefig(out / name, dpi=80)
            plt.close(fig)
            written.append(out / name)
        except Exception as err:  # e.g. importances need varying knobs
            print(f"[sweep] plot {name} skipped: {type(err).__name__}: {err}")
    return written


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def print_report(info: dict, heldout: dict, objectives: Sequence[Objective], metrics: Sequence[str]) -> None:
    short = [m.removeprefix("scores.overall.").removeprefix("cost.") for m in metrics]
    print(f"\n[sweep] study {info['study']!r}: {info['finished']}/{info['n_trials']} finished, states {info['states']}; "
          f"stopped: {info['stopped']}")
    print(f"[sweep] this worker: {info['this_worker']['trials_finished']} trials in {info['this_worker']['seconds']} s "
          f"({info['this_worker']['trials_per_hour']} trials/hour); study: {info['study_trials_per_hour']} trials/hour")
    print(f"[sweep] tuned on {heldout['tune_conversations']}; held out {heldout['holdout_conversations']}")
    print(f"[sweep] {heldout['note']}")
    kind = "Pareto front (re-scored members)" if len(objectives) > 1 else "best trial"
    print(f"\n{kind}; objectives: " + ", ".join(f"{o.direction} {o.metric}" for o in objectives))
    print("each cell: tune split / held-out split")
    print("| row | " + " | ".join(short) + " |")
    print("|---|" + "---|" * len(short))
    for r in heldout["selected"] + heldout["baselines"]:
        tune, held = r["tune"] or {}, r["heldout"] or {}
        print(f"| {r['name']} | " + " | ".join(f"{_fmt(tune.get(m))} / {_fmt(held.get(m))}" for m in metrics) + " |")
    print("\nknobs:")
    for r in heldout["selected"]:
        print(f"  {r['name']} ({'; '.join(r['why'])}): {' '.join(r['overrides'])}")
    for r in heldout["baselines"]:
        print(f"  {r['name']} (baseline): {' '.join(r['overrides']) or '(no overrides: the base config)'}")
    print(f"\n[sweep] {info['mlflow']}")


def run_sweep(cfg: DictConfig, out_dir: Path, base_overrides: Sequence[str] = (), config_name: str = "sweep") -> dict:
    """Run (or resume) the study; Hydra must be initialised (hydra.main or `initialize_config_dir`)."""
    if not GlobalHydra.instance().is_initialized():
        raise RuntimeError("run_sweep needs an initialised Hydra: use main() or sweep_from_overrides()")
    configure_dspy_cache(cfg.cache_dir)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import warnings

    # fail_stale_trials and TPESampler(group=True) are "experimental" in Optuna 5: said once in the docs, not per trial
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return Sweep(cfg, out_dir, base_overrides, config_name).run()


def sweep_from_overrides(overrides: Sequence[str], out_dir: str | Path) -> dict:
    """The sweep as a function (tests, notebooks): compose conf/sweep.yaml with `overrides` and run it."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="sweep", overrides=list(overrides))
        return run_sweep(cfg, Path(out_dir), overrides)


@hydra.main(config_path="../conf", config_name="sweep", version_base="1.3")
def main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    run_sweep(cfg, Path(hc.runtime.output_dir), list(hc.overrides.task), hc.job.config_name or "sweep")


if __name__ == "__main__":
    main()
