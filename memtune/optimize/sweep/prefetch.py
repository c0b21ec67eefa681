"""Ingest several conversations of a sweep's config at once (each into its own ingestion-cache entry), sharing one
pool of `lm.max_concurrency` LM calls, before they are answered one by one.

scoring.evaluate_conversations scores conversation by conversation so that a single-objective study can prune
after each; ingesting them all first spends the LM calls of conversations a pruned trial never reaches. So a trial
prefetches only when its study cannot prune (several objectives), and the held-out re-scoring always does.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from omegaconf import DictConfig

from ...policies.policy import MemoryPolicy
from ...policies.taskpool import TaskPool
from ..data.types import Dataset
from ..evaluation.ingest_cache import prepare_policy
from ..evaluation.parallel import lm_concurrency


def prefetch_policies(
    cfg: DictConfig, parts: dict[str, Dataset], out_dir: Path
) -> dict[str, tuple[MemoryPolicy, dict]]:
    """prepare_policy for every conversation of `parts` (id -> its one-conversation dataset) at once; {} when the
    config has no LM or max_concurrency 1 (then each is prepared when it is scored)."""
    workers = lm_concurrency(cfg)
    if not cfg.get("lm") or workers <= 1 or len(parts) <= 1:
        return {}
    ids: Sequence[str] = list(parts)
    out: dict[str, tuple[MemoryPolicy, dict]] = {}
    with TaskPool(workers) as pool, ThreadPoolExecutor(len(ids), thread_name_prefix="memtune-prefetch") as threads:

        def prepare(cid: str) -> tuple[MemoryPolicy, dict]:
            return prepare_policy(cfg, parts[cid], out_dir / cid, False, cfg.ingest_cache, pool)

        # each thread runs in a copy of this context: the caller's DSPy settings and metering reach the LM calls
        futures = {cid: threads.submit(contextvars.copy_context().run, prepare, cid) for cid in ids}
        try:
            for cid in ids:
                out[cid] = futures[cid].result()
        except BaseException:
            for future in futures.values():
                if future.done() and not future.exception():
                    future.result()[0].store.close()
            raise
    return out
