"""The report of memtune-sweep: trials and Pareto frames, held-out re-scoring of the chosen trials, plots, the
printed table, and the study's parent MLflow run. `Sweep.report` (study.py) calls `write_report`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
import polars as pl
from optuna.trial import TrialState

from .pareto import pareto_front, pick_for_heldout
from .plots import make_plots
from .run_record import sanitize
from .scoring import Objective, get_path
from .workers import FINISHED, storage_label

REPORT_METRICS = (
    "scores.overall.evidence_recall",
    "scores.overall.context_tokens",
    "scores.overall.recall_ctx_1000",
    "scores.overall.f1",
    "cost.memories_stored",
)


def write_report(sweep, reason: str, opt_seconds: float) -> dict:
    """The end of a sweep: trials.parquet, the Pareto front (re-scored on the held-out conversations when the study
    finished), heldout.json, sweep.json, plots, the printed table, and the study's MLflow run."""
    sweep.out_dir.mkdir(parents=True, exist_ok=True)
    trials = trials_frame(sweep.study, sweep.objectives)
    trials.write_parquet(sweep.out_dir / "trials.parquet")
    c = sweep.counts()
    finished = c["COMPLETE"] + c["PRUNED"]
    heldout_cfg = sweep.cfg.sweep.heldout
    metrics = sweep._report_metrics()
    do_heldout = bool(heldout_cfg.enabled) and bool(sweep.holdout) and reason == "complete"
    baselines = []
    for baseline in heldout_cfg.baselines or []:
        name, extra = str(baseline.name), list(baseline.overrides or [])
        baselines.append(
            {
                "name": name,
                "trial": None,
                "overrides": extra,
                "why": ["baseline"],
                "tune": sweep.score(f"{name}-tune", extra, sweep.tune),
                "heldout": sweep.score(name, extra, sweep.holdout) if do_heldout else None,
            }
        )
    reference = next((b["tune"] for b in baselines if b["name"] == "defaults"), None)
    front = pareto_front(sweep.study, sweep.objectives)
    why = pick_for_heldout(front, sweep.objectives, int(heldout_cfg.max_pareto), reference)
    rows, front_rows = [], []
    for t in front:
        overrides = t.user_attrs.get("overrides") or sweep.space.overrides_for(t.params)
        tune_scores = t.user_attrs.get("metrics") or {}
        tune_scores = {m: tune_scores.get(m) for m in metrics} | {
            o.metric: v for o, v in zip(sweep.objectives, t.values)
        }
        row = {
            "name": f"trial-{t.number}",
            "trial": t.number,
            "overrides": overrides,
            "why": why.get(t.number, []),
            "tune": tune_scores,
            "heldout": sweep.score(f"trial-{t.number}", overrides, sweep.holdout)
            if do_heldout and t.number in why
            else None,
        }
        front_rows.append(row)
        if t.number in why:
            rows.append(row)
    pareto = (
        pl.DataFrame(
            [
                {
                    "trial": r["trial"],
                    "overrides": " ".join(r["overrides"]),
                    "why": "; ".join(r["why"]),
                    **{f"tune.{k}": v for k, v in r["tune"].items()},
                    **{f"heldout.{k}": (r["heldout"] or {}).get(k) for k in metrics},
                }
                for r in front_rows
            ],
            infer_schema_length=None,
        )
        if front_rows
        else pl.DataFrame()
    )
    pareto.write_parquet(sweep.out_dir / "pareto.parquet")
    heldout = {
        "study": sweep.study.study_name,
        "storage": storage_label(sweep.cfg),
        "tune_conversations": sweep.tune,
        "holdout_conversations": sweep.holdout,
        "note": (
            "'tune' scores come from the conversations the sweep tuned on (optimistic: selected on them); "
            "'heldout' scores come only from holdout_conversations, never tuned on."
            if do_heldout
            else "no held-out scores: "
            + (
                "no holdout_conversations configured"
                if not sweep.holdout
                else "heldout.enabled=false"
                if not heldout_cfg.enabled
                else f"the study did not finish ({reason})"
            )
        ),
        "objectives": [o.__dict__ for o in sweep.objectives],
        "selected": rows,
        "baselines": baselines,
    }
    (sweep.out_dir / "heldout.json").write_text(json.dumps(heldout, indent=2, default=str))
    elapsed = opt_seconds  # the optimisation loop only (not the held-out re-scoring)
    ran_here = [t for t in sweep.study.get_trials(deepcopy=False) if t.number in set(sweep.ran) and t.state in FINISHED]
    span = _span_hours(sweep.study)
    info = {
        "study": sweep.study.study_name,
        "storage": storage_label(sweep.cfg),
        "stopped": reason,
        "n_trials": sweep.n_trials,
        "states": {k: v for k, v in c.items() if v},
        "finished": finished,
        "this_worker": {
            "trials_finished": len(ran_here),
            "seconds": round(elapsed, 1),
            "trials_per_hour": round(len(ran_here) / elapsed * 3600, 1) if elapsed else None,
        },
        "study_trials_per_hour": round(finished / span, 1) if span else None,
        "tune_conversations": sweep.tune,
        "holdout_conversations": sweep.holdout,
        "mlflow": sweep.tracker.ui_hint(),
    }
    (sweep.out_dir / "sweep.json").write_text(json.dumps(info, indent=2))
    plots = make_plots(sweep.study, sweep.objectives, sweep.out_dir / "plots")
    print_report(info, heldout, sweep.objectives, metrics)
    finished_study = reason == "complete"
    parent_metrics = {}
    for r in rows + baselines:
        for split in ("tune", "heldout"):
            for m, v in (r[split] or {}).items():
                parent_metrics[f"{split}.{r['name']}.{m.removeprefix('scores.overall.')}"] = v
    parent_metrics |= {
        "trials.finished": finished,
        "trials.failed": c["FAIL"],
        "trials_per_hour": info["study_trials_per_hour"] or 0,
    }
    try:
        sweep.tracker.end_study(
            metrics={sanitize(k): v for k, v in parent_metrics.items() if v is not None},
            artifacts=[sweep.out_dir / f for f in ("trials.parquet", "pareto.parquet", "heldout.json", "sweep.json")]
            + plots,
            finished=finished_study,
        )
    except Exception as err:
        print(f"[sweep] MLflow logging of the study failed: {type(err).__name__}: {err}", file=sys.stderr)
    return info | {"heldout": heldout}


def _maybe(summary: Mapping[str, Any], path: str) -> Any:
    try:
        return get_path(summary, path)
    except KeyError:
        return None


def _span_hours(study: optuna.Study) -> float | None:
    trials = study.get_trials(deepcopy=False)
    ends = [end for t in trials if t.state in FINISHED and (end := t.datetime_complete) is not None]
    starts = [start for t in trials if (start := t.datetime_start) is not None]
    if not ends or not starts:
        return None
    return (max(ends) - min(starts)).total_seconds() / 3600 or None


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
        row = {
            "number": t.number,
            "state": t.state.name,
            **{f"value.{o.name}": (float(v) if v is not None else None) for o, v in zip(objectives, values)},
            **{
                f"param.{p}": (float(t.params[p]) if numeric[p] else str(t.params[p])) if p in t.params else None
                for p in names
            },
            "overrides": " ".join(t.user_attrs.get("overrides") or []),
            "seconds": t.user_attrs.get("seconds"),
            "cache_hit_rate": t.user_attrs.get("cache_hit_rate"),
            "datetime_start": t.datetime_start,
            "datetime_complete": t.datetime_complete,
            "worker": t.user_attrs.get("worker"),
            "error": t.user_attrs.get("error"),
            "surplus": bool(t.user_attrs.get("surplus", False)),
            "retry_of": t.user_attrs.get("retry_of"),
            "steps": len(t.intermediate_values),
            # sweep.constraints: each limit's violation (<= 0 holds) and whether the trial kept them all
            **{f"constraint.{k}": float(v) for k, v in t.constraints.items()},
            "feasible": all(v <= 0 for v in t.constraints.values()) if t.constraints else None,
        }
        rows.append(row)
    return pl.DataFrame(rows, infer_schema_length=None)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def print_report(info: dict, heldout: dict, objectives: Sequence[Objective], metrics: Sequence[str]) -> None:
    short = [m.removeprefix("scores.overall.").removeprefix("cost.") for m in metrics]
    print(
        f"\n[sweep] study {info['study']!r}: {info['finished']}/{info['n_trials']} finished, states {info['states']}; "
        f"stopped: {info['stopped']}"
    )
    print(
        f"[sweep] this worker: {info['this_worker']['trials_finished']} trials in {info['this_worker']['seconds']} s "
        f"({info['this_worker']['trials_per_hour']} trials/hour); study: {info['study_trials_per_hour']} trials/hour"
    )
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
