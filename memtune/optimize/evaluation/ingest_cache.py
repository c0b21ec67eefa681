"""Ingestion is the expensive half of a trial and depends only on the ingestion knobs. The ingested LanceDB
store is kept under <cache_dir>/ingest/<key>, where the key hashes everything ingestion depends on and nothing
else (`ingestion_parts` lists it), so a trial that only changes retrieval or answer knobs reuses it:

* config: the ingest stages (extractor, summarizer, decider), the graph's ingestion knobs when it is on, the
  embedder, the store, the LM (and its model id);
* data: the file's sha256, the conversations, max_sessions;
* code: the source of every memtune module and function ingestion runs, derived by `code_deps.source_closure`
  from its entry points (prepare_policy, evaluate.ingest_all, the data loader, the classes the config builds)
  rather than listed by hand: the signatures (prompts), lm.py, the store's write/update code, dia_id parsing;
* state: the DSPy program state (`dump_state()`: instructions, demos) of every LLM stage, so a compiled or
  loaded program is a different ingestion;
* versions: dspy, lancedb, spaCy and its pipeline package, onnxruntime, tokenizers, and the embedder's weight
  files (name, size, sha256; a remote embedder has none: its model id stands for them).

A store is published by an atomic rename once complete: concurrent workers never read a half-written one,
and a killed run leaves only a temp dir behind."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, cast

from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from ...policies.build import build_embedder, build_policy, graph_mode
from ...policies.lm import CostMeter
from ...policies.policy import MemoryPolicy
from ...policies.runtime.bundle_save import module_states
from ..data.types import Dataset
from .code_deps import source_closure
from .evaluate import ingest_all
from .parallel import lm_concurrency

INGEST_STAGES = ("extractor", "summarizer", "decider")
GRAPH_STAGES = ("entities", "relations", "resolver")  # the graph's own stages (policy.graph.<part>._target_)
VERSIONED = ("dspy", "lancedb", "spacy", "onnxruntime", "tokenizers")  # packages whose code ingestion runs


def ingestion_key(cfg: DictConfig, dataset: Dataset, embedder=None) -> str:
    """Hash of everything that determines the ingested store, and nothing else."""
    parts = ingestion_parts(cfg, dataset, embedder)
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def ingestion_parts(cfg: DictConfig, dataset: Dataset, embedder=None) -> dict:
    """What the ingestion key hashes, readable (a cache miss can be explained by diffing two of these)."""
    ds = cfg.dataset
    nodes = {name: cfg.policy[name] for name in INGEST_STAGES}
    graph_on = graph_mode(cfg) != "off"
    if graph_on:
        nodes |= {f"graph.{p}": cfg.policy.graph[p] for p in GRAPH_STAGES if _target(cfg.policy.graph.get(p))}
    lm = OmegaConf.to_container(cfg.lm, resolve=True) if cfg.get("lm") else None
    if isinstance(lm, dict):  # how many calls run at once changes the wall time, never the store
        lm.pop("max_concurrency", None)
    embedder = embedder if embedder is not None else instantiate(cfg.embedder)
    parts: dict[str, Any] = {
        "stages": {name: OmegaConf.to_container(cfg.policy[name], resolve=True) for name in INGEST_STAGES},
        "embedder": OmegaConf.to_container(cfg.embedder, resolve=True),
        "store": OmegaConf.to_container(cfg.store, resolve=True),
        "lm": lm,
        "lm_model": lm.get("model") if isinstance(lm, dict) else None,
        "data": {
            "sha256": dataset.sha256,
            "conversations": [c.sample_id for c in dataset.conversations],
            "max_sessions": ds.get("max_sessions"),
        },
        "code": source_closure(ingestion_roots(cfg)),
        "program_states": module_states({name: instantiate(node) for name, node in nodes.items()}),
        "versions": {name: _version(name) for name in VERSIONED},
        "embedder_weights": {"id": embedder.id, "files": _weight_files(embedder)},
    }
    if graph_on:  # the graph tables live in the cached store: its ingestion knobs count (on/only share it)
        graph = cast(dict, OmegaConf.to_container(cfg.policy.graph, resolve=True))
        parts["graph"] = {k: v for k, v in graph.items() if k not in ("mode", "retrieval")}
        models = {
            str(graph[p]["model"]) for p in GRAPH_STAGES if isinstance(graph.get(p), dict) and graph[p].get("model")
        }
        parts["versions"] |= {m: _version(m) for m in sorted(models)}  # a spaCy pipeline is a package
    return parts


def ingestion_roots(cfg: DictConfig) -> list:
    """The entry points of ingestion: this module's prepare_policy (which builds the policy and runs ingest_all),
    the data loader (dia_id parsing decides the turns ingestion sees) and every class or function the config
    builds for it (stages, store, embedder, LM; the graph's when it is on)."""
    targets = [cfg.policy[name] for name in INGEST_STAGES] + [cfg.store, cfg.embedder]
    if cfg.get("lm"):
        targets.append(cfg.lm)
    if graph_mode(cfg) != "off":
        targets += [cfg.policy.graph] + [cfg.policy.graph.get(p) for p in GRAPH_STAGES]
    modules = sorted({get_object(t).__module__ for t in map(_target, targets) if t})
    return [prepare_policy, ingest_all, "memtune.optimize.data.locomo", *modules]


def _target(node) -> str | None:
    return str(node._target_) if node is not None and hasattr(node, "get") and node.get("_target_") else None


def _version(dist: str) -> str | None:
    for name in (dist, dist.replace("_", "-")):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _weight_files(embedder) -> list[dict]:
    """The local files the embedder loads (MiniLM: the ONNX weights, the tokenizer): name, size, sha256."""
    inner = getattr(embedder, "inner", embedder)  # a CachedEmbedder wraps the real one
    files = inner.weight_files() if hasattr(inner, "weight_files") else []
    out = []
    for path in map(Path, files):
        stat = path.stat()
        out.append({"name": path.name, "bytes": stat.st_size, "sha256": _file_sha256(str(path), stat.st_mtime_ns)})
    return out


@lru_cache(maxsize=64)
def _file_sha256(path: str, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare_policy(
    cfg: DictConfig, dataset: Dataset, out_dir: Path, progress: bool = True, use_cache: bool = True, pool=None
) -> tuple[MemoryPolicy, dict]:
    """A policy whose store holds the ingested dataset, and the ingestion facts (cost, ops, throughput).

    With use_cache, the store comes from (or goes to) the ingestion cache; the facts then report the cost
    of the original ingestion and `cache_hit` says whether this run paid it."""
    cache_dir = Path(cfg.cache_dir)
    embedder = build_embedder(cfg, cache_dir)
    if not use_cache:
        policy = build_policy(cfg, out_dir / "store", embedder=embedder)
        facts = ingest_all(policy, dataset, progress, lm_concurrency(cfg), pool) | {
            "cache_hit": False,
            "store": str(out_dir / "store"),
        }
        policy.meter = CostMeter()  # the answer phase is metered apart
        return policy, facts
    key = ingestion_key(cfg, dataset, embedder)
    final = cache_dir / "ingest" / key
    if not (final / "ingest.json").exists():
        tmp = final.with_name(f"{key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        policy = build_policy(cfg, tmp / "store", embedder=embedder)
        facts = ingest_all(policy, dataset, progress, lm_concurrency(cfg), pool) | {"key": key}
        (tmp / "ingest.json").write_text(json.dumps(facts, indent=2))
        policy.store.close()
        try:
            tmp.rename(final)
        except OSError:  # another worker published the same key first: theirs is equivalent
            shutil.rmtree(tmp, ignore_errors=True)
        hit = False
    else:
        hit = True
    facts = json.loads((final / "ingest.json").read_text()) | {"cache_hit": hit, "store": str(final / "store")}
    return build_policy(cfg, final / "store", embedder=embedder), facts
