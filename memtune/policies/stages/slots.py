"""Slots: which single-valued attribute of which person a fact states, and its value. No LM, no embedder.

    "Alice: I live in Porto now"           -> Slot(subject="alice", attribute="home", value={"porto"})
    "Alice: Porto is my home these days"   -> Slot(subject="alice", attribute="home", value={"porto"})
    "Alice: My brother lives in Rome"      -> Slot(subject="alice's brother", attribute="home", value={"rome"})
    "Bob: I stopped being vegetarian"      -> Slot(subject="bob", attribute="diet", value={"vegetarian"}, negated)
    "Alice: I love hiking"                 -> None (no single-valued attribute: never superseded)

How a slot is read, clause by clause (the text is cut at sentence ends, ';', ':' and "and" / "but"; the first
clause stating a value that holds wins, else the first clause with an attribute: "I left Lisbon and moved to Porto"
is Porto):

* subject: the speaker, from the "<speaker>: " prefix the heuristic extractor writes (or the speaker given), for a
  first-person clause or one naming nobody; "<speaker>'s <kin>" when the attribute follows "my sister", "my dad",
  ... (the name, when one follows: "my sister Dana" is "dana"); a capitalised name before the predicate in a
  clause with no first-person word ("Bob moved to Rome", "Dana's employer is ...");
  no slot for a second-person clause ("you moved to ...": who "you" is depends on who is listening).
* attribute: the first predicate of the lexicon (slot_lexicon.ATTRIBUTES) found in the clause: a normalised
  predicate such as live in / move to -> home, work at / as -> job, vegetarian / eat meat -> diet.
* value: the words after the predicate (or the pattern's `value` group) up to the end of the clause, as content
  words (provenance.content_words) minus time and filler words, with a few lemmas merged ("biking" = "bike").
  `negated`: the clause says the value no longer holds ("not", "no longer", "stopped", "used to", "sold", ...).
  "eat meat" is the diet "vegetarian" negated, and "don't eat meat" the diet "vegetarian".

Two slots are the SAME SLOT when subject and attribute are equal, and the SAME VALUE when, moreover, both are
negated or neither is and their value words overlap: |a & b| / min(|a|, |b|) >= the restatement cut-off (so
"Porto" and "Porto, by the river" are one value, "Lisbon" and "Porto" two). Same slot + different value is a
contradiction: the later statement supersedes the earlier one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..provenance import content_words
from .slot_lexicon import PATTERNS
from .slot_words import (
    ADDITIVE,
    CLAUSE_END,
    FIRST_PERSON,
    KIN,
    NAME,
    NEGATION,
    NOT_NAMES,
    SECOND_PERSON,
    VALUE_LEMMAS,
    VALUE_STOP,
    WORKOUTS,
)

_WORKOUTS = frozenset(VALUE_LEMMAS.get(w, w) for w in content_words(" ".join(WORKOUTS)))  # as values are read
_PREFIX = re.compile(r"^\s*([A-Z][\w .'-]{0,40}?):\s+(.*)$", re.DOTALL)
_CLAUSES = re.compile(r"(?<=[.!?;:])\s+|,\s+(?=(?:but|and|so|because|although|though|while)\b)|\s+(?:but|and)\s+", re.I)


@dataclass(frozen=True)
class Slot:
    subject: str  # lower-cased: "alice", "alice's brother", "bob"
    attribute: str  # "home", "job", "pet", "diet", ..., "favourite book"
    value: frozenset[str]  # the value's content words
    negated: bool = False  # the statement says the value no longer holds
    value_text: str = ""  # the value as written (for reports)

    @property
    def key(self) -> tuple[str, str]:
        return self.subject, self.attribute


def split_speaker(text: str) -> tuple[str, str]:
    """("Alice", "I live in Porto") from "Alice: I live in Porto"; ("", text) without a speaker prefix."""
    m = _PREFIX.match(text)
    return (m.group(1).strip(), m.group(2)) if m else ("", text)


def slot_of(text: str, speaker: str = "") -> Slot | None:
    """The slot `text` fills (see the module docstring), or None. `speaker`: who said it, when the text has no
    "<speaker>: " prefix."""
    prefixed, body = split_speaker(text)
    speaker = (speaker or prefixed).strip()
    found = [slot for clause in _CLAUSES.split(body) if (slot := _clause_slot(clause, speaker)) is not None]
    # "I left Lisbon and moved to Porto", "I gave up the vegan diet and eat keto now": what holds now wins
    return next((slot for slot in found if not slot.negated), found[0] if found else None)


def _clause_slot(clause: str, speaker: str) -> Slot | None:
    best = None
    for name, pattern in PATTERNS:
        m = pattern.search(clause)
        if m and (
            best is None or m.start() < best[1].start() or (m.start() == best[1].start() and m.end() > best[1].end())
        ):
            best = (name, m)
    if best is None:
        return None
    name, m = best
    groups = m.groupdict()
    attribute = f"{name} {groups['attr'].lower()}" if groups.get("attr") else name
    if groups.get("value") is not None:
        start, raw = m.start("value"), groups["value"]
    else:
        start, raw = m.end(), clause[m.end() :]
    head = clause[: m.start()]  # before the predicate
    cut = CLAUSE_END.search(raw)
    raw = raw[: cut.start()] if cut else raw
    value_end = max(m.end() if groups.get("value") is not None else 0, start + len(raw))
    around = clause[: m.end()] if groups.get("value") is None else clause[:start] + clause[m.end("value") : m.end()]
    subject = _subject(head, around, speaker)
    if subject is None:
        return None
    if name == "pet" and ADDITIVE.search(clause):
        return None  # "another dog" adds a pet, it does not replace one
    negated = bool(NEGATION.search(clause[:value_end]))
    words = {VALUE_LEMMAS.get(w, w) for w in content_words(raw)} - VALUE_STOP
    words -= {"not", "n't", "no", "never", "ex", "former"}
    if name == "diet" and words == {"meat"}:  # eating meat is not being vegetarian, and the reverse
        words, negated = {"vegetarian"}, not negated
    if name == "activity":  # "taken up rowing": a workout; "taken up pottery": a hobby
        attribute = "exercise" if words & _WORKOUTS else "hobby"
    if not words:
        return None
    return Slot(subject, attribute, frozenset(words), negated, raw.strip())


def _subject(before: str, around: str, speaker: str) -> str | None:
    """Whose attribute (see the module docstring): `before` is the clause before the predicate, `around` the
    clause up to the predicate's end without the value. None: a second-person clause."""
    me = speaker.lower()
    kin = KIN.search(before)
    if kin:  # "my sister Dana lives in ..." is Dana's; "my sister lives in ..." is the speaker's sister's
        return kin.group(2).lower() if kin.group(2) else (f"{me}'s {kin.group(1).lower()}" if me else kin.group(1))
    if SECOND_PERSON.search(around) and not FIRST_PERSON.search(around):
        return None
    if not FIRST_PERSON.search(around):
        said = re.split(r"[,!]", around)[-1]  # "Caroline, my favourite book is ...": a name before a comma is addressed
        names = [n for n in NAME.findall(said) if n not in NOT_NAMES]
        if names:
            return names[-1].lower()
    return me


def overlap(a: Slot, b: Slot) -> float:
    """Value-word overlap |a & b| / min(|a|, |b|) (slots always hold at least one value word)."""
    return len(a.value & b.value) / min(len(a.value), len(b.value))


def same_value(a: Slot, b: Slot, cutoff: float) -> bool:
    """The same value: equal polarity and value-word overlap >= cutoff (the restatement cut-off)."""
    return a.negated == b.negated and overlap(a, b) >= cutoff


def relation(new: Slot, old: Slot, cutoff: float) -> str | None:
    """What a later statement `new` does to an earlier one `old`: "restates" it (same slot, same value), "ends" it
    (same slot; a positive statement ends every other value, "I live in Porto" ends "I live in Lisbon" and "I don't
    live in Lisbon"; a negated one ends only the value it negates, "I don't live in Lisbon" ends "I live in
    Lisbon"), or None (another slot, or a negation of another value: "I don't live in Rome" leaves Lisbon)."""
    if new.key != old.key:
        return None
    if same_value(new, old, cutoff):
        return "restates"
    if not new.negated or (not old.negated and overlap(new, old) >= cutoff):
        return "ends"
    return None


def contradicts(a: Slot, b: Slot, cutoff: float) -> bool:
    """Two statements that cannot both hold now: either ends the other."""
    return relation(a, b, cutoff) == "ends" or relation(b, a, cutoff) == "ends"


def subject_of(text: str, slot: Slot | None = None) -> str:
    """Whom a memory is about: its slot's subject, else its speaker prefix ("" when unknown)."""
    return slot.subject if slot is not None else split_speaker(text)[0].lower()
