#!/usr/bin/env bash
# The runs behind README.md: keeping memories current, offline (no LM), two lanes in parallel.
# Each run is an experiment file, conf/experiment/knowledge-updates/<run>.yaml (its knobs and why). Runs that differ
# only in retrieval knobs (slot_rank, include_history, graph on/only, include_invalid) follow the run that ingests
# with the same ingestion knobs and re-answer from the cached ingestion. ONLY=<prefix> runs one set (upd, heldout,
# seed1, people4). `uptime` is logged before and after each run (runs/timings.tsv): the machine is shared.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=experiments/knowledge-updates/runs
export LITELLM_LOCAL_MODEL_COST_MAP=True
run() {
  name=$1
  [[ -n "${ONLY:-}" && $name != "$ONLY"_* ]] && return 0
  local t0 load0
  t0=$(date +%s); load0=$(cut -d' ' -f1-3 /proc/loadavg)
  if ! uv run memtune-eval "experiment=knowledge-updates/$name" progress=false "hydra.run.dir=$OUT/$name" > "$OUT/$name.log" 2>&1; then
    echo "FAILED $name (see $OUT/$name.log)"; return 0
  fi
  printf '%s\t%s\t%s\t%s\n' "$name" "$(( $(date +%s) - t0 ))" "$load0" "$(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/timings.tsv"
  echo "done $name"
}
mkdir -p "$OUT"
# the two other generated sets (deterministic: --check would say whether the committed files are what the code writes)
uv run memtune-gen --out experiments/knowledge-updates/data/updates_seed1.json --seed 1 > /dev/null
uv run memtune-gen --out experiments/knowledge-updates/data/updates_seed2_people4.json --seed 2 --people 4 --conversations 5 > /dev/null
(
  # the generated set (data/updates, seed 0): every policy, the ORACLE rows and the graph
  run upd_threshold
  run upd_threshold_slot_rank
  run upd_supersede_soft
  run upd_supersede_soft_when_asked
  run upd_supersede_soft_always
  run upd_supersede_soft_when_asked_slot_rank
  run upd_add_only
  run upd_add_only_slot_rank
  run upd_supersede_hard
  run upd_supersede_hard_slot_rank
  run upd_oracle_threshold
  run upd_oracle_supersede_soft_when_asked
  run upd_oracle_supersede_soft_when_asked_slot_rank
  run upd_graph_only_soft
  run upd_graph_only_soft_invalid
  run upd_graph_only_hard
  run upd_graph_on_soft
) &
(
  # LOCOMO held out, then the two other generated sets (is the lexicon in-sample?)
  run heldout_threshold
  run heldout_threshold_slot_rank
  run heldout_supersede_soft
  run heldout_supersede_soft_when_asked
  run heldout_supersede_soft_when_asked_slot_rank
  run heldout_add_only
  run heldout_supersede_hard
  run seed1_threshold
  run seed1_supersede_soft_when_asked
  run seed1_supersede_soft_when_asked_slot_rank
  run seed1_add_only
  run seed1_oracle_supersede_soft_when_asked_slot_rank
  run people4_threshold
  run people4_supersede_soft_when_asked
  run people4_supersede_soft_when_asked_slot_rank
  run people4_add_only
  run people4_oracle_supersede_soft_when_asked_slot_rank
  run heldout_graph_only_soft
  run heldout_graph_only_soft_invalid
) &
wait
