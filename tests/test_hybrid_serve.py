"""A hybrid bundle end to end: memtune-export with policy/retriever=hybrid, the Memory API over the production store
config (conf/store/lancedb.yaml: fts_index on), and the REST server (real uvicorn, real HTTP) returning a keyword
hit that dense retrieval alone misses (MiniLM embeddings, as in production)."""

from __future__ import annotations

import httpx
from serve_support import AUTH, TOKEN, uvicorn_thread

from memtune.policies.stages.retrieve import CosineRetriever
from memtune.policies.store.fts import has_fts_index
from memtune.policies.types import Scope
from memtune.serve.rest import create_app

FILLERS = [
    "Caroline asked about the serial number of her laptop",
    "The serial number on the fridge is missing",
    "Melanie cannot find the serial number of her bike",
    "Caroline's phone has a long serial number",
    "Melanie wrote the serial number in her notebook",
    "The warranty needs the serial number",
]
TARGET = "Caroline scribbled XK-4471 on a napkin"
QUERY = "Which serial number is XK-4471?"


def test_a_served_hybrid_bundle_returns_keyword_hits(tmp_path):
    from memtune.optimize.export.app import export_from_overrides
    from memtune.policies.runtime.memory import Memory

    bundle = export_from_overrides(["policy=mem0_offline", "policy/retriever=hybrid", f"out={tmp_path / 'bundle'}"])
    memory = Memory.from_bundle(bundle["bundle"], tmp_path / "store")
    try:
        assert memory.policy.retriever.knobs.hybrid and memory.policy.store.fts_index
        assert has_fts_index(memory.policy.store._table)
        messages = [{"role": "user", "content": t} for t in [*FILLERS, TARGET]]
        memory.add(messages, user_id="u1", infer=False)
        memory.add([{"role": "user", "content": "Bob scribbled XK-4471 too"}], user_id="u2", infer=False)
        dense = [m.text for m in memory.policy.search(QUERY, Scope("u1"), retriever=CosineRetriever(top_k=3))]
        assert TARGET not in dense  # the dense list alone misses it
        local = memory.search(QUERY, user_id="u1", top_k=3)
        assert TARGET in [m["memory"] for m in local]
        with uvicorn_thread(create_app(memory, TOKEN)) as url, httpx.Client(base_url=url, headers=AUTH) as http:
            served = http.post("/v1/memories/search", json={"query": QUERY, "user_id": "u1", "top_k": 3}).json()
            assert served["results"] == local  # every field, the cosine "score" included
            other = http.post("/v1/memories/search", json={"query": QUERY, "user_id": "u2", "top_k": 3}).json()
            assert [m["memory"] for m in other["results"]] == ["Bob scribbled XK-4471 too"]  # scopes bind keyword hits
            gone = local[[m["memory"] for m in local].index(TARGET)]["id"]
            assert http.request("DELETE", f"/v1/memories/{gone}", params={"user_id": "u1"}).status_code == 200
            after = http.post("/v1/memories/search", json={"query": QUERY, "user_id": "u1", "top_k": 3}).json()
            assert TARGET not in [m["memory"] for m in after["results"]]  # a deleted memory is not found by keyword
    finally:
        memory.close()
