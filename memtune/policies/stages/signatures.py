"""One `dspy.Signature` per LLM decision of a memory policy. Each docstring is the instruction.

The instructions follow the prompts of mem0 (github.com/mem0ai/mem0, mem0/configs/prompts.py and
evaluation/prompts.py), shortened; prompt optimisation may rewrite them, so nothing else depends on wording.
"""

from __future__ import annotations

from typing import Literal

import dspy
from pydantic import BaseModel, model_validator


class ExtractedFact(BaseModel):
    fact: str
    sources: list[int | str] | None = None  # numbers of the new messages it comes from (checked by provenance.cite)

    @model_validator(mode="before")
    @classmethod
    def _bare_string(cls, value):
        """A bare string (a small model forgetting the object) is a fact without sources, not a parse failure."""
        return {"fact": value} if isinstance(value, str) else value


class ExtractFacts(dspy.Signature):
    """You organise personal memories. From the NEW messages of a conversation, extract the facts worth
    remembering about the speakers: personal details, preferences, plans, events, relationships, opinions,
    activities. Use the summary and the recent messages only as context to resolve who and what is meant.
    Write each fact as one short self-contained sentence that names the person. Turn relative dates
    ("yesterday", "last week") into absolute dates using the message timestamp. For each fact give in `sources`
    the number(s) of the new message(s) that state it. Return an empty list when the new messages hold nothing
    worth remembering (greetings, small talk)."""

    summary: str = dspy.InputField(desc="rolling summary of the conversation so far (may be empty)")
    recent_messages: list[str] = dspy.InputField(desc="the messages just before the new ones, oldest first")
    new_messages: list[str] = dspy.InputField(desc="the new messages, numbered: 'n. [timestamp] speaker: text'")
    facts: list[ExtractedFact] = dspy.OutputField(
        desc="extracted facts, each {fact, sources: [numbers of the new messages it comes from]}; [] if none"
    )


class SummarizeConversation(dspy.Signature):
    """Refresh the rolling summary of a long conversation. Merge the new messages into the previous summary,
    keeping who the speakers are, what happened to them and when, their plans, preferences and relationships.
    Drop small talk. Keep it under 300 words."""

    previous_summary: str = dspy.InputField(desc="summary so far (may be empty)")
    new_messages: list[str] = dspy.InputField(desc="messages since the last refresh, as '[timestamp] speaker: text'")
    summary: str = dspy.OutputField()


class MemoryOperation(BaseModel):
    event: Literal["ADD", "UPDATE", "DELETE", "NOOP"]
    id: int | None = None  # id of an existing memory (UPDATE, DELETE, NOOP); None for ADD
    text: str = ""  # the memory text to store (ADD) or the merged new text (UPDATE)


class DecideMemoryOperations(dspy.Signature):
    """You manage a memory store. Compare each new fact with the existing memories and choose operations:
    ADD a fact that is new information; UPDATE an existing memory (give its id and the merged, more complete
    text) when the fact refines or changes it; DELETE an existing memory (give its id) that the fact
    contradicts; NOOP when the fact is already known. Only use ids listed in existing_memories."""

    existing_memories: list[dict] = dspy.InputField(desc="stored memories most similar to the facts: {id, text}")
    new_facts: list[str] = dspy.InputField()
    operations: list[MemoryOperation] = dspy.OutputField(desc="one or more operations covering every new fact")


class AnswerQuestion(dspy.Signature):
    """Answer the question about the conversation's speakers using only the memories. Memories carry the time
    they were said: resolve relative dates against it, and prefer the most recent memory when memories
    conflict. Answer in a few words (under 6), with no explanation. If the memories do not contain the answer,
    say "Not mentioned"."""

    question: str = dspy.InputField()
    memories: list[dict] = dspy.InputField(
        desc="retrieved memories, most relevant first: {said_at, memory}; graph triplets also carry valid_from and invalid_since"
    )
    answer: str = dspy.OutputField()


# The same instructions; only the memories field is written as lines (the answerer's render=lines | lines_date).
AnswerQuestionLines = AnswerQuestion.with_updated_fields(
    "memories",
    type_=str,
    desc="retrieved memories, most relevant first, one a line: [when it was said] memory; graph triplets end "
    "with (valid from X; invalid since Y)",
)
