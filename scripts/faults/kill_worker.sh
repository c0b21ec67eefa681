#!/usr/bin/env bash
# Fault: kill-worker with 4 workers on one study (30 trials, retrieval-only knobs; scripts/faults/run.py), then the checks.
# Transcript and result.json: experiments/distributed-sweep/runs/kill_worker.{txt,json}.
exec bash "$(dirname "$0")/record.sh" kill_worker kill-worker --workers "${WORKERS:-4}" --n-trials "${N_TRIALS:-30}" "$@"
