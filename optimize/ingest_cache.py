"""Ingestion is the expensive half of a trial and depends only on the ingestion knobs. The ingested LanceDB
store is kept under <cache_dir>/ingest/<key>, where key hashes those knobs (extractor, summarizer, decider,
embedder, store, LM), the data (file sha256, conversations, sessions) and the ingestion code, so a trial that
only changes retrieval or answer knobs reuses it. A store is published by an atomic rename once complete:
concurrent workers never read a half-written one, and a killed run leaves only a temp dir behind."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import shutil
import uuid
from pathlib import Path

from hydra.utils import get_class
from memtune.optimize.data import Dataset
from memtune.optimize.evaluate import ingest_all
from memtune.policies import embed, policy, store
from memtune.policies.build import build_embedder, build_policy, graph_mode
from memtune.policies.lm import CostMeter
from memtune.policies.policy import MemoryPolicy
from omegaconf import DictConfig, OmegaConf

INGEST_STAGES = ("extractor", "summarizer", "decider")
GRAPH_MODULES = tuple(f"memtune.policies.graph{m}" for m in ("", "_store", "_types", "_update", "_extract"))


def ingestion_key(cfg: DictConfig, dataset: Dataset) -> str:
    """Hash of everything that determines the ingested store, and nothing else."""
    stage_classes = [get_class(cfg.policy[name]._target_) for name in INGEST_STAGES]
    code = [inspect.getsource(m) for m in (policy, store, embed)]
    code += [inspect.getsource(inspect.getmodule(c)) for c in stage_classes]
    ds = cfg.dataset
    parts = {
        "stages": {name: OmegaConf.to_container(cfg.policy[name], resolve=True) for name in INGEST_STAGES},
        "embedder": OmegaConf.to_container(cfg.embedder, resolve=True),
        "store": OmegaConf.to_container(cfg.store, resolve=True),
        "lm": OmegaConf.to_container(cfg.lm, resolve=True) if cfg.get("lm") else None,
        "data": {
            "sha256": dataset.sha256,
            "conversations": [c.sample_id for c in dataset.conversations],
            "max_sessions": ds.get("max_sessions"),
        },
        "code": hashlib.sha256("".join(sorted(set(code))).encode()).hexdigest(),
    }
    if graph_mode(cfg) != "off":  # the graph tables live in the cached store: its ingestion knobs and code count
        graph = OmegaConf.to_container(cfg.policy.graph, resolve=True)
        parts["graph"] = {k: v for k, v in graph.items() if k not in ("mode", "retrieval")}  # on/only share it
        parts["graph_code"] = hashlib.sha256(
            "".join(
                inspect.getsource(importlib.import_module(m))
                for m in (
                    *GRAPH_MODULES,
                    *sorted({graph[s]["_target_"].rsplit(".", 1)[0] for s in ("entities", "relations", "resolver")}),
                )
            ).encode()
        ).hexdigest()
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def prepare_policy(
    cfg: DictConfig, dataset: Dataset, out_dir: Path, progress: bool = True, use_cache: bool = True
) -> tuple[MemoryPolicy, dict]:
    """A policy whose store holds the ingested dataset, and the ingestion facts (cost, ops, throughput).

    With use_cache, the store comes from (or goes to) the ingestion cache; the facts then report the cost
    of the original ingestion and `cache_hit` says whether this run paid it."""
    cache_dir = Path(cfg.cache_dir)
    embedder = build_embedder(cfg, cache_dir)
    if not use_cache:
        policy = build_policy(cfg, out_dir / "store", embedder=embedder)
        facts = ingest_all(policy, dataset, progress) | {"cache_hit": False, "store": str(out_dir / "store")}
        policy.meter = CostMeter()  # the answer phase is metered apart
        return policy, facts
    key = ingestion_key(cfg, dataset)
    final = cache_dir / "ingest" / key
    if not (final / "ingest.json").exists():
        tmp = final.with_name(f"{key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        policy = build_policy(cfg, tmp / "store", embedder=embedder)
        facts = ingest_all(policy, dataset, progress) | {"key": key}
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
