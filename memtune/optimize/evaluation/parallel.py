"""Parallel LM calls in an evaluation (`lm.max_concurrency` > 1): conversations ingest at once, each one's
extractions running ahead of its decisions (policies/pipeline.py), and questions are answered and judged at once.
The rows, the store and the meters' calls and tokens are those of the sequential loops in evaluate.py
(tests/test_concurrency.py); only wall time changes.

Conversations still ingest one at a time (each with its extractions ahead) when the policy has graph memory (the
graph's per-session growth snapshots cover every scope) or the observation oracle (it is loaded with one
conversation's annotations at a time).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from omegaconf import DictConfig
from tqdm.auto import tqdm

from ...policies.pipeline import ScopeIngest, ingest_scopes
from ...policies.policy import MemoryPolicy
from ...policies.taskpool import TaskPool
from ...policies.types import Message, Scope
from ..data.types import Conversation

# No import of evaluate.py here: this module is part of what ingestion runs (the ingestion cache hashes its source,
# optimize/evaluation/code_deps.py), and evaluate.py also holds the metrics, which must not re-key ingestion.


def lm_concurrency(cfg: DictConfig) -> int:
    """LM calls in flight during ingestion: `lm.max_concurrency` (1 without an LM)."""
    return _concurrency(cfg.get("lm"), "lm")


def answer_concurrency(cfg: DictConfig) -> int:
    """Questions answered and judged at once: the policy LM's max_concurrency, or the judge LM's when the policy has
    no LM (an LLM-free answerer with an LLM judge); 1 when neither is configured."""
    if cfg.get("lm"):
        return lm_concurrency(cfg)
    judge = cfg.get("judge")
    return _concurrency(judge.get("lm") if judge else None, "judge.lm")


def _concurrency(node, where: str) -> int:
    if not node:
        return 1
    value = node.get("max_concurrency", 1)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{where}.max_concurrency must be an integer >= 1 (1 = one LM call at a time), got {value!r}")
    return value


def message_batches(conversation: Conversation, pair_size: int = 2) -> tuple[list[list[Message]], set[int]]:
    """The message pairs evaluate.ingest feeds to the policy (never spanning two sessions), and the indices of the
    last pair of each session."""
    batches: list[list[Message]] = []
    ends: set[int] = set()
    for session in conversation.sessions:
        messages = [t.as_message() for t in session.turns]
        batches += [messages[start : start + pair_size] for start in range(0, len(messages), pair_size)]
        if batches:
            ends.add(len(batches) - 1)
    return batches, ends


def ingest_parallel(
    policy: MemoryPolicy,
    conversations: Sequence[Conversation],
    max_concurrency: int,
    scope_of: Callable[[Conversation], Scope],
    observations_of: Callable[[Conversation], dict],
    progress: bool = True,
    after_session: Callable[[Conversation], None] | None = None,
    pool: TaskPool | None = None,
) -> tuple[int, int]:
    """Ingest `conversations` with up to `max_concurrency` LM calls in flight (or on `pool`); returns (turns, pairs).
    `scope_of` / `observations_of`: evaluate.conversation_scope / observations_by_turn (passed in, see above).
    `after_session(conversation)` runs after each session's last commit, in that conversation's order."""
    oracle = getattr(policy.extractor, "oracle", False)
    together = policy.graph is None and not oracle
    groups = [list(conversations)] if together else [[c] for c in conversations]
    planned = [(c, *message_batches(c)) for c in conversations]
    total = sum(len(c.turns()) for c in conversations)
    bar = tqdm(total=total, desc="ingest", unit="turn", disable=not progress)
    own = pool is None
    pool = pool if pool is not None else TaskPool(max_concurrency)
    try:
        by_id = {c.sample_id: (batches, ends) for c, batches, ends in planned}
        for group in groups:
            jobs = []
            for conversation in group:
                if oracle:  # the observation replay needs this conversation's annotations (one at a time)
                    policy.extractor.observations = observations_of(conversation)  # type: ignore[attr-defined]
                batches, ends = by_id[conversation.sample_id]
                jobs.append(
                    ScopeIngest(
                        policy,
                        batches,
                        scope_of(conversation),
                        on_commit=_progress(bar, batches, ends, after_session, conversation),
                    )
                )
            ingest_scopes(jobs, pool)
    finally:
        bar.close()
        if own:
            pool.close(cancel=True)
    return total, sum(len(batches) for _, batches, _ in planned)


def _progress(
    bar,
    batches: list[list[Message]],
    ends: set[int],
    after_session: Callable[[Conversation], None] | None,
    conversation: Conversation,
):
    def on_commit(i: int, events) -> None:
        bar.update(len(batches[i]))
        if after_session is not None and i in ends:
            after_session(conversation)

    return on_commit
