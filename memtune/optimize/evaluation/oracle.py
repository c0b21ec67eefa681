"""Oracle runs: a policy stage that reads the benchmark's annotations (a class with ``oracle = True``, today
`ObservationExtractor`, ``policy/extractor=observations``) is not a policy production could run. Such a run carries
``oracle: true`` in summary.json, a ``memtune.oracle`` MLflow tag and an ``[ORACLE: ...]`` label in reports, so it
is never read as the preset it was built from."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

POLICY_CONF = Path(__file__).resolve().parents[2] / "conf" / "policy"


def _load(target: str):
    module, _, name = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def _variant(stage: str, target: str) -> str:
    """The config variant that builds `target` (conf/policy/<stage>/<variant>.yaml: the override a user types),
    else the class name."""
    folder = POLICY_CONF / stage
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        try:
            node = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError:
            continue
        if isinstance(node, dict) and node.get("_target_") == target:
            return path.stem
    return target.rpartition(".")[2]


def oracle_stages(policy: Mapping[str, Any] | None) -> dict[str, str]:
    """{stage path: variant} of every stage of a resolved policy config whose class says ``oracle = True``:
    {"extractor": "observations"} for ``policy/extractor=observations``; {} for a real policy."""
    found: dict[str, str] = {}

    def walk(node: Any, path: str) -> None:
        if not isinstance(node, Mapping):
            return
        target = node.get("_target_")
        if isinstance(target, str) and getattr(_load(target), "oracle", False) is True:
            found[path] = _variant(path, target)
        for key, sub in node.items():
            walk(sub, f"{path}/{key}" if path else str(key))

    walk(policy or {}, "")
    return found


def summary_oracle(summary: Mapping[str, Any]) -> dict[str, str]:
    """The oracle stages of a summary.json: its `oracle_stages`, or (summaries written before the flag existed)
    those of its resolved config."""
    if "oracle_stages" in summary:
        return dict(summary["oracle_stages"] or {})
    return oracle_stages(((summary.get("config") or {}).get("policy")) or {})


def oracle_label(policy_name: str, stages: Mapping[str, str]) -> str:
    """'mem0_offline [ORACLE: observations]' for an oracle run, the policy name otherwise."""
    return f"{policy_name} [ORACLE: {', '.join(stages.values())}]" if stages else policy_name
