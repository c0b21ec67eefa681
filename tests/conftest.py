"""Shared test fixtures: a fast deterministic embedder and a fresh LanceDB store per test."""

from __future__ import annotations

import hashlib
import os
import re

import numpy as np
import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


class HashEmbedder:
    """Bag-of-words hashing embedder: identical texts -> identical vectors, shared words -> similar ones."""

    id = "test-hash-64"
    dim = 64

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)


@pytest.fixture
def embedder():
    return HashEmbedder()


@pytest.fixture
def store(tmp_path, embedder):
    from memtune.policies.store.store import MemoryStore

    return MemoryStore(tmp_path / "store", dim=embedder.dim, embedder_id=embedder.id)


PG_SKIP = (
    "needs a PostgreSQL server: bash scripts/postgres.sh start && export MEMTUNE_TEST_PG_URL=$(bash scripts/postgres.sh "
    "url) (a role that may create databases; .ci/run does this)"
)


def pytest_collection_modifyitems(config, items):
    """Tests marked `postgres` run against MEMTUNE_TEST_PG_URL and are skipped without it, unless
    MEMTUNE_REQUIRE_PG is set (CI): then a missing server is an error, not a skip."""
    if os.environ.get("MEMTUNE_TEST_PG_URL"):
        return
    if os.environ.get("MEMTUNE_REQUIRE_PG"):
        raise pytest.UsageError("MEMTUNE_REQUIRE_PG is set but MEMTUNE_TEST_PG_URL is not: " + PG_SKIP)
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=PG_SKIP))
