#!/usr/bin/env bash
# An MLflow tracking server on loopback for `tracking=server`: PostgreSQL backend store (scripts/postgres.sh's
# `mlflow` database), artifacts proxied by the server into a local directory (workers upload through it).
#   bash scripts/mlflow_server.sh start     # idempotent; waits until /health answers
#   bash scripts/mlflow_server.sh stop | status | url
# Settings: MEMTUNE_MLFLOW_PORT (5055), MEMTUNE_MLFLOW_DIR (.cache/mlflow-server: artifacts/, server.log, pid),
# MEMTUNE_MLFLOW_BACKEND (default: bash scripts/postgres.sh url mlflow), MEMTUNE_MLFLOW_WORKERS (2),
# MEMTUNE_MLFLOW_HEALTHCHECK (60: seconds uvicorn waits for a worker's ping before killing and restarting it; its
# default, 5, killed a worker of this server under a load average of 20 on 2 cores, and a restart takes a minute).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PORT=${MEMTUNE_MLFLOW_PORT:-5055}
DIR=${MEMTUNE_MLFLOW_DIR:-$REPO/.cache/mlflow-server}
PIDFILE=$DIR/server.pid
LOG=$DIR/server.log
MLFLOW=${MEMTUNE_MLFLOW_BIN:-$REPO/.venv/bin/mlflow}
export LITELLM_LOCAL_MODEL_COST_MAP=True  # mlflow (via litellm) hangs offline without it

say() { echo "[mlflow-server] $*" >&2; }
url() { echo "http://127.0.0.1:$PORT"; }
pid() { [[ -f $PIDFILE ]] && cat "$PIDFILE" || true; }
alive() { local p; p=$(pid); [[ -n $p ]] && kill -0 "$p" 2>/dev/null; }
healthy() { "$REPO/.venv/bin/python" - "$(url)/health" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
sys.exit(urllib.request.urlopen(sys.argv[1], timeout=3).status != 200)
EOF
}

start() {
  if alive && healthy; then say "already running at $(url) (pid $(pid))"; url; return; fi
  if alive; then  # a running server can miss one health check on a loaded machine: give it 30 s
    for _ in $(seq 1 30); do
      if healthy; then say "already running at $(url) (pid $(pid))"; url; return; fi
      sleep 1
    done
    say "pid $(pid) is not answering: stop it first (bash scripts/mlflow_server.sh stop)"; exit 1
  fi
  local backend=${MEMTUNE_MLFLOW_BACKEND:-}
  if [[ -z $backend ]]; then
    bash "$REPO/scripts/postgres.sh" status >/dev/null 2>&1 || {
      say "PostgreSQL is not running: bash scripts/postgres.sh start (or set MEMTUNE_MLFLOW_BACKEND)"; exit 1; }
    backend=$(bash "$REPO/scripts/postgres.sh" url mlflow)
  fi
  mkdir -p "$DIR/artifacts"
  # its own session (setsid): `stop` ends the server and its uvicorn workers by that process group, nothing else
  setsid "$MLFLOW" server --backend-store-uri "$backend" --artifacts-destination "$DIR/artifacts" \
    --host 127.0.0.1 --port "$PORT" --workers "${MEMTUNE_MLFLOW_WORKERS:-2}" \
    --uvicorn-opts "--timeout-worker-healthcheck ${MEMTUNE_MLFLOW_HEALTHCHECK:-60}" >>"$LOG" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 240); do
    if healthy; then say "started at $(url) (pid $(pid), backend ${backend%%@*}@..., log $LOG)"; url; return; fi
    if ! alive; then say "exited; the end of $LOG:"; tail -n 20 "$LOG" >&2; exit 1; fi
    sleep 0.5
  done
  say "no answer from $(url)/health after 120 s; see $LOG"; exit 1
}

stop() {
  if ! alive; then say "not running"; rm -f "$PIDFILE"; return; fi
  local p; p=$(pid)
  kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p"
  for _ in $(seq 1 40); do alive || break; sleep 0.25; done
  if alive; then kill -KILL -- "-$p" 2>/dev/null || true; fi
  rm -f "$PIDFILE"
  say "stopped (pid $p)"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) if alive && healthy; then say "running at $(url) (pid $(pid))"; else say "not running"; exit 3; fi ;;
  url) url ;;
  *) echo "usage: $0 start|stop|status|url" >&2; exit 2 ;;
esac
