#!/usr/bin/env bash
# Start the llama.cpp OpenAI-compatible server (llama-cpp-python) on 127.0.0.1:$PORT in the background and wait
# until /v1/models answers. `local_llm_server.sh stop` stops the server this script started on $PORT.
# Install first: scripts/install_local_llm.sh. Then point memtune at it:
#   OPENAI_BASE_URL=http://127.0.0.1:$PORT/v1 OPENAI_API_KEY=local MEMTUNE_LM_MODEL=local MEMTUNE_JUDGE_MODEL=local
# Env: PORT (8765), MEMTUNE_GGUF (default: first /opt/models/*.gguf), LLM_VENV (/opt/llm-venv), N_CTX (4096),
#      N_THREADS (all cores), OMP_WAIT_POLICY (PASSIVE), LOG, PIDFILE, WAIT_SECONDS (120).
set -euo pipefail
PORT=${PORT:-8765}
VENV=${LLM_VENV:-/opt/llm-venv}
PIDFILE=${PIDFILE:-/tmp/memtune-llm-$PORT.pid}
LOG=${LOG:-/tmp/memtune-llm-$PORT.log}
URL=http://127.0.0.1:$PORT/v1/models

if [ "${1:-}" = stop ]; then  # uvicorn finishes the request in flight on SIGTERM: SIGKILL after 5 s
  pid=$(cat "$PIDFILE" 2>/dev/null) || exit 0
  kill "$pid" 2>/dev/null || true
  for _ in 1 2 3 4 5; do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"; echo "stopped $pid"; exit 0
fi
GGUF=${MEMTUNE_GGUF:-$(ls /opt/models/*.gguf 2>/dev/null | head -n1 || true)}
[ -f "$GGUF" ] || { echo "no GGUF: set MEMTUNE_GGUF or run scripts/install_local_llm.sh" >&2; exit 2; }
[ -x "$VENV/bin/python" ] || { echo "no llama-cpp-python venv at $VENV: run scripts/install_local_llm.sh" >&2; exit 2; }
if curl -sf "$URL" >/dev/null; then echo "a server already answers on $URL" >&2; exit 3; fi

# PASSIVE: OpenMP threads sleep instead of spinning; on 2 shared cores spinning made generation 2-5x slower.
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} nohup "$VENV/bin/python" -m llama_cpp.server --model "$GGUF" --model_alias local \
  --host 127.0.0.1 --port "$PORT" --n_ctx "${N_CTX:-4096}" --chat_format chatml \
  --n_threads "${N_THREADS:-$(nproc)}" --n_threads_batch "${N_THREADS:-$(nproc)}" >"$LOG" 2>&1 &
echo $! >"$PIDFILE"
for _ in $(seq "${WAIT_SECONDS:-120}"); do
  if curl -sf "$URL" >/dev/null; then echo "llama.cpp server pid $(cat "$PIDFILE") on http://127.0.0.1:$PORT/v1 (log $LOG)"; exit 0; fi
  kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { echo "server died, see $LOG" >&2; tail -n 20 "$LOG" >&2; exit 1; }
  sleep 1
done
echo "server did not answer on $URL in time, see $LOG" >&2; kill "$(cat "$PIDFILE")"; rm -f "$PIDFILE"; exit 1
