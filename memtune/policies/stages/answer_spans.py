"""Typed answer spans for the question-aware extractive answerer (no LM); the question's type: `answer_typing`.

`spans(kind, text, question_words)` lists the candidate answer spans of one memory text with a
score in [0, 1] for how well each fits the question's type; spaCy (the `graph` extra's en_core_web_sm) supplies
entities, noun chunks and parts of speech, loaded lazily. `load_nlp()` is None when spaCy (or its model) is not
installed: callers then fall back to the plain extractive answerer.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from .answer_dates import without_times

# ------------------------------------------------------------------------------------------------ words

_WORD = re.compile(r"[A-Za-z0-9']+")
STOP = frozenset(
    "a an the and or but of to in on at for with by from as is are was were be been being do does did have has had "
    "i you he she it we they me him her us them my your his its our their this that these those what which who whom "
    "whose when where why how would will can could should shall may might must not no so if then than there here "
    "about into over after before up down out also just very really some any all more most much many such too "
    "i'm i've it's that's i'd i'll you're we're they're don't didn't".split()
)


def stem(word: str) -> str:
    """A crude stem (lowercase, common suffixes off) so 'painting'/'painted'/'paints' meet."""
    w = word.lower().strip("'")
    if w.endswith("'s"):
        w = w[:-2]
    for suffix in ("ing", "ies", "ed", "es", "s"):
        if len(w) > len(suffix) + 2 and w.endswith(suffix):
            w = w[: -len(suffix)] + ("y" if suffix == "ies" else "")
            break
    return w[:-1] if len(w) > 3 and w.endswith("e") else w


def content_stems(text: str) -> set[str]:
    return {stem(w) for w in _WORD.findall(text) if w.lower() not in STOP}


_CAPTION = re.compile(r"\[shares a photo of:\s*(?:an? (?:photo|picture|photography|image|close up) of\s*)?|\]")


def body(memory_text: str) -> str:
    """The memory text without its "<speaker>: " prefix (heuristic-extractor facts start with one) and with a
    shared photo's caption as plain text ("[shares a photo of: a photo of a dog]" -> "a dog")."""
    head, sep, rest = memory_text.partition(": ")
    text = rest if sep and len(head.split()) <= 3 and "[" not in head else memory_text
    return _CAPTION.sub("", text).strip()


_MONTH = r"(?:January|February|March|April|May|June|July|August|September|October|November|December)"
_RESOLVED = re.compile(  # what stages/dates.resolve_relative writes after a relative date, in its parentheses
    rf"\s*\((?:(?:the (?:week|weekend) (?:before|of|after)|a few (?:day|week|month|year)s before) )?"
    rf"(?:\d{{1,2}} {_MONTH} \d{{4}}|{_MONTH} \d{{4}})\)"
    r"|(?:(?<=year)|(?<=years)|(?<= ago)) \(\d{4}\)"  # a bare year only after "last year", "in 2 years", "3 years ago"
)


def plain(memory_text: str, drop_times: bool = False) -> str:
    """`body` without the resolved dates the heuristic extractor's `resolve_dates` wrote after relative ones
    ("I went yesterday (7 May 2023)." -> "I went yesterday."): a date is the answer to a "when" question, never
    part of a what / who / where span ("8 February 2023 freedom"). The "when" path reads the text with them.
    `drop_times`: the time expressions themselves go too ("We had a blast at a live music event last week." ->
    "We had a blast at a live music event."; every pattern `answer_dates.temporal_expression` knows), so "last
    week" is never a what / who / where answer; quantity questions keep them ("two years ago")."""
    text = _RESOLVED.sub("", body(memory_text))
    if drop_times:
        text = _SPACE_PUNCT.sub(r"\1", " ".join(without_times(text).split())).strip(" ,;:")
    return text


_SPACE_PUNCT = re.compile(r"\s+([,.!?;:])")


# ------------------------------------------------------------------------------------------------ spaCy


@lru_cache(maxsize=1)
def load_nlp() -> Any | None:
    """spaCy's small English pipeline (the `graph` extra), or None when spaCy or the model is missing."""
    try:
        from ..graph.extract import SPACY_MODEL, load_spacy

        return load_spacy(SPACY_MODEL)
    except (ImportError, OSError):
        return None


@lru_cache(maxsize=4096)
def parse(text: str) -> Any | None:
    nlp = load_nlp()
    return None if nlp is None else nlp(text)


# ------------------------------------------------------------------------------------------------ spans

ENTITY_KINDS = {
    "where": ("GPE", "LOC", "FAC", "ORG"),
    "who": ("PERSON", "ORG", "NORP"),
}
_PEOPLE = frozenset(
    "mom mother dad father parents sister brother aunt uncle grandma grandmother grandpa grandfather cousin friend "
    "friends family kids children son daughter husband wife partner mentor mentors colleague colleagues coworkers "
    "teammates team neighbor neighbors boss teacher coach".split()
)
_QUOTED = re.compile(r"[\"“]([^\"”]{2,60})[\"”]")
_COUNT = re.compile(
    r"\b(?:\d+(?:\.\d+)?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|fifty|"
    r"hundred|once|twice|a few|a couple|several)\b(?:\s+(?:times?|years?|months?|weeks?|days?|hours?|minutes?|"
    r"a (?:week|month|year|day)|per \w+|kids|children|people|dollars))*",
    re.IGNORECASE,
)
_REASON = re.compile(r"\b(?:because|since|so that|to|for|as)\s+(.+)", re.IGNORECASE)


def _fresh(text: str, asked: set[str]) -> float:
    """Share of the span's content words the question does not already contain (answers add new words)."""
    words = [stem(w) for w in _WORD.findall(text) if w.lower() not in STOP]
    if not words:
        return 0.0
    return sum(w not in asked for w in words) / len(words)


def _trim(text: str, asked: set[str], tail: bool = True) -> str:
    """The span without leading/trailing stop words and question words (`tail`: trailing question words too;
    a number keeps its unit: "how many years" -> "seven years")."""
    words = text.split()
    while words and (words[0].lower().strip(",.!?\"'") in STOP or stem(words[0].strip(",.!?\"'")) in asked):
        words = words[1:]
    while words and (words[-1].lower().strip(",.!?\"'") in STOP or tail and stem(words[-1].strip(",.!?\"'")) in asked):
        words = words[:-1]
    return " ".join(words).strip(" ,.;:!?-")


def spans(
    kind: str,
    text: str,
    asked: set[str],
    use_entities: bool = True,
    expand: bool = True,
    measure: str = "",
    focus: tuple[str, ...] = (),
) -> list[tuple[str, float]]:
    """Candidate answer spans of `text` for a question of type `kind`, each with a type-fit score in [0, 1];
    spans made only of the question's own words are left out. `expand`: a noun chunk is given with its whole
    subtree ("a cup" -> "a cup with a dog face on it"). `measure`: a quantity question's word (`quantity_word`);
    `focus`: the entity labels the question's focus noun asks for (`focus_labels`), which then fit best."""
    doc = parse(text) if use_entities else None
    found: list[tuple[str, float]] = []
    if kind in ("what", "which", "who") or kind == "where":
        found += [(q, 1.0 if "WORK_OF_ART" in focus else 0.9) for q in _QUOTED.findall(text)]
    if doc is not None:
        wanted = ENTITY_KINDS.get(kind, ()) + focus
        for ent in doc.ents:
            fit = 1.0 if ent.label_ in wanted else (0.5 if kind in ("what", "which") and _named(ent.label_) else 0.0)
            if fit:
                found.append((ent.text, fit))
        if kind in ("what", "which", "who", "where", "how"):
            anchors = [t.i for t in doc if stem(t.text) in asked and t.lower_ not in STOP]
            for chunk in doc.noun_chunks:
                if chunk.root.pos_ == "PRON":
                    continue
                fit = 0.6
                if kind == "who":
                    fit = 0.8 if chunk.root.lemma_.lower() in _PEOPLE else 0.1
                elif kind == "where":
                    fit = (
                        0.5
                        if chunk.root.dep_ == "pobj" and chunk.root.head.lower_ in ("in", "at", "to", "from")
                        else 0.1
                    )
                phrase = doc[chunk.root.left_edge.i : chunk.root.right_edge.i + 1] if expand else chunk
                found.append(
                    (phrase.text, fit * _near(chunk, anchors) * (0.3 if chunk.root.lower_ in _GENERIC else 1.0))
                )
        if kind == "how":
            found += [
                (t.text, 0.8 if t.dep_ in ("acomp", "xcomp", "oprd") else 0.5)
                for t in doc
                if t.pos_ == "ADJ" and t.dep_ in ("acomp", "amod", "xcomp", "oprd") and t.lower_ not in _VAGUE
            ]
    if kind == "quantity":
        found += _quantities(text, doc, measure)
    if kind == "why":
        found += [(m.group(1), 0.8) for m in _REASON.finditer(text)]
    out = []
    for span, fit in found:
        span = _trim(span, asked, tail=kind != "quantity")
        if span and _fresh(span, asked) > 0:
            out.append((span, fit * _fresh(span, asked)))
    return out


_GENERIC = frozenset(
    "photo pic picture pics photos thing things stuff lot lots time times way ways day days week bit kind sort "
    "one ones something anything everything people guy guys".split()
)


def _near(chunk: Any, anchors: list[int]) -> float:
    """How closely a noun chunk attaches to the question's words in the memory: 1.0 for the object of a matched
    verb (or of a preposition after one), less with token distance, 0.5 with no anchor at all."""
    head = chunk.root.head
    if head.i in anchors or (head.dep_ == "prep" and head.head.i in anchors):
        return 1.0
    if not anchors:
        return 0.5
    distance = min(min(abs(a - chunk.start), abs(a - (chunk.end - 1))) for a in anchors)
    return 0.5 + 0.4 / (1 + distance / 3)


_VAGUE = frozenset("other last next own same few many more much first second little whole such only".split())
_DURATION = re.compile(
    r"\b(?:since\s+(?:19|20)\d\d|(?:\d+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|a few|a couple"
    r" of|several|many)\s+(?:years?|months?|weeks?|days?|hours?|minutes?|miles?|km)(?:\s+(?:ago|old))?)\b",
    re.IGNORECASE,
)
_FREQUENCY = re.compile(
    r"\b(?:(?:once|twice|(?:\d+|one|two|three|four|five|a few|a couple of|several) times)\s+(?:a|per|every)\s+\w+|"
    r"every\s+(?:day|week|month|year|morning|night|weekend)|daily|weekly|monthly|yearly)\b",
    re.IGNORECASE,
)


def _quantities(text: str, doc: Any | None, measure: str) -> list[tuple[str, float]]:
    """Number spans of the kind the quantity question asks: durations (how long / old / far / long ago),
    frequencies (how often), counts and amounts (how many / much)."""
    if measure in ("long", "old", "far", "ago"):
        return [
            (m.group(0), 1.0 if measure != "ago" or "ago" in m.group(0).lower() else 0.6)
            for m in _DURATION.finditer(text)
        ]
    if measure == "often":
        return [(m.group(0), 1.0) for m in _FREQUENCY.finditer(text)]
    counts = [(m.group(0), 0.8) for m in _COUNT.finditer(text) if not _DURATION.fullmatch(m.group(0))]
    if doc is not None:
        counts += [(e.text, 1.0) for e in doc.ents if e.label_ in ("CARDINAL", "MONEY", "QUANTITY", "PERCENT")]
    return counts


def _named(label: str) -> bool:
    return label in ("PERSON", "ORG", "GPE", "LOC", "FAC", "NORP", "EVENT", "WORK_OF_ART", "PRODUCT", "LANGUAGE")
