"""Ingest + answer + score one policy on a dataset split -> a per-question polars frame and a summary dict."""

from __future__ import annotations

import re
import time
from typing import Any

import polars as pl
from tqdm.auto import tqdm

from ...policies.graph.retrieve import is_graph_record
from ...policies.policy import MemoryPolicy
from ...policies.provenance import provenance_facts
from ...policies.stages.answer import question_type, render_context
from ...policies.types import Scope
from ..data.types import CATEGORY_NAMES, Conversation, Dataset
from .health import is_stale, store_health, turn_statements
from .judge import judge_question
from .metrics import bleu1, context_budget_walk, count_tokens, evidence_recall, f1_set, f1_squad
from .restated import load_timelines, restated_counts

# Token budgets of the RENDERED context (`render_context`, exactly what the answerer reads, counted like
# `context_tokens`): `recall_ctx_<B>` is the evidence recall of the leading retrieved items whose rendered context
# fits in B tokens, so policies compare at equal cost whatever their extractor (see `context_budget_walk`).
BUDGETS = (250, 500, 1000, 2000)
BUDGET_METRICS = tuple(f"recall_ctx_{b}" for b in BUDGETS)
GRAPH_METRICS = ("graph_evidence_recall", "graph_context_tokens")  # only when policy.graph is on/only
METRICS = ("f1", "f1_squad", "bleu1", "evidence_recall", *BUDGET_METRICS, "judge", "abstained")
# columns that may start with nulls (no evidence, not judged, a failed answer's prediction): typed up front
FRAME_SCHEMA = {name: pl.Float64 for name in METRICS if name != "abstained"} | {"prediction": pl.String}
_ABSTAIN = re.compile(
    r"\b(not mentioned|no information|not (?:specified|stated|known|provided)|unknown|"
    r"cannot (?:be )?(?:determined|answer)|don't know|do not know|no mention)\b",
    re.IGNORECASE,
)


def abstained(prediction: str | None) -> bool:
    """The answer declines to answer (the right move on adversarial, category-5, questions). A failed answer
    (None: the LM failed after its retries) is not an abstention: it is scored 0 and counted apart."""
    if prediction is None:
        return False
    return not prediction.strip() or bool(_ABSTAIN.search(prediction))


def conversation_scope(conversation: Conversation) -> Scope:
    return Scope(user_id=conversation.sample_id)


def ingest(
    policy: MemoryPolicy, conversation: Conversation, pair_size: int = 2, progress: bool = True, after_session=None
) -> tuple[int, int]:
    """Feed a conversation to the policy one message pair at a time (pairs never span two sessions).
    Returns (turns, message pairs) ingested. `after_session()` is called after each session (graph growth)."""
    scope = conversation_scope(conversation)
    if getattr(policy.extractor, "oracle", False):  # the observation replay needs the annotations
        oracle: Any = policy.extractor  # an oracle stage (extract.ObservationExtractor), not an Extractor's member
        oracle.observations = observations_by_turn(conversation)
    turns = conversation.turns()
    bar = tqdm(
        total=len(turns), desc=f"ingest {conversation.sample_id}", unit="turn", disable=not progress, leave=False
    )
    pairs = 0
    for session in conversation.sessions:
        messages = [t.as_message() for t in session.turns]
        for start in range(0, len(messages), pair_size):
            policy.add(messages[start : start + pair_size], scope)
            bar.update(len(messages[start : start + pair_size]))
            pairs += 1
        if after_session is not None:
            after_session()
    bar.close()
    return len(turns), pairs


def observations_by_turn(conversation: Conversation) -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    """LOCOMO observation facts keyed by the last turn they cite (so they are replayed once that turn is seen)."""
    order = {t.dia_id: i for i, t in enumerate(conversation.turns())}
    keyed: dict[str, list] = {}
    for facts in conversation.observations.values():
        for text, ids in facts:
            known = [i for i in ids if i in order]
            if known:
                keyed.setdefault(max(known, key=order.__getitem__), []).append((text, tuple(known)))
    return keyed


def answer_questions(policy: MemoryPolicy, conversation: Conversation, judge=None, progress: bool = True) -> list[dict]:
    scope = conversation_scope(conversation)
    order, statements = turn_statements([(t.dia_id, t.speaker, t.text) for t in conversation.turns()])
    stale: dict[str, bool] = {}  # memory id -> superseded later in the conversation (health.is_stale)
    rows = []
    for q in tqdm(
        conversation.questions, desc=f"answer {conversation.sample_id}", unit="q", disable=not progress, leave=False
    ):
        t0 = time.perf_counter()
        prediction, memories = policy.answer(q.question, scope)
        seconds = time.perf_counter() - t0
        failed = prediction is None  # the LLM answerer failed after its retries: scored 0, never an abstention
        provenance = [m.provenance for m in memories]
        context_tokens, kept = context_budget_walk(memories, render_context, BUDGETS)
        graph = [m for m in memories if is_graph_record(m)]
        vector = [m for m in memories if not is_graph_record(m)]
        for m in vector:
            if m.id not in stale:
                stale[m.id] = is_stale(m.text, m.provenance, order, statements)
        gold = q.answer
        rows.append(
            {
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
                "n_stale": sum(stale[m.id] for m in vector),
                "first_hit": evidence_recall(q.evidence, provenance[:1]) == 1.0 if q.evidence else None,
                "hit_at_5": bool(evidence_recall(q.evidence, provenance[:5])) if q.evidence else None,
                "context_tokens": context_tokens,  # tokens of render_context(memories), from the same walk
                "seconds": seconds,
                # the graph path alone (Mem0g): its triplets' share of the context and its own evidence recall
                **(
                    {
                        "graph_context_tokens": count_tokens(render_context(graph)) if graph else 0,
                        "graph_evidence_recall": evidence_recall(q.evidence, [m.provenance for m in graph]),
                        "n_graph": len(graph),
                    }
                    if policy.graph is not None
                    else {}
                ),
            }
        )
    return rows


def ingest_all(policy: MemoryPolicy, dataset: Dataset, progress: bool = True) -> dict:
    """Ingest every conversation; returns what ingestion did and cost (saved with a cached store)."""
    turns = pairs = 0
    growth: list[dict] = []  # graph size after each session (store size / invalid edges over sessions)
    health: list[dict] = []  # per conversation: duplicates, contradictions, memories after each session (health.py)
    sizes: list[int] = []

    def after_session() -> None:
        sizes.append(policy.store.count(scope))
        if policy.graph is not None:
            growth.append({"sessions": len(growth) + 1, **policy.graph.snapshot()})

    t0 = time.perf_counter()
    timelines = load_timelines(dataset.path, dataset.sha256) or {}  # a generated set's labels (restated.py)
    for conversation in tqdm(dataset.conversations, desc="ingest", unit="conv", disable=not progress):
        scope, sizes = conversation_scope(conversation), []
        n_turns, n_pairs = ingest(policy, conversation, progress=progress, after_session=after_session)
        health.append(store_health(policy.store, scope, n_turns, sizes))
        if conversation.sample_id in timelines:
            health[-1]["restated"] = restated_counts(policy.store.get_all(scope), timelines[conversation.sample_id])
        turns, pairs = turns + n_turns, pairs + n_pairs
    seconds = time.perf_counter() - t0
    graph = {"graph": policy.graph.stats(), "graph_growth": growth} if policy.graph is not None else {}
    phases = policy.meter.phases
    return {
        "turns": turns,
        "message_pairs": pairs,
        "seconds": round(seconds, 3),
        "turns_per_s": round(turns / seconds, 2) if seconds else None,
        "memories_stored": policy.store.count(include_invalid=True),  # rows stored: superseded ones too
        "ops": dict(policy.op_counts),
        # LLM decisions naming a memory id that was never shown (hallucinated): caught, never applied
        "rejected_ops": len(getattr(policy.decider, "rejected", [])),
        # "How many API requests does it take to create/update memories?"
        "lm_requests_per_message_pair": {
            p: round(phases[p].calls / pairs, 3) if pairs else None for p in ("extract", "summarize", "decide")
        },
        "cost": policy.meter.as_dict(),
        # turns cited per stored memory, and LLM facts / decisions that fell back to citing the whole pair
        **provenance_facts(policy),
        "health": health,
        **graph,
    }


def answer_all(policy: MemoryPolicy, dataset: Dataset, judge=None, progress: bool = True) -> pl.DataFrame:
    """Answer and score every question of the split from the (already ingested) store."""
    rows = []
    for conversation in tqdm(dataset.conversations, desc="answer", unit="conv", disable=not progress):
        rows += answer_questions(policy, conversation, judge=judge, progress=progress)
    return pl.DataFrame(rows, schema_overrides=FRAME_SCHEMA)


def failure_aggs() -> list[pl.Expr]:
    """LM failures, counted apart: `answer_failures` (scored 0, never abstentions) and J's denominator.

    `judge` (a mean in METRICS) is over `judge_n` questions, every question J is defined for: a judge failure
    (`judge_failures`) or a failed answer counts WRONG there. `n_judged` questions got a label from the judge,
    and `judge_judged_only` is J over those alone (what J would be if failures were dropped)."""
    labelled = pl.col("judge").is_not_null() & ~pl.col("judge_failed") & ~pl.col("answer_failed")
    return [
        pl.col("answer_failed").sum().alias("answer_failures"),
        pl.col("judge").is_not_null().sum().alias("judge_n"),
        labelled.sum().alias("n_judged"),
        pl.col("judge_failed").sum().alias("judge_failures"),
        pl.col("judge").filter(labelled).mean().alias("judge_judged_only"),
    ]


def score_table(frame: pl.DataFrame, overall_categories=(1, 2, 3, 4)) -> pl.DataFrame:
    """Per-category means (evidence recall over questions that have evidence) plus an overall row, with the
    failure counts of `failure_aggs`."""
    aggs = (
        [pl.len().alias("n")]
        + [pl.col(m).mean().alias(m) for m in METRICS]
        + [
            pl.col("evidence_recall").is_not_null().sum().alias("n_with_evidence"),
            pl.col("context_tokens").mean().alias("context_tokens"),
        ]
        + failure_aggs()
        + [pl.col(m).cast(pl.Float64).mean().alias(m) for m in GRAPH_METRICS if m in frame.columns]
    )
    per_cat = (
        frame.group_by("category", "category_name")
        .agg(aggs)
        .sort("category")
        .with_columns(pl.col("category").cast(pl.String))
    )
    overall = (
        frame.filter(pl.col("category").is_in(list(overall_categories)))
        .select(aggs)
        .with_columns(category=pl.lit("overall"), category_name=pl.lit("+".join(map(str, overall_categories))))
    )
    return pl.concat([per_cat, overall.select(per_cat.columns)])


def summary_dict(table: pl.DataFrame) -> dict:
    out = {}
    for row in table.iter_rows(named=True):
        key = "overall" if row["category"] == "overall" else f"{row['category']} {CATEGORY_NAMES[int(row['category'])]}"
        out[key] = {
            k: (round(v, 4) if isinstance(v, float) else v)
            for k, v in row.items()
            if k not in ("category", "category_name")
        }
    return out
