"""Writing a policy bundle (the layout and its rules: bundle.py): the module states of the live stages, the version
hash, and the directory written atomically."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dspy
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ..policy import MemoryPolicy
from .bundle import (
    BUNDLE_FILE,
    MODULES_DIR,
    SCHEMA_VERSION,
    VERSION_PATTERN,
    BundleInfo,
    build_stages,
    graph_parts,
    read_bundle,
    sha256_file,
)
from .bundle_config import check_no_secrets


def module_states(stages: Mapping[str, Any]) -> dict[str, dict]:
    """The JSON state (instructions, demos) of every DSPy-module stage."""
    return {name: stage.dump_state() for name, stage in stages.items() if isinstance(stage, dspy.Module)}


def policy_hash(config: Mapping[str, Any], states: Mapping[str, Any]) -> str:
    """8 hex digits over everything that changes behaviour: the config and the module states."""
    blob = json.dumps({"config": config, "modules": states}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def graph_stages(config: Mapping[str, Any]) -> dict[str, Any]:
    """The graph's own stages built from config.policy.graph, without a graph store (to export their states)."""
    return {name: instantiate(OmegaConf.create(dict(node))) for name, node in graph_parts(config).items()}


def policy_modules(policy: MemoryPolicy) -> dict[str, Any]:
    """A live policy's stages, plus its graph's stages when it has a graph: what `save_bundle(stages=...)` takes."""
    graph = getattr(policy, "graph", None)
    extra = graph.llm_stages() if graph is not None and hasattr(graph, "llm_stages") else {}
    return policy.stages() | extra


def save_bundle(
    out_dir: str | os.PathLike,
    config: Mapping[str, Any],
    *,
    embedder_id: str,
    embedder_dim: int,
    stages: Mapping[str, Any] | None = None,
    name: str | None = None,
    version: str | None = None,
    scores: Mapping[str, Any] | None = None,
    source: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> BundleInfo:
    """Write a bundle. `config` comes from `bundle_config`; `stages` are the policy's live stages, whose DSPy module
    states (instructions, demos) are saved: pass `policy_modules(policy)`; None builds them fresh from the config.
    `embedder_id` / `embedder_dim` come from the embedder the policy was scored with.

    Writes into a temporary sibling and renames it into place, so a failed export leaves no half bundle; an
    existing non-empty `out_dir` is refused unless `overwrite` (then it is replaced only after the new one is
    complete)."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{out} exists and is not empty: choose another output directory, or pass "
            "overwrite=True (memtune-export force=true) to replace it"
        )
    config = json.loads(json.dumps(dict(config)))  # plain JSON types only, and a private copy
    check_no_secrets(config)
    extractor = (config.get("policy") or {}).get("extractor") or {}
    if str(extractor.get("_target_", "")).endswith("ObservationExtractor"):
        raise ValueError(
            "policy.extractor is the ObservationExtractor ORACLE (replays LOCOMO annotations that "
            "production never has): it is not a policy and cannot be exported"
        )
    stages = dict(stages) if stages is not None else build_stages(config) | graph_stages(config)
    states = module_states(stages)
    name = name or str((config.get("policy") or {}).get("name") or "policy")
    version = version or f"{name}-{policy_hash(config, states)}"
    if not VERSION_PATTERN.match(version):
        raise ValueError(f"bundle version {version!r}: use letters, digits and . _ + - (at most 128 characters)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    (tmp / MODULES_DIR).mkdir(parents=True)
    try:
        modules = {}
        for stage_name, stage in stages.items():
            if isinstance(stage, dspy.Module):
                path = tmp / MODULES_DIR / f"{stage_name}.json"
                stage.save(str(path), save_program=False)
                modules[stage_name] = {"path": f"{MODULES_DIR}/{stage_name}.json", "sha256": sha256_file(path)}
        doc = {
            "schema_version": SCHEMA_VERSION,
            "version": version,
            "name": name,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "source": dict(source or {"kind": "unknown"}),
            "scores": dict(scores or {}),
            "embedder": {"id": embedder_id, "dim": int(embedder_dim), "config": config.get("embedder")},
            "config": config,
            "modules": modules,
            "dependencies": {"dspy": getattr(dspy, "__version__", "")},
        }
        text = json.dumps(doc, indent=2, default=str)
        check_no_secrets(json.loads(text), "bundle.json")
        (tmp / BUNDLE_FILE).write_text(text)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return read_bundle(out)
