"""One question's row of questions.parquet: answer (and judge) it from the store and score it. The sequential loop
(evaluate.answer_questions) and the parallel one (parallel_answers.py) both call question_row, so their rows agree."""

from __future__ import annotations

import threading
import time

from ...policies.graph.retrieve import is_graph_record
from ...policies.policy import MemoryPolicy
from ...policies.stages.answer import question_type
from ...policies.stages.render import context_renderer
from ...policies.types import MemoryRecord, Scope
from ..data.types import Conversation
from .evaluate import BUDGETS, abstained
from .health import is_stale, turn_statements
from .judge import judge_question
from .metrics import bleu1, context_budget_walk, count_tokens, evidence_recall, f1_set, f1_squad


class Staleness:
    """Per conversation: is a memory superseded later in the conversation (health.is_stale)? Memoised by memory id;
    a pure function of the memory and the conversation, so the questions answered in parallel share it."""

    def __init__(self, conversation: Conversation):
        self.order, self.statements = turn_statements([(t.dia_id, t.speaker, t.text) for t in conversation.turns()])
        self._seen: dict[str, bool] = {}
        self._lock = threading.Lock()

    def __call__(self, memory: MemoryRecord) -> bool:
        with self._lock:
            if memory.id not in self._seen:
                self._seen[memory.id] = is_stale(memory.text, memory.provenance, self.order, self.statements)
            return self._seen[memory.id]


def question_row(policy: MemoryPolicy, scope: Scope, q, judge, stale: Staleness) -> dict:
    """Answer (and judge) one question from the store and score it: its row of questions.parquet."""
    t0 = time.perf_counter()
    prediction, memories = policy.answer(q.question, scope)
    seconds = time.perf_counter() - t0
    failed = prediction is None  # the LLM answerer failed after its retries: scored 0, never an abstention
    provenance = [m.provenance for m in memories]
    render = context_renderer(policy.answerer)  # the answerer's render style: what context_tokens and budgets count
    context_tokens, kept = context_budget_walk(memories, render, BUDGETS)
    graph = [m for m in memories if is_graph_record(m)]
    vector = [m for m in memories if not is_graph_record(m)]
    gold = q.answer
    return {
        "qid": q.qid,
        "conversation_id": q.conversation_id,
        "category": q.category,
        "category_name": q.category_name,
        "question": q.question,
        "question_type": question_type(q.question),  # when/where/who/quantity/yes_no/...: group by it
        "answer": gold,
        "adversarial_answer": q.adversarial_answer,
        "prediction": prediction,
        "answer_failed": failed,
        "f1": 0.0 if failed else f1_set(prediction, gold),
        "f1_squad": 0.0 if failed else f1_squad(prediction, gold),
        "bleu1": 0.0 if failed else bleu1(prediction, gold),
        # judge (None where J is not defined: no judge LM, category 5) and judge_failed; see judge_question
        **judge_question(judge, q.qid, q.question, gold, prediction, q.category),
        "abstained": abstained(prediction),
        "evidence": list(q.evidence),
        "evidence_recall": evidence_recall(q.evidence, provenance),
        # within the retrieved top-k only: a budget larger than the top-k's rendered context is not
        # filled further
        **{f"recall_ctx_{b}": evidence_recall(q.evidence, provenance[: kept[b]]) for b in BUDGETS},
        "retrieved_ids": [m.id for m in memories],
        "retrieved_provenance": [list(m.provenance) for m in memories],
        "retrieved_scores": [float(m.score or 0.0) for m in memories],
        "n_retrieved": len(memories),
        # health (health.py): vector memories retrieved, those the conversation superseded later; currency:
        # the first retrieved memory cites the evidence, one of the first five does
        "n_memories": len(vector),
        "n_stale": sum(stale(m) for m in vector),
        "first_hit": evidence_recall(q.evidence, provenance[:1]) == 1.0 if q.evidence else None,
        "hit_at_5": bool(evidence_recall(q.evidence, provenance[:5])) if q.evidence else None,
        "context_tokens": context_tokens,  # tokens of render(memories), from the same walk
        "seconds": seconds,
        # the graph path alone (Mem0g): its triplets' share of the context and its own evidence recall
        **(
            {
                "graph_context_tokens": count_tokens(render(graph)) if graph else 0,
                "graph_evidence_recall": evidence_recall(q.evidence, [m.provenance for m in graph]),
                "n_graph": len(graph),
            }
            if policy.graph is not None
            else {}
        ),
    }
