#!/usr/bin/env bash
# Fault: kill-worker with 4 workers that each have their own host name (unshare --uts, root), as on 4 machines: no
# worker sees the killed one's pid gone, so its trial is failed and re-queued by the RDB heartbeat
# (sweep.heartbeat.grace_period). Transcript and result.json: experiments/distributed-sweep/runs/kill_worker_other_host.{txt,json}.
exec bash "$(dirname "$0")/record.sh" kill_worker_other_host kill-worker --separate-hosts --workers "${WORKERS:-4}" \
  --n-trials "${N_TRIALS:-30}" "$@"
