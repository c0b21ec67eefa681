"""The scaling table of experiments/distributed-sweep/README.md from runs/scale-*.json (scripts/faults/scaling.sh).

python scripts/faults/table.py [--dir RUNS_DIR] [--refresh STORAGE_URL]   # --refresh: recompute the timing
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path

import procs

RUNS = Path(__file__).resolve().parents[2] / "experiments" / "distributed-sweep" / "runs"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--refresh", default=None, help="the Optuna storage URL the studies are in")
    p.add_argument("--dir", type=Path, default=RUNS, help="where the scale-*.json files are")
    a = p.parse_args()
    files = sorted(a.dir.glob("scale-*.json"), key=lambda f: json.loads(f.read_text())["study"].split("-")[-2:])
    if a.refresh:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        warnings.filterwarnings("ignore")
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        for f in files:
            r = json.loads(f.read_text())
            r.update(procs.timing(optuna.load_study(study_name=r["study"], storage=a.refresh), r["n_trials"]))
            f.write_text(json.dumps(r, indent=2))
    print(
        "| run | workers | trials | span s | trials/h | trials/h, all workers up | trial eval s (median) | "
        "load avg 1-min mean (min-max) | CPU s: workers / postgres / mlflow | wall s | checks |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for f in files:
        r = json.loads(f.read_text())
        load, cpu = r["load_average_1min"], r["cpu_seconds"]
        print(
            f"| {f.stem} | {r['workers']} | {r['finished']} | {r['span_seconds']} | {r['trials_per_hour']} | "
            f"{r.get('all_workers_trials_per_hour')} | {r['trial_seconds_median']} | "
            f"{load['mean']} ({load['min']}-{load['max']}) | {cpu['workers']} / {cpu.get('postgres')} / "
            f"{cpu.get('mlflow_server')} | {r['wall_seconds']} | {'PASS' if all(r['checks'].values()) else 'FAIL'} |"
        )


if __name__ == "__main__":
    main()
