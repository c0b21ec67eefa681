#!/usr/bin/env bash
# Fault: stop-mlflow with 4 workers on one study (30 trials, retrieval-only knobs; scripts/faults/run.py), then the checks.
# Transcript and result.json: experiments/distributed-sweep/runs/stop_mlflow.{txt,json}.
exec bash "$(dirname "$0")/record.sh" stop_mlflow stop-mlflow --workers "${WORKERS:-4}" --n-trials "${N_TRIALS:-30}" "$@"
