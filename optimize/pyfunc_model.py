"""The MLflow pyfunc model of a policy bundle, logged with "models from code" (no pickle): MLflow copies this file
into the model and runs it at load time; `load_context` loads the bundle from the model's artifacts into a
`memtune.policies.memory.Memory` (the runtime Memory API), so the model answers exactly like memtune-serve.

Input of `predict`: a list of request dicts (or a pandas DataFrame with one request per row). Each has an `op`,
and the keyword arguments of the Memory method of that name:

    {"op": "add", "messages": [{"role": "user", "content": "..."}] | "one message", "user_id": "alice",
     "agent_id": "", "run_id": "", "metadata": {...}, "infer": true}          -> events (ADD/UPDATE/DELETE/NOOP)
    {"op": "search", "query": "...", "user_id": "alice", "top_k": 5, "filters": {...}, "threshold": 0.3}
    {"op": "get", "memory_id": "..."}   {"op": "get_all", "user_id": "alice", "limit": 100}
    {"op": "update", "memory_id": "...", "text": "..."}   {"op": "delete", "memory_id": "..."}
    {"op": "delete_all", "user_id": "alice"}   {"op": "history", "memory_id": "..."}
    {"op": "answer", "query": "...", "user_id": "alice"}     -> {"answer": ..., "memories": [...]} (the answerer)

Output: one dict per request, {"op": ..., "result": ...}, plain JSON types (memory dicts as Memory returns them).
A bad request raises (ValueError naming the field; MemoryNotFound for an unknown id) before anything is written.
Memories persist in the LanceDB store at model_config["store_uri"] (or $MEMTUNE_STORE_URI); with neither, in a
temporary directory that lives as long as the loaded model. The LM of LLM stages comes from the bundle's lm
group (OPENAI_API_KEY / OPENAI_BASE_URL).
"""

from __future__ import annotations

import os
import tempfile

import mlflow
from memtune.policies.types import MemoryRecord, Scope
from mlflow.pyfunc import PythonModel

SCOPE = ("user_id", "agent_id", "run_id")
OPS: dict[str, tuple[str, ...]] = {  # op -> the keyword arguments it takes
    "add": ("messages", *SCOPE, "metadata", "infer"),
    "search": ("query", *SCOPE, "top_k", "filters", "threshold"),
    "get": ("memory_id",),
    "get_all": (*SCOPE, "limit"),
    "update": ("memory_id", "text", "metadata"),
    "delete": ("memory_id",),
    "delete_all": SCOPE,
    "history": ("memory_id",),
    "answer": ("query", *SCOPE),
}


def memory_dict(m: MemoryRecord, version: str, embedder_id: str) -> dict:
    """A retrieved record in the Memory API's layout (graph triplets, which are not stored memories, included)."""
    return {
        "id": m.id,
        "memory": m.text,
        "user_id": m.scope.user_id,
        "agent_id": m.scope.agent_id,
        "run_id": m.scope.run_id,
        "provenance": list(m.provenance),
        "timestamp": m.timestamp,
        "created_at": m.created_at,
        "updated_at": m.updated_at,
        "metadata": dict(m.metadata or {}),
        "score": None if m.score is None else float(m.score),
        "policy_version": version,
        "embedder_id": embedder_id,
    }


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


class PolicyModel(PythonModel):
    """A policy bundle behind MLflow's pyfunc interface."""

    def load_context(self, context) -> None:
        from memtune.policies.memory import Memory

        config = context.model_config or {}
        store_uri = config.get("store_uri") or os.environ.get("MEMTUNE_STORE_URI")
        if not store_uri:
            self._tmp = tempfile.TemporaryDirectory(prefix="memtune-pyfunc-")
            store_uri = self._tmp.name
        self.memory = Memory.from_bundle(
            context.artifacts["bundle"], store_uri, cache_dir=config.get("cache_dir") or None
        )

    # No type hints on purpose: MLflow would then validate the input against them and reject a DataFrame.
    def predict(self, context, model_input, params=None):
        rows = model_input.to_dict("records") if hasattr(model_input, "to_dict") else model_input
        if isinstance(rows, dict):
            rows = [rows]
        # a DataFrame fills the columns a request does not use with NaN (or None): drop those
        return [self._one({k: v for k, v in dict(row).items() if not _missing(v)}) for row in rows]

    def _one(self, row: dict) -> dict:
        op = row.pop("op", None)
        if op not in OPS:
            raise ValueError(f"request {row!r}: op must be one of {sorted(OPS)}, got {op!r}")
        unknown = sorted(set(row) - set(OPS[op]))
        if unknown:
            raise ValueError(f"request op={op!r}: unknown field(s) {unknown}; {op} takes {list(OPS[op])}")
        if op == "answer":
            if not isinstance(row.get("query"), str) or not row["query"].strip():
                raise ValueError("request op='answer' needs a non-empty 'query'")
            policy = self.memory.policy
            answer, records = policy.answer(row["query"], Scope(*(str(row.get(k) or "") for k in SCOPE)))
            ids = (self.memory.bundle_version, policy.embedder.id)
            return {"op": op, "result": {"answer": answer, "memories": [memory_dict(m, *ids) for m in records]}}
        return {"op": op, "result": getattr(self.memory, op)(**row)}


mlflow.models.set_model(PolicyModel())
