"""Plain records of graph memory (Mem0g) and the name/time normalisation every graph stage shares.

Kept apart from the stages so that extraction, storage, update and retrieval agree on one spelling of a node name
("the LGBTQ support group" and "LGBTQ Support Group" are one node) and of a relation ("went to" -> "go_to").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

THING = "THING"  # the type of an entity no extractor could type; compatible with every other type


@dataclass(frozen=True)
class Entity:
    """A node candidate: a name, a type (PERSON, ORG, GPE, ... or THING) and the turns it was named in."""

    name: str
    type: str = THING
    provenance: tuple[str, ...] = ()
    timestamp: str = ""


@dataclass(frozen=True)
class Triplet:
    """An edge candidate: source --relation--> destination, said at `timestamp` in the turns `provenance`."""

    source: str
    relation: str
    destination: str
    timestamp: str = ""
    provenance: tuple[str, ...] = ()
    source_type: str = THING
    destination_type: str = THING


_LEADING = re.compile(r"^(?:(?:the|a|an|my|our|your|his|her|their|its|this|that|these|those|some)\s+)+", re.I)
_SPACES = re.compile(r"\s+")
_NON_WORD = re.compile(r"[^0-9a-z]+")


def node_key(name: str) -> str:
    """The matching key of a node name: casefolded, leading determiners/possessives and outer punctuation dropped."""
    name = _SPACES.sub(" ", name).strip().strip(".,!?;:'\"()[]")
    return _LEADING.sub("", name).casefold().strip()


def display_name(name: str) -> str:
    """A node name as stored and shown: whitespace collapsed, leading determiners dropped, case kept."""
    name = _SPACES.sub(" ", name).strip().strip(".,!?;:'\"()[]")
    return _LEADING.sub("", name).strip()


def normalise_relation(text: str) -> str:
    """'Went To' -> 'went_to': lowercase words joined by '_' (callers pass lemmas, so 'go_to')."""
    return _NON_WORD.sub("_", text.casefold()).strip("_")


def triplet_text(source: str, relation: str, destination: str) -> str:
    """The sentence a triplet is embedded and shown as: 'Caroline go to LGBTQ support group'."""
    return f"{source} {relation.replace('_', ' ')} {destination}"


_FORMATS = ("%I:%M %p on %d %B, %Y", "%I:%M %p on %d %b, %Y", "%d %B, %Y", "%d %B %Y", "%B %d, %Y", "%Y-%m-%d")


def parse_time(stamp: str) -> datetime | None:
    """A 'said at' time as a UTC datetime: ISO 8601 or LOCOMO's '1:56 pm on 8 May, 2023'; None if unreadable.

    Compaction by age needs an order on times; an unreadable stamp simply never ages out."""
    stamp = (stamp or "").strip()
    if not stamp:
        return None
    try:
        parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
        for fmt in _FORMATS:
            try:
                parsed = datetime.strptime(stamp, fmt)
                break
            except ValueError:
                continue
    if parsed is None:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
