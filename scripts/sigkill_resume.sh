#!/usr/bin/env bash
# SIGKILL a sweep in the middle of a trial, re-run the very same command, and check that the study finishes
# with no completed trial lost or repeated. Dev split, tune on conv-26 + conv-30, 6 trials, no held-out step;
# study storage and MLflow in a temp dir (the ingestion and embedding caches are the project's usual ones).
#   bash scripts/sigkill_resume.sh            # prints the trial states before and after, then PASS/FAIL
set -euo pipefail
cd "$(dirname "$0")/.."
export LITELLM_LOCAL_MODEL_COST_MAP=True PYTHONUNBUFFERED=1
WORK=${WORK:-$(mktemp -d /tmp/memtune-sigkill.XXXX)}
PY=.venv/bin/python  # not `uv run`: the kill must hit the sweep process itself
STORAGE="sqlite:///$WORK/optuna.db"
MLFLOW="sqlite:///$WORK/mlflow.db"
CMD=("$PY" -m memtune.optimize.sweep.app sweep.study_name=sigkill sweep.n_trials=6 "sweep.tune_conversations=[conv-26,conv-30]"
     sweep.heldout.enabled=false "sweep.heldout.baselines=[]" "sweep.storage=$STORAGE"
     "tracking.tracking_uri=$MLFLOW" "tracking.artifact_location=$WORK/mlartifacts" tracking.experiment=sigkill)
echo "work dir: $WORK"
echo "command:  ${CMD[*]}"

"${CMD[@]}" > "$WORK/first.log" 2>&1 &
PID=$!
# wait until 2 trials are COMPLETE and a third has been RUNNING for 3 s, then kill -9 the sweep
"$PY" - "$STORAGE" <<'PYEOF'
import sys, time, warnings
warnings.filterwarnings("ignore")
import optuna
optuna.logging.set_verbosity(optuna.logging.ERROR)
deadline = time.time() + 600
while time.time() < deadline:
    try:
        trials = optuna.load_study(study_name="sigkill", storage=sys.argv[1]).trials
    except Exception:
        time.sleep(1); continue
    done = sum(t.state.name == "COMPLETE" for t in trials)
    running = [t for t in trials if t.state.name == "RUNNING" and t.user_attrs.get("worker")]
    if done >= 2 and running and (time.time() - running[0].datetime_start.timestamp()) > 3:
        print(f"trial {running[0].number} has been running {time.time() - running[0].datetime_start.timestamp():.1f} s; {done} complete")
        break
    time.sleep(0.5)
PYEOF
kill -9 "$PID"
wait "$PID" 2>/dev/null || true
echo; echo "== after kill -9 $PID (tail of its log):"; tail -n 3 "$WORK/first.log"
echo; echo "== trial states before the re-run:"
"$PY" scripts/study_states.py "$STORAGE" sigkill --mlflow "$MLFLOW" --json "$WORK/before.json"

echo; echo "== re-running the same command"
"${CMD[@]}" > "$WORK/second.log" 2>&1
grep -E "^\[sweep\] (study|trial)" "$WORK/second.log" | head -20
echo; echo "== trial states after the re-run:"
"$PY" scripts/study_states.py "$STORAGE" sigkill --mlflow "$MLFLOW" --json "$WORK/after.json"

"$PY" - "$WORK/before.json" "$WORK/after.json" <<'PYEOF'
import json, sys
before, after = (json.load(open(p)) for p in sys.argv[1:])
done_before = {r["number"]: r for r in before if r["state"] == "COMPLETE"}
killed = [r["number"] for r in before if r["state"] == "RUNNING"]
by_number = {r["number"]: r for r in after}
finished = [r for r in after if r["state"] in ("COMPLETE", "PRUNED")]
checks = {
    "6 finished trials, not more": len(finished) == 6,
    "every trial complete before the kill is still complete, same values": all(
        by_number[n]["state"] == "COMPLETE" and by_number[n]["values"] == r["values"] for n, r in done_before.items()),
    "no completed trial re-run (no retry of a complete trial)": not any(
        r["retry_of"] in done_before for r in after if r["retry_of"] is not None),
    "the killed trial is FAIL and its MLflow run KILLED": bool(killed) and all(
        by_number[n]["state"] == "FAIL" and by_number[n]["mlflow"] == "KILLED" for n in killed),
    "the killed trial was re-run with the same knobs": all(
        any(r["retry_of"] == n and r["state"] == "COMPLETE" and r["params"] == by_number[n]["params"] for r in after)
        for n in killed),
    "nothing left RUNNING": not any(r["state"] == "RUNNING" for r in after),
}
for name, ok in checks.items():
    print(f"  {'ok ' if ok else 'BAD'} {name}")
print("PASS" if all(checks.values()) else "FAIL")
sys.exit(0 if all(checks.values()) else 1)
PYEOF
