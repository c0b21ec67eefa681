#!/usr/bin/env bash
# Screenshot the MLflow UI (offline) showing a study's parent run with its nested trial runs.
#   bash scripts/mlflow_screenshot.sh [tracking-uri] [experiment] [out.png]
# Defaults: the sweep's tracking store (sqlite:///<abs .cache/memtune>/mlflow.db), experiment memtune-sweep,
# experiments/offline-sweep/mlflow_ui.png. Needs Debian's chromium (apt-get install -y chromium).
# Starts `mlflow ui` on 127.0.0.1 (LITELLM_LOCAL_MODEL_COST_MAP=True: mlflow hangs offline without it), then
#  1. plain headless Chromium --screenshot of the experiment page (nested runs collapsed under their parent);
#  2. the same page driven over the DevTools protocol (scripts/cdp_screenshot.py): the parent's expander is
#     clicked so the nested trials show, then the screenshot is saved to <out.png>.
set -euo pipefail
cd "$(dirname "$0")/.."
export LITELLM_LOCAL_MODEL_COST_MAP=True
URI=${1:-sqlite:///$(pwd)/.cache/memtune/mlflow.db}
EXPERIMENT=${2:-memtune-sweep}
OUT=${3:-experiments/offline-sweep/mlflow_ui.png}
PORT=${PORT:-5057}
PY=.venv/bin/python
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
[ -n "$CHROMIUM" ] || { echo "chromium not found: apt-get update && apt-get install -y chromium" >&2; exit 1; }

EXP_ID=$("$PY" - "$URI" "$EXPERIMENT" <<'PYEOF'
import sys, warnings
warnings.filterwarnings("ignore")
from mlflow import MlflowClient
exp = MlflowClient(sys.argv[1]).get_experiment_by_name(sys.argv[2])
if exp is None:
    sys.exit(f"no experiment {sys.argv[2]!r} in {sys.argv[1]}: run memtune-sweep first")
print(exp.experiment_id)
PYEOF
)
LOG=$(mktemp /tmp/mlflow-ui.XXXX.log)
# its own process group: `mlflow ui` starts job consumers (huey) that outlive it unless the group is ended
setsid .venv/bin/mlflow ui --backend-store-uri "$URI" --host 127.0.0.1 --port "$PORT" > "$LOG" 2>&1 &
UI_PID=$!
cleanup() { kill -- "-$UI_PID" 2>/dev/null || true; wait "$UI_PID" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && break
  sleep 1
done
curl -sf "http://127.0.0.1:$PORT/health" > /dev/null || { echo "mlflow ui did not start:" >&2; tail "$LOG" >&2; exit 1; }
PAGE="http://127.0.0.1:$PORT/#/experiments/$EXP_ID/runs"
echo "mlflow ui (pid $UI_PID) serves $PAGE"

FLAGS=(--headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update
       --disable-sync --no-first-run --window-size=1600,1000)
PLAIN="${OUT%.png}_collapsed.png"
"$CHROMIUM" "${FLAGS[@]}" --user-data-dir="$(mktemp -d)" --screenshot="$PLAIN" --virtual-time-budget=15000 "$PAGE" \
  > /dev/null 2>&1 || true
[ -s "$PLAIN" ] && echo "plain screenshot: $PLAIN"
"$PY" scripts/cdp_screenshot.py --chromium "$CHROMIUM" --url "$PAGE" --out "$OUT" -- "${FLAGS[@]}"
echo "screenshot: $OUT"
