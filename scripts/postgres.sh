#!/usr/bin/env bash
# A private PostgreSQL cluster on this machine for shared sweeps (Optuna storage, MLflow backend store) and for the
# tests marked `postgres`: initdb in a directory, loopback TCP only, trust auth for the `memtune` role (loopback
# only: for one machine; compose.distributed.yaml uses passwords), databases `optuna` and `mlflow`.
#   bash scripts/postgres.sh start           # installs Debian's postgresql if missing (root + apt-get), idempotent
#   bash scripts/postgres.sh url [optuna|mlflow]   # postgresql://memtune@127.0.0.1:55432/optuna
#   bash scripts/postgres.sh status | stop | restart
# Settings: MEMTUNE_PG_PORT (55432), MEMTUNE_PG_DIR (.cache/pg; data/ and server.log inside), MEMTUNE_PG_BIN (the
# directory of pg_ctl; default: the newest /usr/lib/postgresql/*/bin, else pg_ctl on PATH).
# PostgreSQL refuses to run as root: as root the server runs as the `postgres` system user (created by the package).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PORT=${MEMTUNE_PG_PORT:-55432}
ROLE=memtune
DATABASES=(optuna mlflow)

say() { echo "[postgres] $*" >&2; }

find_bin() {
  if [[ -n ${MEMTUNE_PG_BIN:-} ]]; then echo "$MEMTUNE_PG_BIN"; return; fi
  local newest
  newest=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [[ -n $newest && -x $newest/pg_ctl ]]; then echo "$newest"; return; fi
  if command -v pg_ctl >/dev/null 2>&1; then dirname "$(readlink -f "$(command -v pg_ctl)")"; return; fi
  echo ""
}

install_postgres() {
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    say "PostgreSQL is not installed: install it (Debian/Ubuntu: sudo apt-get install postgresql) or set MEMTUNE_PG_BIN"
    exit 1
  fi
  say "PostgreSQL not found: apt-get install postgresql (no default cluster: this script makes its own)"
  # a drop-in (not the package's createcluster.conf, a conffile): the package then makes no `main` cluster
  mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/memtune-no-main-cluster.conf
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
}

BIN=$(find_bin)
if [[ -z $BIN && ${1:-} == start ]]; then install_postgres; BIN=$(find_bin); fi

# who runs the server, and where its files live (a directory that user can write)
if [[ $(id -u) -eq 0 ]]; then
  RUN_AS=postgres
  as_server() { (cd / && runuser -u "$RUN_AS" -- "$@"); }  # from /: the checkout may be unreadable to that user
else
  RUN_AS=$(id -un)
  as_server() { "$@"; }
fi
DIR=${MEMTUNE_PG_DIR:-$REPO/.cache/pg}
if [[ $(id -u) -eq 0 && -z ${MEMTUNE_PG_DIR:-} ]] && id "$RUN_AS" >/dev/null 2>&1; then
  # the postgres user must reach the directory; a checkout under /root is not reachable: use /var/tmp instead
  mkdir -p "$DIR"
  if ! runuser -u "$RUN_AS" -- test -x "$DIR"; then
    DIR=/var/tmp/memtune-pg-$(printf %s "$REPO" | cksum | cut -d' ' -f1)
  fi
fi
DATA=$DIR/data
LOG=$DIR/server.log

url() { echo "postgresql://$ROLE@127.0.0.1:$PORT/${1:-optuna}"; }

running() { [[ -n $BIN && -f $DATA/PG_VERSION ]] && as_server "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

psql_() { "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U "$ROLE" -v ON_ERROR_STOP=1 -qtAX "$@"; }

need_bin() {
  if [[ -z $BIN ]]; then say "PostgreSQL is not installed (bash scripts/postgres.sh start installs it as root)"; exit 1; fi
}

start() {
  need_bin
  if [[ $(id -u) -eq 0 ]] && ! id "$RUN_AS" >/dev/null 2>&1; then
    useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin "$RUN_AS"
  fi
  mkdir -p "$DIR"
  [[ $(id -u) -eq 0 ]] && chown "$RUN_AS" "$DIR"
  if [[ ! -f $DATA/PG_VERSION ]]; then
    say "initdb $DATA (role $ROLE, trust auth on loopback)"
    as_server "$BIN/initdb" -D "$DATA" -U "$ROLE" --auth=trust --encoding=UTF8 --no-locale >/dev/null
    cat >> "$DATA/postgresql.conf" <<EOF
# scripts/postgres.sh: loopback TCP only, no unix socket; sized for a small shared machine
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = ''
max_connections = 200
shared_buffers = 64MB
EOF
  fi
  if running; then
    say "already running on 127.0.0.1:$PORT ($DATA)"
  else
    as_server "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 -o "-p $PORT" start >/dev/null || {
      say "could not start; the end of $LOG:"; tail -n 20 "$LOG" >&2; exit 1
    }
    say "started on 127.0.0.1:$PORT ($DATA, log $LOG)"
  fi
  for db in "${DATABASES[@]}"; do
    if [[ -z $(psql_ -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$db'") ]]; then
      psql_ -d postgres -c "CREATE DATABASE $db"
      say "created database $db"
    fi
  done
  url optuna
}

stop() {
  if running; then
    as_server "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
    say "stopped"
  else
    say "not running"
  fi
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  restart)
    need_bin
    running || { say "not running: bash scripts/postgres.sh start"; exit 1; }
    as_server "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -m fast -w -t 60 -o "-p $PORT" restart >/dev/null
    say "restarted"
    ;;
  status)
    if running; then say "running on 127.0.0.1:$PORT ($DATA)"; else say "not running ($DATA)"; exit 3; fi ;;
  url) url "${2:-optuna}" ;;
  *) echo "usage: $0 start|stop|restart|status|url [optuna|mlflow]" >&2; exit 2 ;;
esac
