"""The MLflow pyfunc model of a policy bundle, logged with "models from code" (no pickle): MLflow copies this file
into the model and runs it at load time; `load_context` loads the bundle from the model's artifacts into a
`memtune.policies.runtime.memory.Memory` (the runtime Memory API), so the model answers exactly like memtune-serve.

Input of `predict`: a list of request dicts (or a pandas DataFrame with one request per row). Each has an `op`,
and the keyword arguments of the Memory method of that name:

    {"op": "add", "messages": [{"role": "user", "content": "..."}] | "one message", "user_id": "alice",
     "agent_id": "", "run_id": "", "metadata": {...}, "infer": true}          -> events (ADD/UPDATE/DELETE/NOOP)
    {"op": "search", "query": "...", "user_id": "alice", "top_k": 5, "filters": {...}, "threshold": 0.3,
     "include_history": true}                 (true: also memories that no longer hold, marked "valid": false)
    {"op": "get", "memory_id": "...", "user_id": "alice"}
    {"op": "get_all", "user_id": "alice", "limit": 100, "include_history": false}
    {"op": "update", "memory_id": "...", "text": "...", "user_id": "alice"}
    {"op": "delete", "memory_id": "...", "user_id": "alice"}   {"op": "history", "memory_id": "...", "user_id": "alice"}
    {"op": "delete_all", "user_id": "alice"}
    {"op": "answer", "query": "...", "user_id": "alice"}     -> {"answer": ..., "memories": [...]} (the answerer)

Output: one dict per request, {"op": ..., "result": ...}, plain JSON types (memory dicts as Memory returns them);
a search adds "relations": the graph triplets of a Mem0g bundle ([] otherwise), as REST's search does.
Scopes as on the REST server: every op but add needs the caller's scope (at least one of user_id, agent_id,
run_id); get / update / delete / history of a memory outside it raise MemoryNotFound exactly like an unknown id;
a scope without user_id needs "cross_user": true (or model_config {"allow_cross_user": true}).
A bad request raises (ValueError naming the field; MemoryNotFound for an unknown id) before anything is written.
Memories persist in the LanceDB store at model_config["store_uri"] (or $MEMTUNE_STORE_URI); with neither, in a
temporary directory that lives as long as the loaded model. The LM of LLM stages comes from the bundle's lm
group (OPENAI_API_KEY / OPENAI_BASE_URL).
"""

from __future__ import annotations

import os
import tempfile
import weakref

import mlflow
from mlflow.pyfunc import PythonModel

# Absolute imports on purpose: MLflow copies this file into the model and runs it as a script, outside the package.
from memtune.policies.runtime.input import check_cross_user, check_scope
from memtune.policies.runtime.output import memory as memory_dict

SCOPE = ("user_id", "agent_id", "run_id")
READ = (*SCOPE, "cross_user")  # the caller's scope on every op that reaches existing memories
OPS: dict[str, tuple[str, ...]] = {  # op -> the keyword arguments it takes
    "add": ("messages", *SCOPE, "metadata", "infer"),
    "search": ("query", *READ, "top_k", "filters", "threshold", "include_history"),
    "get": ("memory_id", *READ),
    "get_all": (*READ, "limit", "include_history"),
    "update": ("memory_id", "text", "metadata", *READ),
    "delete": ("memory_id", *READ),
    "delete_all": READ,
    "history": ("memory_id", *READ),
    "answer": ("query", *READ),
}


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


class PolicyModel(PythonModel):
    """A policy bundle behind MLflow's pyfunc interface."""

    def load_context(self, context) -> None:
        from memtune.policies.runtime.memory import Memory

        config = context.model_config or {}
        store_uri = config.get("store_uri") or os.environ.get("MEMTUNE_STORE_URI")
        if not store_uri:
            self._tmp = tempfile.TemporaryDirectory(prefix="memtune-pyfunc-")
            store_uri = self._tmp.name
        self.memory = Memory.from_bundle(
            context.artifacts["bundle"],
            store_uri,
            cache_dir=config.get("cache_dir") or None,
            allow_cross_user=bool(config.get("allow_cross_user", False)),
        )
        if getattr(self, "_tmp", None) is not None:
            # close the store (its writer lease and heartbeat) before the temporary directory goes: finalizers made
            # later run first at exit
            weakref.finalize(self, self.memory.close)

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
        if op != "add" and not any(row.get(k) for k in SCOPE):  # the Memory API would look ids up unchecked
            raise ValueError(
                f"request op={op!r}: give the caller's scope, at least one of user_id, agent_id, run_id "
                "(a memory outside it is not found)"
            )
        if op == "answer":
            if not isinstance(row.get("query"), str) or not row["query"].strip():
                raise ValueError("request op='answer' needs a non-empty 'query'")
            scope = check_scope(*(row.get(k, "") for k in SCOPE), write=False)
            check_cross_user(scope, row.get("cross_user", False), self.memory.allow_cross_user, "answer")
            policy = self.memory.policy
            answer, records = policy.answer(row["query"], scope)
            ids = (policy.embedder.id, self.memory.bundle_version)
            return {"op": op, "result": {"answer": answer, "memories": [memory_dict(m, *ids) for m in records]}}
        if op == "search":
            found = self.memory.search_with_relations(**row)
            return {"op": op, "result": found["results"], "relations": found["relations"]}
        return {"op": op, "result": getattr(self.memory, op)(**row)}


mlflow.models.set_model(PolicyModel())
