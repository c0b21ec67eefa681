"""Check a finished distributed sweep: the study and its MLflow runs after a fault (or none).

    python scripts/faults/check.py STORAGE_URL STUDY N_TRIALS --mlflow URL --experiment NAME [--logs w1.log ...]
        [--before before.json]

Checks (each printed ok/BAD, then PASS/FAIL; exit 1 on FAIL):
  - exactly N finished trials (COMPLETE + PRUNED) and nothing left RUNNING;
  - no trial run twice: no retry of a finished trial, at most one finished trial per retry chain, no trial
    number reported COMPLETE twice in the worker logs, and the study's first trials (sweep.enqueue) enqueued once,
    not once per worker; finished trials with equal knobs that are none of these (independent draws of the
    sampler) are listed;
  - no completed trial lost: every trial a worker log reported COMPLETE (and, with --before, every trial COMPLETE
    in that snapshot) is COMPLETE in the study with the same values;
  - MLflow: no run of the experiment left RUNNING (deleted ones included), one parent run, FINISHED, with every
    trial run nested under it, and each finished trial has exactly one active run with the status its state
    implies.
Informational: knobs repeated by the sampler across trials that are not retries of each other.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import warnings
from collections import Counter, defaultdict

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
warnings.filterwarnings("ignore")

import optuna  # noqa: E402

COMPLETE_LINE = re.compile(r"^\[sweep\] trial +(\d+) COMPLETE")
WANT = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}


def trial_rows(storage: str, study_name: str) -> list[dict]:
    study = optuna.load_study(study_name=study_name, storage=storage)
    return [
        {
            "number": t.number,
            "state": t.state.name,
            "values": list(t.values) if t.values else None,
            "params": t.params,
            "worker": t.user_attrs.get("worker"),
            "retry_of": t.user_attrs.get("retry_of"),
            "retry_history": t.user_attrs.get("retry_history"),
            "surplus": bool(t.user_attrs.get("surplus")),
            "error": (t.user_attrs.get("error") or "")[:120],
            "mlflow_run_id": t.user_attrs.get("mlflow_run_id"),
            "started": t.datetime_start,
            "enqueued": "fixed_params" in t.system_attrs,  # sweep.enqueue or a retry (Optuna's enqueue_trial)
        }
        for t in study.get_trials(deepcopy=False)
    ]


def mlflow_runs(url: str, experiment: str) -> list[dict]:
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(url)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    out, token = [], None
    while True:
        page = client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL, max_results=1000, page_token=token)
        out += [
            {
                "run_id": r.info.run_id,
                "status": r.info.status,
                "deleted": r.info.lifecycle_stage == "deleted",
                "role": r.data.tags.get("memtune.role"),
                "trial": int(r.data.tags["memtune.trial"]) if "memtune.trial" in r.data.tags else None,
                "parent": r.data.tags.get("mlflow.parentRunId"),
                "tags": {k: v for k, v in r.data.tags.items() if k.startswith("memtune.") and k != "memtune.error"},
            }
            for r in page
        ]
        token = page.token
        if not token:
            return out


def check(rows, runs, n_trials, logs=(), before=None, n_enqueue=1) -> tuple[dict[str, bool], dict]:
    """n_enqueue: how many first trials the sweep config enqueues (conf/sweep/default.yaml: the default policy)."""
    by_number = {r["number"]: r for r in rows}
    finished = [r for r in rows if r["state"] in ("COMPLETE", "PRUNED")]
    # retry chains: a retry names the first trial of its chain (retry_of) and every earlier attempt (retry_history)
    chains: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        chains[r["retry_of"] if r["retry_of"] is not None else r["number"]].append(r)
    retried_finished = [
        r["number"]
        for r in rows
        for earlier in (r["retry_history"] or [])
        if by_number.get(earlier, {}).get("state") in ("COMPLETE", "PRUNED")
    ]
    chain_doubles = {k: [r["number"] for r in v] for k, v in chains.items() if sum(r in finished for r in v) > 1}
    logged = Counter(int(m.group(1)) for path in logs for line in open(path) if (m := COMPLETE_LINE.match(line)))
    logged_twice = sorted(n for n, c in logged.items() if c > 1)
    lost = sorted(n for n in logged if by_number.get(n, {}).get("state") != "COMPLETE")
    before_done = {r["number"]: r for r in before or [] if r["state"] == "COMPLETE"}
    changed = sorted(n for n, r in before_done.items() if by_number.get(n, {}).get("values") != r["values"])
    # MLflow
    running = [r for r in runs if r["status"] == "RUNNING"]
    parents = [r for r in runs if r["role"] == "study" and not r["deleted"]]
    active = defaultdict(list)
    for r in runs:
        if r["role"] == "trial" and not r["deleted"] and r["trial"] is not None:
            active[r["trial"]].append(r)
    bad_runs = {}
    for r in finished:
        mine = [x for x in active.get(r["number"], []) if x["status"] == WANT[r["state"]]]
        if len(mine) != 1:
            bad_runs[r["number"]] = [x["status"] for x in active.get(r["number"], [])]
    # the first trials (sweep.enqueue) are enqueued by the study's creator only: workers that each enqueued them
    # ran the default policy twice. Other finished trials with the same knobs are the sampler's independent draws
    # (listed: in this space top_k=1 alone has a 24% chance per random draw)
    first_enqueued = [r["number"] for r in rows if r.get("enqueued") and r["retry_of"] is None]
    groups = defaultdict(list)
    for r in finished:
        groups[json.dumps(r["params"], sort_keys=True)].append(r["number"])
    repeats = [sorted(v) for v in groups.values() if len(v) > 1]
    checks = {
        f"exactly {n_trials} finished trials": len(finished) == n_trials,
        "nothing left RUNNING in the study": not any(r["state"] == "RUNNING" for r in rows),
        "no finished trial was retried": not retried_finished,
        "at most one finished trial per retry chain": not chain_doubles,
        "no trial number logged COMPLETE twice": not logged_twice,
        f"the first trials enqueued once ({n_enqueue})": len(first_enqueued) == n_enqueue,
        "every trial logged COMPLETE is COMPLETE in the study": not lost,
        "trials COMPLETE before the fault kept their values": not changed,
        "no MLflow run left RUNNING (deleted ones included)": not running,
        "the study's parent run FINISHED": len(parents) == 1 and parents[0]["status"] == "FINISHED",
        "every trial run is nested under that parent": all(
            r["parent"] == parents[0]["run_id"] for v in active.values() for r in v
        )
        if len(parents) == 1
        else False,
        "each finished trial has exactly one run with its status": not bad_runs,
    }
    facts = {
        "states": dict(Counter(r["state"] for r in rows)),
        "finished": len(finished),
        "failed": [{k: r[k] for k in ("number", "error", "surplus", "worker")} for r in rows if r["state"] == "FAIL"],
        "retries": [
            {"number": r["number"], "retry_of": r["retry_of"], "state": r["state"]}
            for r in rows
            if r["retry_of"] is not None
        ],
        "waiting": [r["number"] for r in rows if r["state"] == "WAITING"],
        "workers": dict(Counter((r["worker"] or "?").split(":")[1] for r in finished)),
        "logged_complete": sum(logged.values()),
        "mlflow_status": dict(Counter(("deleted " if r["deleted"] else "") + r["status"] for r in runs)),
        "mlflow_tags": dict(
            Counter(
                k
                for r in runs
                for k in r["tags"]
                if k in ("memtune.settled", "memtune.duplicate", "memtune.backfilled")
            )
        ),
        "problems": {
            "retried_finished": retried_finished,
            "chain_doubles": chain_doubles,
            "logged_twice": logged_twice,
            "lost": lost,
            "changed": changed,
            "running_runs": [r["run_id"] for r in running],
            "bad_runs": bad_runs,
            "first_enqueued": first_enqueued if len(first_enqueued) != n_enqueue else [],
        },
        "repeats": repeats,
    }
    return checks, facts


def report(checks: dict[str, bool], facts: dict) -> bool:
    print(f"  study states: {facts['states']}  (finished {facts['finished']}, waiting {facts['waiting']})")
    print(f"  finished trials per worker pid: {facts['workers']}")
    for f in facts["failed"]:
        print(f"  FAIL trial {f['number']}: {'surplus' if f['surplus'] else f['error']}")
    for r in facts["retries"]:
        print(f"  trial {r['number']} is a retry of trial {r['retry_of']}: {r['state']}")
    print(f"  MLflow runs by status: {facts['mlflow_status']}; settle tags: {facts['mlflow_tags'] or 'none'}")
    print(f"  finished trials with equal knobs, not retries (independent sampler draws): {facts['repeats'] or 'none'}")
    for name, ok in checks.items():
        print(f"  {'ok ' if ok else 'BAD'} {name}")
    problems = {k: v for k, v in facts["problems"].items() if v}
    if problems:
        print(f"  problems: {json.dumps(problems)}")
    passed = all(checks.values())
    print("PASS" if passed else "FAIL")
    return passed


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("storage")
    p.add_argument("study")
    p.add_argument("n_trials", type=int)
    p.add_argument("--mlflow", required=True)
    p.add_argument("--experiment", required=True)
    p.add_argument("--logs", nargs="*", default=[])
    p.add_argument("--before", default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--n-enqueue", type=int, default=1)
    a = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    before = json.load(open(a.before)) if a.before else None
    checks, facts = check(
        trial_rows(a.storage, a.study), mlflow_runs(a.mlflow, a.experiment), a.n_trials, a.logs, before
    )
    if a.json:
        json.dump({"checks": checks, "facts": facts}, open(a.json, "w"), indent=2)
    raise SystemExit(0 if report(checks, facts) else 1)


if __name__ == "__main__":
    main()
