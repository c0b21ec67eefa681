#!/usr/bin/env bash
# The runs behind README.md: Mem0 vs Mem0g on the LOCOMO dev split, offline (no LM), two lanes in parallel.
# Lane A ingests once with the graph on and re-answers from the cached ingestion (on/only/merge/invalid edges
# only change retrieval); lane B ingests each update/compaction variant. ONLY=graph skips the two graph-off runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=experiments/mem0-vs-mem0g/runs
run() { name=$1; shift; [[ "${ONLY:-}" == graph && $name == off* ]] && return 0; uv run memtune-eval progress=false "hydra.run.dir=$OUT/$name" "$@" > "$OUT/$name.log" 2>&1; echo "done $name"; }
mkdir -p "$OUT"
(
  run off
  run off_top43 policy.retriever.top_k=43  # the vector path alone at the context tokens of Mem0g
  run on_soft policy/graph=on
  run only_soft policy/graph=only
  run on_soft_merge_score policy/graph=on policy.graph.retrieval.merge=score
  run on_soft_show_invalid policy/graph=on policy.graph.retrieval.merge=score policy.graph.retrieval.include_invalid=true
  run only_soft_hops2 policy/graph=only policy.graph.retrieval.hops=2
  run on_soft_ner_nodes policy/graph=on policy.graph.entities.noun_chunks=false policy.graph.nodes.orphan_nodes=false
) &
(
  run on_hard policy/graph=on policy.graph.edges.invalidation=hard
  run on_soft_max_age30 policy/graph=on policy.graph.edges.compaction=max_age policy.graph.edges.max_age_days=30
  run on_soft_keep_last1 policy/graph=on policy.graph.edges.compaction=keep_last policy.graph.edges.keep_last=1
) &
wait
