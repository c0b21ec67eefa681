"""MemoryPolicy: the Mem0 two-phase pipeline wired from swappable stages; the runtime API.

add(messages, scope)      extraction (pair + summary + last m messages) -> facts -> s similar memories per fact
                          -> decider -> store writes; returns what changed (ADD/UPDATE/DELETE/NOOP events)
search(query, scope)      the retriever's top-k memories (+ graph triplets when policy.graph is on; only them
                          when it is "only")
answer(question, scope)   search + answerer

The optional `graph` stage (policies/graph/memory.py, Mem0g) is fed every message pair after the vector path.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import dspy

from .apply import to_changes
from .embed.base import Embedder
from .lm import CostMeter
from .metering import metering
from .stages.protocols import Answerer, Decider, Extractor, Retriever, Summarizer
from .store.sql import in_scope
from .store.store import MemoryStore
from .types import Decision, Event, Fact, MemoryRecord, Message, Scope

RECENT_KEPT = 50  # messages kept per scope for extraction context; the extractor reads its last m of them


@dataclass
class _ScopeState:
    recent: list[Message] = field(default_factory=list)  # last messages, for extraction context
    pending: list[Message] = field(default_factory=list)  # messages not yet folded into the summary
    summary: str = ""

    def push(self, messages: list[Message], summarizer: Summarizer) -> list[Message] | None:
        """Take in a message pair after its extraction: keep it as recent context and as pending for the summary;
        returns the pending messages to fold into the summary now (and clears them), or None."""
        self.recent = (self.recent + list(messages))[-RECENT_KEPT:]
        self.pending += messages
        if summarizer.enabled and len(self.pending) >= summarizer.knobs.window:
            due, self.pending = self.pending, []
            return due
        return None


class MemoryPolicy:
    def __init__(
        self,
        extractor: Extractor,
        summarizer: Summarizer,
        decider: Decider,
        retriever: Retriever,
        answerer: Answerer,
        embedder: Embedder,
        store: MemoryStore,
        lm: dspy.LM | None = None,
        meter: CostMeter | None = None,
        graph=None,
    ):
        self.extractor, self.summarizer, self.decider = extractor, summarizer, decider
        self.retriever, self.answerer = retriever, answerer
        self.embedder, self.store, self.lm = embedder, store, lm
        self.graph = graph  # GraphMemory (policy.graph on/only) or None (off: Mem0)
        self.meter = meter or CostMeter()
        self.op_counts = {"ADD": 0, "UPDATE": 0, "DELETE": 0, "NOOP": 0}  # as decided
        self.invalidated = 0  # memories soft-invalidated (decider invalidation=soft): kept, marked, not returned
        self._ops_lock = threading.Lock()  # scopes may ingest in parallel threads (policies/pipeline.py)
        self._state: dict[Scope, _ScopeState] = {}
        missing = [name for name, stage in self.stages().items() if isinstance(stage, dspy.Module)]
        missing += list(graph.llm_stages()) if graph is not None else []
        if isinstance(getattr(retriever, "scorer", None), dspy.Module):  # an LLM reranker (stages/rerank_llm.py)
            missing.append("retriever.scorer")
        if missing and lm is None:
            raise ValueError(
                f"LLM stage(s) {missing} need an LM: run with lm=openai (reads OPENAI_API_KEY / OPENAI_BASE_URL), "
                "or pick LLM-free variants, e.g. policy=mem0_offline."
            )

    def stages(self) -> dict:
        return {
            "extractor": self.extractor,
            "summarizer": self.summarizer,
            "decider": self.decider,
            "retriever": self.retriever,
            "answerer": self.answerer,
        }

    @contextmanager
    def _running(self) -> Iterator[None]:
        """The stage calls of this block run with the policy's LM and are metered into `self.meter`."""
        with metering(self.meter):
            if self.lm is None:
                yield
            else:
                with dspy.context(lm=self.lm):
                    yield

    # ---- ingest -------------------------------------------------------------------------------------------
    def add(self, messages: list[Message], scope: Scope, metadata: dict | None = None) -> list[Event]:
        """Process one new message pair (or any short list of messages) for `scope`."""
        if not messages:
            raise ValueError("add() got no messages: pass at least one Message")
        state = self._state.setdefault(scope, _ScopeState())
        with self._running():
            if self.graph is not None:
                self.graph.add(list(messages), scope)
            facts = self.extractor.extract(messages, state.recent, state.summary)
            due = state.push(messages, self.summarizer)
            if due is not None:
                state.summary = self.summarizer.refresh(state.summary, due)
        return self.commit(facts, scope, metadata)

    def commit(self, facts: list[Fact], scope: Scope, metadata: dict | None = None, vectors=None) -> list[Event]:
        """The half of add() that reads and writes the store: embed the facts (unless `vectors` holds their
        embeddings), fetch the s most similar memories of each, decide, apply. Within a scope these must run in
        message order; extraction and embedding need not (policies/pipeline.py runs them ahead of the commits)."""
        if not facts:
            return []
        with self._running():
            vectors = self._embed([f.text for f in facts]) if vectors is None else vectors
            with self.meter.timed("search_similar"):
                similar = self.store.search_many(vectors, scope, self.decider.knobs.similar_k)
            decisions = self.decider.decide(facts, similar)
        return self._apply(decisions, dict(zip((f.text for f in facts), vectors)), scope, metadata)

    def _apply(self, decisions: list[Decision], known: dict, scope: Scope, metadata: dict | None) -> list[Event]:
        texts = [d.text for d in decisions if d.op in ("ADD", "UPDATE") and d.text not in known]
        known.update(zip(texts, self._embed(texts)) if texts else [])
        events = []
        with self._ops_lock:
            for d in decisions:
                self.op_counts[d.op] += 1
        for d in decisions:
            if d.op == "NOOP" and d.target is None:
                events.append(Event("NOOP", None, d.text))
        soft = getattr(self.decider.knobs, "invalidation", "hard") == "soft"  # decide.py DecisionKnobs
        changes = to_changes(decisions, known, scope, metadata, soft)
        with self.meter.timed("store_write"):
            results = self.store.apply(changes) if changes else []
        for c, (op, memory_id, old) in zip(changes, results):
            events.append(Event(op, memory_id, c.text if op not in ("DELETE", "INVALIDATE") else "", old))
            for gone in c.supersedes:  # soft: the memories the new one replaced, kept and marked invalid
                events.append(Event("INVALIDATE", gone, "", getattr(self.store.get(gone), "text", ""), memory_id))
        with self._ops_lock:
            self.invalidated += sum(e.op == "INVALIDATE" for e in events)
        return events

    def reset_state(self, scope: Scope | None = None) -> None:
        """Forget the rolling summary and recent messages of every scope inside `scope` (empty fields are
        wildcards; None: of all)."""
        if scope is None:
            self._state.clear()
            return
        for held in [h for h in self._state if in_scope(asdict(h), scope)]:
            del self._state[held]

    def summary(self, scope: Scope) -> str:
        return self._state.get(scope, _ScopeState()).summary

    def scope_state(self, scope: Scope) -> _ScopeState:
        """The rolling context held for exactly `scope` (created empty): runtime/scope_state.py loads it from the
        store before an add and saves it after."""
        return self._state.setdefault(scope, _ScopeState())

    def drop_scope_state(self, scope: Scope) -> None:
        """Forget the in-process context of exactly `scope` (no wildcards; its stored copy stays)."""
        self._state.pop(scope, None)

    # ---- read ---------------------------------------------------------------------------------------------
    def search(
        self, query: str, scope: Scope, *, vector=None, retriever: Retriever | None = None, prefetched=None
    ) -> list[MemoryRecord]:
        """The retriever's memories for `query` (and the graph's triplets under Mem0g). `vector`: the query already
        embedded; `retriever`: a stand-in for this call (the runtime API's per-call top_k / threshold);
        `prefetched`: start_keyword()'s keyword search for this query, started before the caller embedded it."""
        retriever = retriever or self.retriever
        if vector is None and prefetched is None:  # hybrid: keyword search while the query is embedded
            prefetched = self.start_keyword(query, scope, retriever)
        vector = self._embed([query])[0] if vector is None else vector
        with self._running():
            if self.graph is not None and self.graph.mode == "only":
                return self.graph.search(query, vector, scope)
            # an LLM reranker inside the retriever runs with the policy's LM (set by _running)
            if prefetched is None:
                memories = retriever.retrieve(query, vector, self.store, scope)
            else:  # only a retriever with start_keyword() made it, and takes it
                memories = retriever.retrieve_prefetched(query, vector, self.store, scope, prefetched)  # type: ignore[attr-defined]
            if self.graph is not None:
                memories = self.graph.merge(memories, self.graph.search(query, vector, scope))
        return memories

    def start_keyword(self, query: str, scope: Scope, retriever: Retriever | None = None):
        """Hybrid retrieval: the store's keyword search for `query`, started now on the store's keyword threads, so
        it runs while the query is embedded; pass it to search() as `prefetched` (the hits are the same: the
        retriever takes them only for the same query, scope and knobs, and reads the dense list from the same
        store version). None when there is nothing to start (a retriever without keyword search, graph only)."""
        start = getattr(retriever or self.retriever, "start_keyword", None)
        if start is None or (self.graph is not None and self.graph.mode == "only"):
            return None
        with metering(self.meter):  # its time lands in this policy's meter as keyword_search
            return start(query, self.store, scope)

    def answer(self, question: str, scope: Scope) -> tuple[str | None, list[MemoryRecord]]:
        """(answer, the memories it was given); the answer is None when an LLM answerer failed after retries."""
        memories = self.search(question, scope)
        with self._running():
            return self.answerer.answer(question, memories), memories

    def _embed(self, texts: list[str]):
        with self.meter.timed("embed"):
            return self.embedder.embed(texts)
