#!/usr/bin/env bash
# Fault: restart-postgres with 4 workers on one study (30 trials, retrieval-only knobs; scripts/faults/run.py), then the checks.
# Transcript and result.json: experiments/distributed-sweep/runs/restart_postgres.{txt,json}.
exec bash "$(dirname "$0")/record.sh" restart_postgres restart-postgres --workers "${WORKERS:-4}" --n-trials "${N_TRIALS:-30}" "$@"
