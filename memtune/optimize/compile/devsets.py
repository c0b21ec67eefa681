"""Train and report sets for compiling one LLM stage: `dspy.Example`s with the stage's forward() inputs (plain data,
docs/design.md "LLM stages are DSPy programs") plus the labels its metric reads.

extractor  one example per message pair (pairs never span two sessions, as ingestion feeds them): new_messages,
           recent_messages (the 20 messages before the pair, across sessions; the stage shows its last m), summary ""
           (the stage is scored on its own, without the summarizer); label `silver`: LOCOMO's `observation` facts
           that cite the pair's turns (keyed by the last turn they cite, as the observation oracle replays them).
decider    one example per labelled fact of data/updates (updates.labels.json): existing_memories = the store a
           correct decider would hold just before it (one memory per (person, slot): the canonical observation text
           of the current value), shown with ids 0..n-1 in a seeded random order; new_facts = [the fact's canonical
           text]; labels `expected_op` (ADD / UPDATE / NOOP), `expected_target` (the shown id of the memory an UPDATE
           must name, or a NOOP restates), `value` (the new value, which an ADD / UPDATE text must keep).
answerer   one example per question of categories 1-4 with evidence: memories = the gold evidence turns as the
           answerer sees memories ({said_at, memory: "speaker: text"}), in conversation order; label `answer`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

import dspy

from ...policies.stages.extract import render
from ..data.types import Conversation
from ..evaluation.evaluate import observations_by_turn

EXTRACT_INPUTS = ("new_messages", "recent_messages", "summary")
DECIDE_INPUTS = ("existing_memories", "new_facts")
ANSWER_INPUTS = ("question", "memories")
RECENT_KEPT = 20  # the largest m of conf/search_space/llm.yaml
PAIR_SIZE = 2  # as optimize/evaluation/evaluate.ingest


def sample(examples: list[dspy.Example], n: int | None, seed: int) -> list[dspy.Example]:
    """A seeded random sample of n examples (all of them, shuffled, when n is None or larger)."""
    out = list(examples)
    random.Random(seed).shuffle(out)
    return out if n is None else out[: int(n)]


def extraction_examples(conversations: Iterable[Conversation]) -> list[dspy.Example]:
    out = []
    for conversation in conversations:
        silver = observations_by_turn(conversation)
        recent: list[str] = []
        for session in conversation.sessions:
            messages = [t.as_message() for t in session.turns]
            for start in range(0, len(messages), PAIR_SIZE):
                pair = messages[start : start + PAIR_SIZE]
                facts = [text for m in pair for text, _ in silver.get(m.dia_id, [])]
                out.append(
                    dspy.Example(
                        new_messages=[render(m) for m in pair],
                        recent_messages=list(recent[-RECENT_KEPT:]),
                        summary="",
                        silver=facts,
                        conversation=conversation.sample_id,
                        dia_ids=[m.dia_id for m in pair],
                    ).with_inputs(*EXTRACT_INPUTS)
                )
                recent += [render(m) for m in pair]
    return out


def decision_examples(
    conversations: Sequence[Conversation], labels_path: str | Path, seed: int = 0
) -> list[dspy.Example]:
    """Examples for the labelled facts of `conversations` (their ids select the rows of the label file)."""
    labels = json.loads(Path(labels_path).read_text())
    by_id = {c.sample_id: c for c in conversations}
    out = []
    state: dict[str, dict[tuple[str, str], str]] = {cid: {} for cid in by_id}
    for index, row in enumerate(labels["decisions"]):
        cid = row["conversation"]
        if cid not in by_id:
            continue
        fact = _canonical(by_id[cid], row)
        memories = state[cid]
        key = (row["subject"], row["slot"])
        shown = list(memories.items())
        random.Random(f"{seed}:{cid}:{index}").shuffle(shown)
        ids = {k: i for i, (k, _) in enumerate(shown)}
        if row["op"] in ("UPDATE", "NOOP") and key not in ids:
            raise ValueError(f"{labels_path}: {cid} {row['dia_id']} {row['op']}s {key}, which holds no value yet")
        out.append(
            dspy.Example(
                existing_memories=[{"id": ids[k], "text": text} for k, text in shown],
                new_facts=[fact],
                expected_op=row["op"],
                expected_target=ids.get(key) if row["op"] != "ADD" else None,
                value=row["value"],
                conversation=cid,
                dia_id=row["dia_id"],
            ).with_inputs(*DECIDE_INPUTS)
        )
        if row["op"] in ("ADD", "UPDATE"):
            memories[key] = fact
    return out


def _canonical(conversation: Conversation, row: dict) -> str:
    """The observation text of a labelled fact: the one citing its turn that names its value."""
    found = [
        text
        for facts in conversation.observations.values()
        for text, ids in facts
        if row["dia_id"] in ids and str(row["value"]).lower() in text.lower()
    ]
    if len(found) != 1:
        raise ValueError(
            f"{conversation.sample_id} {row['dia_id']}: {len(found)} observation facts name {row['value']!r} "
            "(expected 1): the label file and the conversations do not belong together (memtune-gen --check)"
        )
    return found[0]


def answer_examples(conversations: Iterable[Conversation], categories: Sequence[int] = (1, 2, 3, 4)) -> list:
    out = []
    for conversation in conversations:
        turns = {t.dia_id: t for t in conversation.turns()}
        order = {d: i for i, d in enumerate(turns)}
        for q in conversation.questions:
            evidence = sorted((d for d in q.evidence if d in turns), key=order.__getitem__)
            if q.category not in categories or not evidence or not q.answer:
                continue
            memories = [
                {"said_at": turns[d].timestamp, "memory": f"{turns[d].speaker}: {turns[d].full_text}"} for d in evidence
            ]
            out.append(
                dspy.Example(
                    question=q.question, memories=memories, answer=q.answer, qid=q.qid, category=q.category
                ).with_inputs(*ANSWER_INPUTS)
            )
    return out
