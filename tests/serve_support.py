"""Shared by tests/test_rest.py and tests/test_mcp.py: a real `Memory` over the offline policy (HashEmbedder, fresh
LanceDB store) with the fixture conversation ingested, and a real uvicorn server on a free localhost port."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from fake_openai import uvicorn_thread  # noqa: E402,F401 (re-exported for the server tests)

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FIXTURE_USER = "conv-fixture"  # the scope the fixture conversation is ingested under


def offline_cfg(*overrides: str):
    from hydra import compose, initialize_config_module

    with initialize_config_module("memtune.conf", version_base="1.3"):
        return compose("eval", overrides=["policy=mem0_offline", "lm=none", *overrides])


def make_memory(store_uri: Path, embedder, version: str = "test-v1", *overrides: str, **kwargs):
    from memtune.policies.build import build_policy
    from memtune.policies.runtime.memory import Memory

    return Memory(build_policy(offline_cfg(*overrides), store_uri, embedder=embedder), bundle_version=version, **kwargs)


# Mem0g with the LLM-free stages (spaCy entities and relations, rule resolver): a bundle whose search has triplets.
GRAPH = ("policy=mem0_offline_v0", "policy/graph=on")  # Mem0g over the vector policy it was measured with (v0)
GRAPH_USER = "graph-user"
GRAPH_PAIRS = [
    [
        {"role": "Caroline", "content": "I moved to Denver last year with my sister Ana.", "dia_id": "D1:1"},
        {"role": "Melanie", "content": "Denver is lovely. I visited Boston in May.", "dia_id": "D1:2"},
    ],
    [
        {"role": "Caroline", "content": "Ana works at the city library in Denver.", "dia_id": "D1:3"},
        {"role": "Melanie", "content": "I adopted a grey cat called Pixel.", "dia_id": "D1:4"},
    ],
]
GRAPH_QUERY = "Where does Caroline live?"


@pytest.fixture
def graph_memory(tmp_path, embedder):
    """A Mem0g Memory (graph on, LLM-free) with GRAPH_PAIRS ingested under GRAPH_USER."""
    memory = make_memory(tmp_path / "graph-store", embedder, "graph-v1", *GRAPH)
    for pair in GRAPH_PAIRS:
        memory.add(pair, user_id=GRAPH_USER)
    yield memory
    memory.close()


def versions(memory) -> tuple[int, int]:
    """The LanceDB versions of the memories and history tables: a refused call must move neither."""
    memory.store.flush()
    return memory.store.version, memory.store._history.version


@pytest.fixture
def memory(tmp_path, embedder):
    """A real Memory over the offline policy with the fixture conversation ingested (import it as a fixture)."""
    memory = make_memory(tmp_path / "store", embedder)
    ingest_fixture(memory)
    yield memory
    memory.close()


def fixture_conversation():
    from memtune.optimize.data.locomo import fixture_path, load_locomo

    return load_locomo(fixture_path()).conversations[0]


def ingest_fixture(memory) -> list[str]:
    """Ingest the fixture conversation (pairs of turns) under FIXTURE_USER; returns its questions."""
    conv = fixture_conversation()
    for session in conv.sessions:  # pairs of turns, never across two sessions (as memtune-eval ingests)
        for i in range(0, len(session.turns), 2):
            pair = [
                {"role": t.speaker, "content": t.text, "dia_id": t.dia_id, "timestamp": t.timestamp}
                for t in session.turns[i : i + 2]
            ]
            memory.add(pair, user_id=FIXTURE_USER)
    return [q.question for q in conv.questions]


def snapshot(memory) -> list[tuple]:
    """Everything stored for FIXTURE_USER (id, text): what bad requests must leave untouched."""
    return sorted((m["id"], m["memory"]) for m in memory.get_all(user_id=FIXTURE_USER))


def ranked(results: list[dict]) -> list[tuple]:
    return [(m["id"], m["memory"], round(m["score"], 5) if m.get("score") is not None else None) for m in results]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
