"""Questions answered and judged in parallel (`lm.max_concurrency` > 1): question_row.question_row for every question,
on a TaskPool, rows in question order (the same rows as the sequential loop: tests/test_cost_control.py)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, wait

from tqdm.auto import tqdm

from ...policies.policy import MemoryPolicy
from ...policies.taskpool import TaskPool
from ..data.types import Conversation
from .evaluate import conversation_scope
from .question_row import Staleness, question_row


def answer_parallel(
    policy: MemoryPolicy,
    conversations: Sequence[Conversation],
    judge,
    max_concurrency: int,
    progress: bool = True,
) -> list[dict]:
    """question_row.question_row for every question of `conversations`, `max_concurrency` at a time; rows in order."""
    stale = {c.sample_id: Staleness(c) for c in conversations}  # one memo per conversation, shared by its questions
    items = [(conversation_scope(c), q, stale[c.sample_id]) for c in conversations for q in c.questions]
    bar = tqdm(total=len(items), desc="answer", unit="q", disable=not progress, leave=False)
    with TaskPool(max_concurrency, name="memtune-answer") as pool:
        futures = [
            pool.submit((1, k), functools.partial(question_row, policy, scope, q, judge, memo))
            for k, (scope, q, memo) in enumerate(items)
        ]
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                bar.update(len(done))
                for future in done:
                    future.result()  # the first error stops the run (queued questions are dropped)
        finally:
            bar.close()
        return [future.result() for future in futures]
