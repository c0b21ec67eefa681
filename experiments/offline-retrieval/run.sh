#!/usr/bin/env bash
# The runs behind README.md: each lever alone against the defaults before issue 14, and the defaults after (mem0_offline),
# offline (no LM), on the held-out conversations (SPLIT=heldout, the default) or the tune ones (SPLIT=tune). Each arm
# is an experiment file, conf/experiment/offline-retrieval/<arm>.yaml (its knobs and why). The retrieval-only arms
# share one cached ingestion; time and after (resolved dates) share another.
#   bash experiments/offline-retrieval/run.sh            # ARMS="ingest after" for some arms; then: uv run python experiments/offline-retrieval/make_table.py
set -euo pipefail
cd "$(dirname "$0")/../.."
export LITELLM_LOCAL_MODEL_COST_MAP=True
SPLIT=${SPLIT:-heldout}
OUT=experiments/offline-retrieval/runs/$SPLIT
extra=()
[[ $SPLIT == tune ]] && extra=("dataset.conversations=[conv-26,conv-30,conv-41,conv-42]")
mkdir -p "$OUT"
run() {
  name=$1
  [[ -n ${ARMS:-} && " $ARMS " != *" $name "* ]] && return 0  # ARMS="ingest after": only those arms
  uv run memtune-eval "experiment=offline-retrieval/$name" progress=false "hydra.run.dir=$OUT/$name" "${extra[@]}" \
    > "$OUT/$name.log" 2>&1
  echo "done $SPLIT/$name"
}
{
  run defaults
  run hybrid
  run mmr
  run dedup
  run recency
  run rerank
  run render
  run answerer
  run time
  run ingest
  run after
}
