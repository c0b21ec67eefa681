#!/usr/bin/env bash
# The runs behind README.md: each lever alone against the defaults, offline (no LM), on the held-out conversations
# (SPLIT=heldout, the default) or the tune conversations (SPLIT=tune). Each arm is an experiment file,
# conf/experiment/offline-retrieval/<arm>.yaml (its knobs and why). Retrieval-only arms share one cached ingestion.
#   bash experiments/offline-retrieval/run.sh [arm ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
export LITELLM_LOCAL_MODEL_COST_MAP=True
SPLIT=${SPLIT:-heldout}
OUT=experiments/offline-retrieval/runs/$SPLIT
extra=()
[[ $SPLIT == tune ]] && extra=("dataset.conversations=[conv-26,conv-30,conv-41,conv-42]")
arms=("$@")
[[ ${#arms[@]} -eq 0 ]] && arms=(defaults hybrid mmr dedup recency render answerer time)
mkdir -p "$OUT"
for arm in "${arms[@]}"; do
  uv run memtune-eval "experiment=offline-retrieval/$arm" progress=false "hydra.run.dir=$OUT/$arm" "${extra[@]}" \
    > "$OUT/$arm.log" 2>&1
  echo "done $SPLIT/$arm"
done
