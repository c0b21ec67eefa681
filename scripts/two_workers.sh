#!/usr/bin/env bash
# Two worker processes on one Optuna storage (sqlite) complete one study with exactly n_trials finished trials.
# Dev split, retrieval-only knobs (every trial reuses one cached ingestion, so trials are short and the race for
# the last slots is real), tune on conv-26 + conv-30, 12 trials, both workers started at the same moment.
#   bash scripts/two_workers.sh         # prints each worker's trials, the study's states, then PASS/FAIL
set -euo pipefail
cd "$(dirname "$0")/.."
export LITELLM_LOCAL_MODEL_COST_MAP=True PYTHONUNBUFFERED=1
WORK=${WORK:-$(mktemp -d /tmp/memtune-workers.XXXX)}
PY=.venv/bin/python
N=${N:-12}
STORAGE="sqlite:///$WORK/optuna.db"
MLFLOW="sqlite:///$WORK/mlflow.db"
CMD=("$PY" -m memtune.optimize.sweep.app search_space=retrieval_only sweep.study_name=two-workers "sweep.n_trials=$N"
     "sweep.tune_conversations=[conv-26,conv-30]" sweep.heldout.enabled=false "sweep.heldout.baselines=[]"
     "sweep.storage=$STORAGE" "tracking.tracking_uri=$MLFLOW" "tracking.artifact_location=$WORK/mlartifacts"
     tracking.experiment=two-workers)
echo "work dir: $WORK"
# nothing is created beforehand: the two workers race to create the Optuna and MLflow tables and the study
"${CMD[@]}" hydra.run.dir="$WORK/w1" > "$WORK/w1.log" 2>&1 &
P1=$!
"${CMD[@]}" hydra.run.dir="$WORK/w2" > "$WORK/w2.log" 2>&1 &
P2=$!
S1=0; S2=0
wait $P1 || S1=$?
wait $P2 || S2=$?
echo "worker 1 (pid $P1) exit $S1: $(grep -c '^\[sweep\] trial .* COMPLETE' "$WORK/w1.log") trials completed"
echo "worker 2 (pid $P2) exit $S2: $(grep -c '^\[sweep\] trial .* COMPLETE' "$WORK/w2.log") trials completed"
grep -h "FAILED" "$WORK/w1.log" "$WORK/w2.log" | cut -c1-160 || true
"$PY" scripts/study_states.py "$STORAGE" two-workers --mlflow "$MLFLOW" --json "$WORK/states.json"
"$PY" - "$WORK/states.json" "$N" "$S1" "$S2" <<'PYEOF'
import json, sys
rows, n, s1, s2 = json.load(open(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
finished = [r for r in rows if r["state"] in ("COMPLETE", "PRUNED")]
workers = {tuple(r["worker"]) for r in finished}
checks = {
    "both workers exit 0": s1 == 0 and s2 == 0,
    f"exactly {n} finished trials": len(finished) == n,
    "both workers ran trials": len(workers) == 2,
    "no other failures than surplus": all(r["surplus"] for r in rows if r["state"] == "FAIL"),
    "nothing left RUNNING": not any(r["state"] == "RUNNING" for r in rows),
    "every finished trial's MLflow run FINISHED": all(r["mlflow"] == "FINISHED" for r in finished),
}
for name, ok in checks.items():
    print(f"  {'ok ' if ok else 'BAD'} {name}")
print("PASS" if all(checks.values()) else "FAIL")
sys.exit(0 if all(checks.values()) else 1)
PYEOF
