"""Ingest throughput of an offline policy on LOCOMO: turns/s, with the time split by phase.

    uv run python benchmarks/ingest_throughput.py                      # default offline policy, 2 dev conversations
    uv run python benchmarks/ingest_throughput.py policy=raw_turns 'dataset.conversations=[conv-26]'

Embeddings are cached by text hash (as in every run); pass --cold to measure with an empty embedding cache.
Prints numbers from this one run; the machine is shared, so compare ratios measured together, not across runs.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from memtune.optimize.data.locomo import load_locomo, resolve_path
from memtune.optimize.evaluation.evaluate import ingest
from memtune.policies.build import build_policy

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def main(argv: list[str]) -> None:
    cold = "--cold" in argv
    overrides = [a for a in argv if a != "--cold"]
    if not any(o.startswith("dataset.conversations") for o in overrides):
        overrides.append("dataset.conversations=[conv-26,conv-30]")
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("eval", overrides=overrides)
    data = cfg.dataset
    dataset = load_locomo(resolve_path(data.path), conversations=data.conversations, max_sessions=data.max_sessions)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache" if cold else Path(cfg.cache_dir)
        policy = build_policy(cfg, store_uri=Path(tmp) / "store", cache_dir=cache)
        t0 = time.perf_counter()
        turns = sum(ingest(policy, c, progress=False)[0] for c in dataset.conversations)
        seconds = time.perf_counter() - t0
        print(
            f"policy={cfg.policy.name} conversations={len(dataset.conversations)} turns={turns} "
            f"cache={'cold' if cold else 'warm'}"
        )
        print(
            f"ingest: {seconds:.1f} s, {turns / seconds:.1f} turns/s, memories stored {policy.store.count()}, "
            f"ops {policy.op_counts}"
        )
        for phase, cost in sorted(policy.meter.phases.items()):
            total = sum(cost.seconds)
            print(f"  {phase:15s} {total:7.2f} s  {100 * total / seconds:5.1f}%  steps {len(cost.seconds)}")


if __name__ == "__main__":
    main(sys.argv[1:])
