"""One `dspy.Signature` per LLM decision of graph memory (Mem0g). Each docstring is the instruction.

They follow mem0's graph prompts (mem0/graphs/tools.py and mem0/graphs/utils.py: EXTRACT_RELATIONS_PROMPT,
DELETE_RELATIONS_SYSTEM_PROMPT), shortened; prompt optimisation may rewrite them.
"""

from __future__ import annotations

import dspy
from pydantic import BaseModel


class GraphEntity(BaseModel):
    name: str
    type: str = "THING"  # PERSON, ORG, PLACE, EVENT, ACTIVITY, OBJECT, ...


class GraphRelation(BaseModel):
    source: str
    relation: str
    destination: str
    sources: list[int | str] | None = None  # numbers of the new messages stating it (checked by provenance.cite)


class ExtractEntities(dspy.Signature):
    """Extract the entities of the NEW messages of a conversation that are worth remembering: people, places,
    organisations, events, activities, objects, pets, preferences. The speakers are entities: whenever a speaker
    says "I", "me" or "my", the entity is the speaker's name. Give each entity a short type (PERSON, PLACE, ORG,
    EVENT, ACTIVITY, OBJECT, ...). Return an empty list for small talk."""

    new_messages: list[str] = dspy.InputField(desc="the new messages, as '[timestamp] speaker: text'")
    entities: list[GraphEntity] = dspy.OutputField(desc="entities; [] if none")


class ExtractRelations(dspy.Signature):
    """Extract the relationships stated in the NEW messages between the given entities, as
    (source, relation, destination) triplets. Use the speaker's name for "I", "me" and "my". Write relations as
    short lowercase verbs in snake_case ("lives_in", "works_at", "has_sister", "likes"). For each triplet give in
    `sources` the number(s) of the new message(s) that state it. Only state what the messages say; return an empty
    list when they state no relationship."""

    new_messages: list[str] = dspy.InputField(desc="the new messages, numbered: 'n. [timestamp] speaker: text'")
    entities: list[str] = dspy.InputField(desc="entities found in the messages")
    relations: list[GraphRelation] = dspy.OutputField(
        desc="triplets, each {source, relation, destination, sources: [numbers of the new messages]}; [] if none"
    )


class ResolveGraphConflicts(dspy.Signature):
    """You maintain a knowledge graph about people. Decide which EXISTING relationships are no longer true
    because a NEW relationship contradicts or supersedes them (for example a new home replaces the old one, a
    new job replaces the old job). Do not mark relationships that can hold together (someone can like several
    things). Only use ids listed in existing_relations; return an empty list when nothing is contradicted."""

    existing_relations: list[dict] = dspy.InputField(
        desc="valid relationships: {id, source, relation, destination, valid_from}"
    )
    new_relations: list[str] = dspy.InputField(desc="new relationships, as 'source -- relation -- destination'")
    outdated_ids: list[int] = dspy.OutputField(desc="ids of existing relationships that are no longer true")
