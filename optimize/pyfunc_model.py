"""The MLflow pyfunc model of a policy bundle, logged with "models from code" (no pickle): MLflow copies this file
into the model and runs it at load time; `load_context` loads the bundle from the model's artifacts.

Input of `predict`: a list of request dicts (or a pandas DataFrame with one request per row), each with an `op`:

    {"op": "add", "messages": [{"role": "user", "content": "..."}, ...] | "one message", "user_id": "alice",
     "agent_id": "", "run_id": "", "metadata": {...}}              -> the ADD/UPDATE/DELETE/NOOP events
    {"op": "search", "query": "...", "user_id": "alice", "top_k": 5} -> the top memories (top_k <= the policy's)
    {"op": "get_all", "user_id": "alice"}                           -> every memory of the scope
    {"op": "answer", "query": "...", "user_id": "alice"}            -> {"answer": ..., "memories": [...]}

Output: one dict per request, {"op": ..., "result": ...}, plain JSON types. Memories persist in the LanceDB store
at model_config["store_uri"] (or $MEMTUNE_STORE_URI); with neither, in a temporary directory that lives as long
as the loaded model. The LM of LLM stages comes from the bundle's lm group (OPENAI_API_KEY / OPENAI_BASE_URL).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel

from memtune.policies.types import MemoryRecord, Message, Scope

OPS = ("add", "search", "get_all", "answer")


def _message(item: Any) -> Message:
    if isinstance(item, str):
        return Message("user", item)
    if not isinstance(item, dict):
        raise ValueError(f"a message must be a string or a dict with role/content, got {type(item).__name__}")
    text = item.get("content", item.get("text"))
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"message {item!r} has no text: give it a non-empty 'content' (or 'text')")
    return Message(str(item.get("role", item.get("speaker", "user"))), text, str(item.get("dia_id", "")),
                   str(item.get("timestamp", "")))


def memory_dict(m: MemoryRecord, version: str, embedder_id: str) -> dict:
    return {"id": m.id, "memory": m.text, "user_id": m.scope.user_id, "agent_id": m.scope.agent_id,
            "run_id": m.scope.run_id, "provenance": list(m.provenance), "timestamp": m.timestamp,
            "created_at": m.created_at, "updated_at": m.updated_at, "metadata": dict(m.metadata or {}),
            "score": None if m.score is None else float(m.score), "policy_version": version,
            "embedder_id": embedder_id}


class PolicyModel(PythonModel):
    """A policy bundle behind MLflow's pyfunc interface."""

    def load_context(self, context) -> None:
        from memtune.policies.bundle import load_policy

        config = context.model_config or {}
        store_uri = config.get("store_uri") or os.environ.get("MEMTUNE_STORE_URI")
        if not store_uri:
            self._tmp = tempfile.TemporaryDirectory(prefix="memtune-pyfunc-")
            store_uri = self._tmp.name
        self.policy, self.info = load_policy(context.artifacts["bundle"], store_uri,
                                             cache_dir=config.get("cache_dir") or None)

    # No type hints on purpose: MLflow would then validate the input against them and reject a DataFrame.
    def predict(self, context, model_input, params=None):
        rows = model_input.to_dict("records") if hasattr(model_input, "to_dict") else model_input
        if isinstance(rows, dict):
            rows = [rows]
        # a DataFrame fills the columns a request does not use with NaN: drop those
        return [self._one({k: v for k, v in dict(row).items() if not (isinstance(v, float) and v != v)})
                for row in rows]

    def _one(self, row: dict) -> dict:
        op = row.get("op")
        if op not in OPS:
            raise ValueError(f"request {row!r}: op must be one of {OPS}")
        scope = Scope(str(row.get("user_id") or ""), str(row.get("agent_id") or ""), str(row.get("run_id") or ""))
        ids = (self.info.version, self.info.embedder_id)
        if op == "add":
            messages = row.get("messages")
            messages = [messages] if isinstance(messages, (str, dict)) else list(messages if messages is not None
                                                                                  else [])
            events = self.policy.add([_message(m) for m in messages], scope, row.get("metadata") or None)
            result: Any = [{"event": e.op, "id": e.memory_id, "memory": e.text, "previous_memory": e.old_text}
                           for e in events]
        elif op == "get_all":
            result = [memory_dict(m, *ids) for m in self.policy.store.get_all(scope)]
        else:
            query = row.get("query")
            if not isinstance(query, str) or not query.strip():
                raise ValueError(f"request {row!r}: {op} needs a non-empty 'query'")
            if op == "search":
                memories = self.policy.search(query, scope)
                top_k = row.get("top_k")
                result = [memory_dict(m, *ids) for m in memories[: int(top_k) if top_k else None]]
            else:
                answer, memories = self.policy.answer(query, scope)
                result = {"answer": answer, "memories": [memory_dict(m, *ids) for m in memories]}
        return {"op": op, "result": result}


mlflow.models.set_model(PolicyModel())
