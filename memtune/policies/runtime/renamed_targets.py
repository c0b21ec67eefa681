"""Hydra `_target_`s written before the source tree was split into subpackages, and where those classes live now.

A config written by an earlier memtune names its classes by the old flat module paths: a policy bundle's
bundle.json, a sweep trial's recorded policy.json, a study's stored signature. Their classes did not change, only
their modules moved, so `current_targets` rewrites the old paths (and nothing else) and such a config loads, is
compared and resumes as it did. The table is closed: nothing new is ever added to it.
"""

from __future__ import annotations

from typing import Any

# old module -> new module (class and function names are unchanged)
MOVED_MODULES = {
    "memtune.policies.extractors": "memtune.policies.stages.extract",
    "memtune.policies.summarizers": "memtune.policies.stages.summarize",
    "memtune.policies.deciders": "memtune.policies.stages.decide",
    "memtune.policies.retrievers": "memtune.policies.stages.retrieve",
    "memtune.policies.answerers": "memtune.policies.stages.answer",
    "memtune.policies.store": "memtune.policies.store.store",
    "memtune.policies.graph": "memtune.policies.graph.memory",
    "memtune.policies.graph_extract": "memtune.policies.graph.extract",
    "memtune.policies.graph_update": "memtune.policies.graph.update",
    "memtune.optimize.judge": "memtune.optimize.evaluation.judge",
}
# memtune.policies.embed was one module and is now a package: its classes went to three modules
MOVED_EMBEDDERS = {
    "MiniLMEmbedder": "memtune.policies.embed.minilm",
    "OpenAIEmbedder": "memtune.policies.embed.openai_api",
    "CachedEmbedder": "memtune.policies.embed.cache",
}


def current_target(target: str) -> str:
    """`target` with a pre-split module path replaced by the class's module today; any other target unchanged."""
    module, _, name = target.rpartition(".")
    if module == "memtune.policies.embed" and name in MOVED_EMBEDDERS:
        return f"{MOVED_EMBEDDERS[name]}.{name}"
    return f"{MOVED_MODULES[module]}.{name}" if module in MOVED_MODULES else target


def current_targets(config: Any) -> Any:
    """A copy of a plain (JSON-like) config with every `_target_` made current."""
    if isinstance(config, dict):
        return {
            k: current_target(v) if k == "_target_" and isinstance(v, str) else current_targets(v)
            for k, v in config.items()
        }
    if isinstance(config, list):
        return [current_targets(v) for v in config]
    return config
