"""Policy bundles: a tuned policy as a directory a production service loads, with no tuning stack installed.

Layout (schema_version 1):

    bundle.json          schema_version, version, name, created_at, source (where the policy was chosen),
                         scores (what it was chosen on, and on which split), embedder {id, dim, config},
                         config (the resolved Hydra groups the policy needs: policy, embedder, store, lm),
                         modules {stage: {path, sha256}}
    modules/<stage>.json the state (instructions, demos) of every DSPy-module stage, written by
                         `module.save(path, save_program=False)`: JSON, never pickle

Why these rules:
* The config is stored resolved, so the bundle does not depend on the conf/ tree or environment it was exported
  from, except deployment settings that must come from the runtime environment: an `api_base` / `base_url` that
  was an `${oc.env:...}` interpolation stays one. Secrets are never written: keys are named by env var
  (`api_key_env`), and a literal secret anywhere in the config stops the export (`check_no_secrets`).
* The embedder identity is pinned: memories embedded by another model are not comparable, so `load_policy`
  refuses a runtime embedder whose id or dim differs.
* `version` defaults to "<name>-<8 hex>" where the hex is a hash of the config and the module states, so two
  bundles with the same version behave the same; every store the policy writes is stamped with it.

Runtime side only: no optuna / mlflow / polars imports (memtune.optimize.export.app finds the trial and calls
`save_bundle`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from ..build import STAGES, build_graph, graph_mode
from ..embed.cache import CachedEmbedder
from ..lm import CostMeter
from ..policy import MemoryPolicy
from .renamed_targets import current_targets

SCHEMA_VERSION = 1
SUPPORTED_SCHEMAS = (1,)
BUNDLE_FILE = "bundle.json"
MODULES_DIR = "modules"
REQUIRED = ("schema_version", "version", "name", "created_at", "source", "scores", "embedder", "config", "modules")
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


class BundleError(ValueError):
    """A bundle directory that cannot be loaded (missing or corrupt file, unsupported schema, wrong embedder)."""


@dataclass(frozen=True)
class BundleInfo:
    version: str
    name: str
    config: dict
    embedder_id: str
    embedder_dim: int
    scores: dict
    schema_version: int
    source: dict = field(default_factory=dict)
    created_at: str = ""
    path: str = ""
    modules: dict = field(default_factory=dict)


# ---- building the stages of a bundle config ---------------------------------------------------------------------


def build_stages(config: Mapping[str, Any], programs: bool = True) -> dict[str, Any]:
    """Instantiate the five stages from a bundle config's policy group. `programs=False` leaves out the compiled
    program a stage names (`program`): `load_policy` loads the state the bundle carries (modules/<stage>.json)
    instead, so a bundle never needs the programs directory it was exported from."""
    policy = config["policy"]
    missing = [s for s in STAGES if not isinstance(policy.get(s), Mapping)]
    if missing:
        raise BundleError(f"config.policy has no {missing} stage(s) (needs {list(STAGES)})")
    nodes = {name: dict(policy[name]) for name in STAGES}
    if not programs:
        nodes = {name: {**node, "program": None} if node.get("program") else node for name, node in nodes.items()}
    return {name: instantiate(OmegaConf.create(node)) for name, node in nodes.items()}


def graph_parts(config: Mapping[str, Any]) -> dict[str, Mapping]:
    """The configs of the graph's own stages ("graph.entities", ...); none when the graph is off."""
    if graph_mode(OmegaConf.create({"policy": dict(config["policy"])})) == "off":
        return {}
    graph = config["policy"]["graph"]
    return {
        f"graph.{part}": graph[part]
        for part in ("entities", "relations", "resolver")
        if isinstance(graph.get(part), Mapping) and graph[part].get("_target_")
    }


# ---- runtime side -----------------------------------------------------------------------------------------------
def read_bundle(bundle_dir: str | os.PathLike) -> BundleInfo:
    """Read and validate bundle.json (not the module files: `load_policy` checks those)."""
    root = Path(bundle_dir)
    path = root / BUNDLE_FILE
    if not root.is_dir():
        raise BundleError(f"bundle directory {root} does not exist (memtune-export writes one)")
    if not path.is_file():
        raise BundleError(f"{path} is missing: {root} is not a policy bundle (memtune-export writes one)")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"{path} is corrupt (not valid JSON: {err}); re-export the bundle") from err
    if not isinstance(doc, dict):
        raise BundleError(f"{path} is corrupt: expected a JSON object, got {type(doc).__name__}")
    schema = doc.get("schema_version")
    if schema not in SUPPORTED_SCHEMAS or isinstance(schema, bool):
        raise BundleError(
            f"{path}: schema_version {schema!r} is not supported by this memtune (supports "
            f"{list(SUPPORTED_SCHEMAS)}): upgrade memtune, or re-export the bundle with this version"
        )
    missing = [k for k in REQUIRED if k not in doc]
    if missing:
        raise BundleError(f"{path} is corrupt: missing field(s) {missing}; re-export the bundle")
    embedder, config = doc["embedder"], current_targets(doc["config"])  # a bundle from before the split loads
    if not isinstance(embedder, dict) or not embedder.get("id") or not isinstance(embedder.get("dim"), int):
        raise BundleError(f"{path} is corrupt: embedder must be {{id, dim, config}}, got {embedder!r}")
    if not isinstance(config, dict) or not isinstance(config.get("policy"), dict):
        raise BundleError(f"{path} is corrupt: config.policy is missing")
    return BundleInfo(
        version=str(doc["version"]),
        name=str(doc["name"]),
        config=config,
        embedder_id=str(embedder["id"]),
        embedder_dim=int(embedder["dim"]),
        scores=doc["scores"],
        schema_version=int(schema),
        source=doc["source"],
        created_at=str(doc["created_at"]),
        path=str(root.resolve()),
        modules=doc["modules"],
    )


def load_policy(
    bundle_dir: str | os.PathLike,
    store_uri: str | os.PathLike,
    *,
    lm: dspy.LM | None = None,
    cache_dir: str | os.PathLike | None = None,
    embedder=None,
    meter: CostMeter | None = None,
) -> tuple[MemoryPolicy, BundleInfo]:
    """Rebuild the exact policy of a bundle over the store at `store_uri` (stamped with the bundle version).

    lm        the LM for LLM stages; default: built from the bundle's lm group (reads OPENAI_API_KEY /
              OPENAI_BASE_URL from the environment), only when the policy has an LLM stage.
    cache_dir embeddings are cached under <cache_dir>/embeddings (as memtune-eval does).
    embedder  a ready embedder (tests, shared processes); its id and dim must equal the bundle's."""
    info = read_bundle(bundle_dir)
    root = Path(info.path)
    config = info.config
    for stage_name, entry in info.modules.items():  # every file is checked before anything touches the store
        _module_file(root, stage_name, entry)
    stages = build_stages(config, programs=False)  # compiled states come from the bundle's module files
    expected = {n for n, s in stages.items() if isinstance(s, dspy.Module)} | {
        n for n, node in graph_parts(config).items() if issubclass(get_class(str(node["_target_"])), dspy.Module)
    }
    if set(info.modules) != expected:
        raise BundleError(
            f"{root / BUNDLE_FILE}: module states for {sorted(info.modules)}, but config.policy has "
            f"DSPy-module stages {sorted(expected)}: the bundle is inconsistent; re-export it"
        )
    for stage_name, stage in stages.items():
        if isinstance(stage, dspy.Module):
            _load_module(stage, stage_name, root, info.modules)
    if embedder is None:
        if not config.get("embedder"):
            raise BundleError(f"{root / BUNDLE_FILE}: config.embedder is missing")
        embedder = instantiate(OmegaConf.create(config["embedder"]))
        if cache_dir:
            embedder = CachedEmbedder(embedder, Path(cache_dir) / "embeddings")
    if embedder.id != info.embedder_id or int(embedder.dim) != info.embedder_dim:
        raise BundleError(
            f"bundle {info.version} was exported with embedder {info.embedder_id!r} ({info.embedder_dim}-d) but the "
            f"runtime embedder is {embedder.id!r} ({embedder.dim}-d): vectors of two embedders are not comparable. "
            "Use the bundle's embedder (config.embedder in bundle.json), or re-export the policy with this one"
        )
    if lm is None and config.get("lm") and expected:
        lm = instantiate(OmegaConf.create(config["lm"]))
    store_cfg = OmegaConf.create(config["store"])
    extra = {"policy_version": info.version} if _accepts(store_cfg, "policy_version") else {}
    try:
        store = instantiate(store_cfg, uri=str(store_uri), dim=int(embedder.dim), embedder_id=embedder.id, **extra)
    except InstantiationException as err:  # Hydra wraps the store's own clear error (e.g. another embedder's store)
        if isinstance(err.__cause__, ValueError):
            raise err.__cause__ from None
        raise
    graph = build_graph(OmegaConf.create({"policy": config["policy"]}), store_uri, embedder)
    if graph is not None:
        for stage_name, stage in graph.llm_stages().items():
            _load_module(stage, stage_name, root, info.modules)
    return MemoryPolicy(**stages, embedder=embedder, store=store, lm=lm, meter=meter, graph=graph), info


def _module_file(root: Path, stage_name: str, entry: Any) -> Path:
    """The module file of a stage, checked: inside the bundle, present, and with the sha256 bundle.json records."""
    if not isinstance(entry, dict) or not entry.get("path"):
        raise BundleError(
            f"{root / BUNDLE_FILE}: modules.{stage_name} must be {{path, sha256}}, got {entry!r}: re-export the bundle"
        )
    path = (root / entry["path"]).resolve()
    if root.resolve() not in path.parents:
        raise BundleError(f"{root / BUNDLE_FILE}: module path {entry['path']!r} points outside the bundle")
    if not path.is_file():
        raise BundleError(f"{path} is missing (module state of stage {stage_name!r}): re-export the bundle")
    if entry.get("sha256") and sha256_file(path) != entry["sha256"]:
        raise BundleError(f"{path} does not match the sha256 in bundle.json (changed or corrupt): re-export the bundle")
    return path


def _load_module(stage: dspy.Module, stage_name: str, root: Path, modules: Mapping[str, Any]) -> None:
    path = _module_file(root, stage_name, modules.get(stage_name))
    try:
        stage.load(str(path))  # JSON only; warns on a dspy version mismatch; drops unsafe LM endpoint keys
    except Exception as err:  # JSON errors, or a state that does not fit the module's predictors
        raise BundleError(
            f"{path} is corrupt or does not fit stage {stage_name!r} "
            f"({type(err).__name__}: {err}): re-export the bundle"
        ) from err


def _accepts(node: DictConfig, kwarg: str) -> bool:
    """Does the class behind `_target_` take `kwarg`? (MemoryStore gains `policy_version`; older ones do not.)"""
    try:
        params = inspect.signature(get_class(str(node._target_))).parameters
    except Exception:
        return False
    return kwarg in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
