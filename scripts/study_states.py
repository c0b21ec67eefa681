"""Print the trials of an Optuna study (state, values, worker, retries, errors) and, with --mlflow, the status
of each trial's MLflow run.   python scripts/study_states.py <storage-url> <study> [--mlflow <tracking-uri>] [--json out]"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from collections import Counter

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
warnings.filterwarnings("ignore")

import optuna  # noqa: E402  (after the env var: litellm reads it at import)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("storage")
    parser.add_argument("study")
    parser.add_argument("--mlflow", default=None)
    parser.add_argument("--json", default=None, help="write the rows here too")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=args.study, storage=args.storage)
    client = None
    if args.mlflow:
        from mlflow import MlflowClient

        client = MlflowClient(args.mlflow)
    rows = []
    for t in study.get_trials(deepcopy=False):
        run_id = t.user_attrs.get("mlflow_run_id")
        status = client.get_run(run_id).info.status if client and run_id else None
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "values": [round(v, 4) for v in t.values] if t.values else None,
                "params": t.params,
                "worker": (t.user_attrs.get("worker") or "").split(":")[1:2],
                "retry_of": t.user_attrs.get("retry_of"),
                "surplus": t.user_attrs.get("surplus", False),
                "error": (t.user_attrs.get("error") or "")[:60],
                "mlflow": status,
            }
        )
    for r in rows:
        values = "-" if r["values"] is None else ", ".join(map(str, r["values"]))
        extra = " ".join(
            x
            for x in (
                f"retry_of={r['retry_of']}" if r["retry_of"] is not None else "",
                "surplus" if r["surplus"] else "",
                r["error"],
                f"mlflow={r['mlflow']}" if r["mlflow"] else "",
            )
            if x
        )
        print(
            f"  trial {r['number']:3d} {r['state']:<9} pid {''.join(r['worker']) or '-':>8}  values [{values}]  {extra}"
        )
    counts = Counter(r["state"] for r in rows)
    print(f"  states: {dict(counts)}; finished (COMPLETE+PRUNED) = {counts['COMPLETE'] + counts['PRUNED']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
