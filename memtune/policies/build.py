"""Build a MemoryPolicy from a composed Hydra config (groups: policy/*, embedder, lm, store)."""

from __future__ import annotations

import os
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from .embed.cache import CachedEmbedder
from .lm import CostMeter
from .policy import MemoryPolicy

STAGES = ("extractor", "summarizer", "decider", "retriever", "answerer")  # + the optional graph (build_graph)


def build_embedder(cfg: DictConfig, cache_dir: str | Path | None):
    embedder = instantiate(cfg.embedder)
    return CachedEmbedder(embedder, Path(cache_dir) / "embeddings") if cache_dir else embedder


def build_policy(
    cfg: DictConfig,
    store_uri: str | Path,
    cache_dir: str | Path | None = None,
    meter: CostMeter | None = None,
    embedder=None,
) -> MemoryPolicy:
    embedder = embedder or build_embedder(cfg, cache_dir)
    store = instantiate(cfg.store, uri=str(store_uri), dim=embedder.dim, embedder_id=embedder.id)
    lm = instantiate(cfg.lm) if cfg.get("lm") else None
    stages = {name: instantiate(cfg.policy[name]) for name in STAGES}
    return MemoryPolicy(
        **stages, embedder=embedder, store=store, lm=lm, meter=meter, graph=build_graph(cfg, store_uri, embedder)
    )


def graph_mode(cfg: DictConfig) -> str:
    """policy.graph.mode: off (Mem0, also when the preset has no graph group), on (Mem0g) or only."""
    graph = cfg.policy.get("graph")
    mode = graph.get("mode", "off") if graph is not None else "off"
    return ("on" if mode else "off") if isinstance(mode, bool) else str(mode)  # YAML 1.1 reads a bare on/off as a bool


def build_graph(cfg: DictConfig, store_uri: str | os.PathLike, embedder):
    """The graph stage (in the same LanceDB directory as the memories), or None when policy.graph is off."""
    if graph_mode(cfg) == "off":
        return None
    return instantiate(cfg.policy.graph, mode=graph_mode(cfg), uri=str(store_uri), embedder=embedder)
