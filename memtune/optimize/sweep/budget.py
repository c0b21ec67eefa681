"""What a sweep spends, and `sweep.budget_usd`: the sweep starts no trial whose projected cost would take its spend past
the budget. And `memtune-sweep dry_run=true`: the cost of a whole sweep, projected before it starts.

Spend is the study's (every worker's trials, and resumed runs' too), kept in Optuna user attributes: each trial
records `usd_spent` / `tokens_spent` (what it paid: an ingestion reused from the ingestion cache was paid before)
and `usd_total` (its config's full cost, ingestion included); the dry run that projected the first trial records
what its sample cost on the study. A trial that failed before scoring records nothing (its LM calls are unknown).

A trial's projected cost is the most any finished trial's config cost (`usd_total`): a conservative guess, since a
trial that reuses a cached ingestion costs less. Before any trial has finished it is the dry run's projection of
the base config on the tune conversations (run once per study, then stored). With a budget, a model without a
price (conf/lm/prices.yaml) is an error: its dollars are unknown, so no budget could hold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig
from optuna.trial import TrialState

from ..evaluation.dry_run import dry_run, priced
from ..evaluation.dry_run import table as dry_run_table
from ..evaluation.projection import ConversationCounts, project_wall
from .scoring import subset

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def record_spend(trial: optuna.Trial, summary: dict | None) -> None:
    """The trial's cost in its user attributes (from its summary.json, or the partial one of a pruned trial)."""
    if not summary:
        return
    cost = summary.get("cost", {})
    usd, tokens = cost.get("usd") or {}, cost.get("tokens") or {}
    trial.set_user_attr("usd_total", usd.get("total"))
    trial.set_user_attr("usd_spent", usd.get("spent"))
    trial.set_user_attr("tokens_spent", tokens.get("spent"))


class Budget:
    def __init__(self, cfg: DictConfig, study: optuna.Study, dataset, tune: list[str], out_dir: Path):
        limit = cfg.sweep.get("budget_usd")
        self.limit = None if limit is None else float(limit)
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"sweep.budget_usd must be >= 0 (or null: no budget), got {limit!r}")
        self.cfg, self.study, self.dataset, self.tune, self.out_dir = cfg, study, dataset, tune, out_dir

    def spent(self) -> tuple[float, int, int]:
        """(USD, tokens, trials with a recorded cost) spent by the study so far, dry-run samples included."""
        usd = float(self.study.user_attrs.get("dry_run_usd") or 0.0)
        tokens, n = int(self.study.user_attrs.get("dry_run_tokens") or 0), 0
        for t in self.study.get_trials(deepcopy=False):
            if t.user_attrs.get("usd_spent") is not None or t.user_attrs.get("tokens_spent") is not None:
                usd += float(t.user_attrs.get("usd_spent") or 0.0)
                tokens += int(t.user_attrs.get("tokens_spent") or 0)
                n += 1
        return usd, tokens, n

    def projected_trial(self) -> tuple[float, str]:
        """(USD, where it comes from) of the next trial."""
        totals = [
            float(t.user_attrs["usd_total"])
            for t in self.study.get_trials(deepcopy=False, states=FINISHED)
            if t.user_attrs.get("usd_total") is not None
        ]
        if totals:
            return max(totals), f"the costliest of {len(totals)} finished trials"
        if self.study.user_attrs.get("projected_trial_usd") is None:
            result = dry_run(self.cfg, subset(self.dataset, self.tune), self.out_dir / "budget_dry_run", progress=False)
            sample, projected = result["sample"]["cost"]["total"], result["projection"]["total"]["usd"]
            if projected is None:
                raise ValueError(
                    "sweep.budget_usd: the LM has no price in conf/lm/prices.yaml (or prices=<file>), so no budget can "
                    "be kept: add its USD per 1M input/output tokens, or run without a budget"
                )
            self.study.set_user_attr("projected_trial_usd", projected)
            self.study.set_user_attr(
                "dry_run_usd", float(self.study.user_attrs.get("dry_run_usd") or 0) + (sample["usd"] or 0)
            )
            self.study.set_user_attr(
                "dry_run_tokens",
                int(self.study.user_attrs.get("dry_run_tokens") or 0)
                + sample["prompt_tokens"]
                + sample["completion_tokens"],
            )
        return float(self.study.user_attrs["projected_trial_usd"]), "the dry run of the base config"

    def allows_next(self) -> bool:
        """False (and says why) when the next trial's projected cost would take the spend past the budget."""
        if self.limit is None:
            return True
        spent, _, _ = self.spent()
        projected, source = self.projected_trial()
        if spent + projected <= self.limit:
            return True
        print(
            f"[sweep] budget: spent ${spent:.4f} of ${self.limit:.2f}; the next trial is projected at ${projected:.4f} "
            f"({source}), which would exceed it: no more trials start (raise sweep.budget_usd to go on)",
            flush=True,
        )
        return False

    def line(self) -> str:
        spent, tokens, n = self.spent()
        left = (
            f" of ${self.limit:.2f} budget (${max(self.limit - spent, 0):.4f} left)" if self.limit is not None else ""
        )
        return f"[sweep] spent so far: ${spent:.4f}{left}, {tokens:,} LM tokens ({n} trials with a recorded cost)"


def sweep_dry_run(cfg: DictConfig, dataset, tune: list[str], holdout: list[str], out_dir: Path) -> dict:
    """Project a whole sweep from one dry run of its base config over the tune and held-out conversations."""
    ids = [*tune, *holdout]
    result = dry_run(cfg, subset(dataset, ids), out_dir, progress=bool(cfg.progress))
    per = result["per_conversation"]
    judge = None
    if cfg.get("judge"):
        from hydra.utils import instantiate

        judge = instantiate(cfg.judge)

    def cost(conversations: list[str], parts=("ingest", "answer"), times: float = 1.0) -> dict:
        phases: dict[str, dict] = {}
        for cid in conversations:
            for part in parts:
                for phase, row in per[cid][part].items():
                    into = phases.setdefault(phase, {})
                    for k, v in row.items():
                        into[k] = into.get(k, 0.0) + v * times
        return priced(phases, cfg, judge)

    n, heldout = int(cfg.sweep.n_trials), cfg.sweep.get("heldout") or {}
    rescored = min(int(heldout.get("max_pareto", 0)), n) if heldout.get("enabled") and holdout else 0
    baselines = len(heldout.get("baselines") or []) if heldout.get("enabled") else 0
    trial = cost(tune)
    report = cost(holdout, times=rescored)["total"]["usd"], cost(ids, times=baselines)["total"]["usd"]
    counts = [ConversationCounts(**c) for c in result["conversations"] if c["conversation"] in tune]
    ingest = {c: per[c]["ingest"] for c in tune}
    answers = {c: per[c]["answer"] for c in tune}
    cpu = result["cpu_seconds"]
    walls = {
        k: project_wall(
            ingest,
            answers,
            counts,
            result["latency_s"],
            cpu["per_pair"],
            cpu["per_question"],
            int(k),
            result["together"],
        )
        for k in result["wall"]  # concurrency 1 and lm.max_concurrency
    }
    usd = trial["total"]["usd"]
    extra = None if None in report else sum(report)
    sweep_usd = {
        "upper": None if usd is None or extra is None else round(n * usd + extra, 4),
        "lower": _lower(cost, tune, n, extra),
    }
    out = {
        "dry_run": result,
        "trial": trial | {"wall": walls},
        "n_trials": n,
        "report_rescoring_usd": extra,
        "sweep_usd": sweep_usd,
    }
    (out_dir / "sweep_dry_run.json").write_text(json.dumps(out, indent=2))
    print(dry_run_table(result))
    print(
        f"one trial (base config, {len(tune)} tune conversations): {_money(usd)}, "
        + ", ".join(f"{w['total_seconds'] / 60:.1f} min at concurrency {k}" for k, w in walls.items())
        + f"; {n} trials: {_money(sweep_usd['upper'])} if every trial ingests anew, "
        f"{_money(sweep_usd['lower'])} if all reuse one ingestion (retrieval/answer knobs only); held-out "
        f"re-scoring {_money(extra)} ({rescored} front trials + {baselines} baselines, at the base config's cost)"
    )
    return out


def _lower(cost, tune: list[str], n: int, extra: float | None) -> float | None:
    ingest, answer = cost(tune, ("ingest",))["total"]["usd"], cost(tune, ("answer",))["total"]["usd"]
    if None in (ingest, answer, extra):
        return None
    return round(ingest + n * answer + extra, 4)


def _money(value: Any) -> str:
    return "n/a (no price)" if value is None else f"${value:,.2f}"
