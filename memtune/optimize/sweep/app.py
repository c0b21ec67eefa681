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

Files (optimize/sweep/): this one is the app (main, run_sweep); study.py drives the study (Sweep); trial.py runs
one trial (Optuna's objective); scoring.py holds the objectives, the tune/holdout split and the per-conversation
scoring of a config; pareto.py picks the front trials re-scored on the held-out conversations; report.py writes the
report; workers.py holds workers and the storage; identity.py the signature and the refusal; knob_deps.py which
knobs the objectives depend on; search_space.py the knobs; tracking.py the MLflow runs.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import hydra
import optuna
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ..data.load import load_from_config
from ..evaluation.app import configure_dspy_cache
from .budget import sweep_dry_run
from .identity import StudyMismatch
from .knob_deps import KnobNotSampledWarning
from .scoring import split_ids
from .study import Sweep

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def run_sweep(cfg: DictConfig, out_dir: Path, base_overrides: Sequence[str] = (), config_name: str = "sweep") -> dict:
    """Run (or resume) the study; Hydra must be initialised (hydra.main or `initialize_config_dir`)."""
    if not GlobalHydra.instance().is_initialized():
        raise RuntimeError("run_sweep needs an initialised Hydra: use main() or sweep_from_overrides()")
    configure_dspy_cache(cfg.cache_dir)
    if cfg.get("dry_run"):  # project the sweep's LM calls, dollars and wall time; run no trial (budget.py)
        return dry_run_sweep(cfg, out_dir)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # fail_stale_trials and TPESampler(group=True) are "experimental" in Optuna 5: said once in the docs, not per trial
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return Sweep(cfg, out_dir, base_overrides, config_name).run()


def dry_run_sweep(cfg: DictConfig, out_dir: Path) -> dict:
    dataset = load_from_config(cfg.dataset)
    tune, holdout = split_ids(cfg, dataset)
    return sweep_dry_run(cfg, dataset, tune, holdout, out_dir)


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
