#!/usr/bin/env bash
# The runs behind README.md: Mem0 vs Mem0g on the LOCOMO dev split, offline (no LM), two lanes in parallel.
# Each run is an experiment file, conf/experiment/mem0-vs-mem0g/<run>.yaml (its knobs and why).
# Lane A ingests once with the graph on and re-answers from the cached ingestion (on/only/merge/invalid edges
# only change retrieval); lane B ingests each update/compaction variant. ONLY=graph skips the two graph-off runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=experiments/mem0-vs-mem0g/runs
run() { name=$1; [[ "${ONLY:-}" == graph && $name == off* ]] && return 0; uv run memtune-eval "experiment=mem0-vs-mem0g/$name" progress=false "hydra.run.dir=$OUT/$name" > "$OUT/$name.log" 2>&1; echo "done $name"; }
mkdir -p "$OUT"
(
  run off
  run off_top43  # the vector path alone at the context tokens of Mem0g
  run on_soft
  run only_soft
  run on_soft_merge_score
  run on_soft_show_invalid
  run only_soft_hops2
  run on_soft_ner_nodes
) &
(
  run on_hard
  run on_soft_max_age30
  run on_soft_keep_last1
) &
wait
