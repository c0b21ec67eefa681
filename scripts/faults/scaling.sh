#!/usr/bin/env bash
# Trials/hour of 1, 2 and 4 workers on one study each (30 trials, retrieval-only knobs, PostgreSQL + MLflow server),
# one after the other. Transcripts: experiments/distributed-sweep/runs/scale-<n>w-r<ROUND>.{txt,json}; the table:
# python scripts/faults/table.py.   ROUND=2 WORKER_COUNTS="4 2 1" bash scripts/faults/scaling.sh
set -euo pipefail
for n in ${WORKER_COUNTS:-1 2 4}; do
  bash "$(dirname "$0")/record.sh" "scale-${n}w-r${ROUND:-1}" scale --workers "$n" --n-trials "${N_TRIALS:-30}"
done
