"""How much the ingestion and embedding caches save a sweep: one retrieval-only trial on a cached ingestion
against the same trial from scratch (cold ingestion cache and cold embedding cache, in a temp dir).

    uv run python benchmarks/sweep_cache_ratio.py                      # conv-26, conv-30 of the dev split
    uv run python benchmarks/sweep_cache_ratio.py --conversations conv-41 conv-42 --repeats 3

Both trials run in this process (imports and Hydra composition are outside the timings), through the sweep's
own per-conversation evaluation (memtune.optimize.sweep.scoring.evaluate_conversations):

  scratch: empty cache dir -> ingest (extract, embed every memory with MiniLM, LanceDB writes) + answer + score
  cached:  the same policy with other retrieval knobs (top_k, threshold): the ingested stores and every
           embedding come from the caches the scratch run filled -> answer + score only

Prints both times and their ratio (the target is >= 10x), from this one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", nargs="+", default=["conv-26", "conv-30"])
    parser.add_argument("--repeats", type=int, default=3, help="cached trials to time (the median is reported)")
    parser.add_argument("--policy", default="mem0_offline")
    args = parser.parse_args()

    from hydra import compose, initialize_config_dir

    from memtune.optimize.data.locomo import load_locomo, resolve_path
    from memtune.optimize.evaluation.app import configure_dspy_cache
    from memtune.optimize.sweep.app import CONF_DIR
    from memtune.optimize.sweep.scoring import evaluate_conversations

    with tempfile.TemporaryDirectory(prefix="memtune-cache-ratio-") as tmp:
        cache = Path(tmp) / "cache"
        base = [f"cache_dir={cache}", f"policy={args.policy}", "progress=false"]
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            trial_a = compose(config_name="eval", overrides=[*base, "policy.retriever.top_k=10"])
            trials_b = [
                compose(
                    config_name="eval",
                    overrides=[*base, f"policy.retriever.top_k={k}", "policy.retriever.threshold=0.1"],
                )
                for k in (5, 20, 40)[: max(1, args.repeats)]
            ]
        configure_dspy_cache(cache)
        dataset = load_locomo(resolve_path(trial_a.dataset.path), conversations=args.conversations)
        questions = sum(len(c.questions) for c in dataset.conversations)
        turns = sum(len(c.turns()) for c in dataset.conversations)

        t0 = time.perf_counter()
        cold, _ = evaluate_conversations(trial_a, dataset, args.conversations, Path(tmp) / "scratch")
        scratch = time.perf_counter() - t0
        assert cold["ingest"]["cache_hit_rate"] == 0.0, "the scratch run found a cached ingestion"

        cached_times = []
        for i, cfg in enumerate(trials_b):
            t0 = time.perf_counter()
            warm, _ = evaluate_conversations(cfg, dataset, args.conversations, Path(tmp) / f"cached-{i}")
            cached_times.append(time.perf_counter() - t0)
            assert warm["ingest"]["cache_hit_rate"] == 1.0, "the retrieval-only trial did not reuse the ingestion"
        cached = statistics.median(cached_times)

    print(f"conversations: {' '.join(args.conversations)} ({turns} turns, {questions} questions), policy {args.policy}")
    print(
        f"scratch trial (cold ingestion + embedding caches): {scratch:7.2f} s  "
        f"(ingest {cold['ingest']['seconds']:.2f} s, {cold['cost']['memories_stored']} memories)"
    )
    print(
        f"cached retrieval-only trial (median of {len(cached_times)}): {cached:7.2f} s  "
        f"(each: {', '.join(f'{t:.2f}' for t in cached_times)} s)"
    )
    ratio = scratch / cached
    print(f"ratio: {ratio:.1f}x  (target >= 10x: {'met' if ratio >= 10 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
