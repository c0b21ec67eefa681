#!/usr/bin/env bash
# Run scripts/faults/run.py and keep its transcript and result.json in experiments/distributed-sweep/.
#   bash scripts/faults/record.sh NAME MODE [run.py options]      e.g. record.sh scale-4w scale --workers 4
set -euo pipefail
cd "$(dirname "$0")/../.."
export LITELLM_LOCAL_MODEL_COST_MAP=True PYTHONUNBUFFERED=1
NAME=$1; shift
OUT=experiments/distributed-sweep/runs
mkdir -p "$OUT"
WORK=$(mktemp -d "/tmp/memtune-dist-$NAME.XXXX")
STATUS=0
.venv/bin/python scripts/faults/run.py "$@" --work "$WORK" 2>&1 | tee "$OUT/$NAME.txt" || STATUS=$?
cp "$WORK/result.json" "$OUT/$NAME.json"
exit $STATUS
