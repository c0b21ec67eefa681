"""What the extractor wrote on memtune-compile's report set (one JSON line per example: dia_ids, silver facts, facts). Run with
the compile's overrides (+ policy.extractor.program=<name> for the compiled one); with the same MEMTUNE_CACHE_DIR the
LM calls are DSPy cache hits. Prints; writes nothing."""

import json
import sys

import dspy
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from memtune.optimize.compile.app import build_sets, build_student
from memtune.optimize.data.load import load_from_config
from memtune.optimize.evaluation.app import configure_dspy_cache

over = sys.argv[1:]
with initialize_config_module("memtune.conf", version_base="1.3"):
    cfg = compose("compile", overrides=over)
configure_dspy_cache(cfg.cache_dir)
student = build_student(cfg)
_, _, report, _ = build_sets(cfg, load_from_config(cfg.dataset))
with dspy.context(lm=instantiate(cfg.lm)):
    for ex in report:
        p = student(**ex.inputs())
        print(
            json.dumps(
                {
                    "dia": ex.dia_ids,
                    "silver": ex.silver,
                    "facts": [f.fact if hasattr(f, "fact") else f for f in (p.facts if hasattr(p, "facts") else p)],
                },
                default=str,
            )
        )
