"""Provenance means the turns whose content a memory holds now (policies/provenance.py): the merge rule, source
citations, replacing vs merging updates (the dog/cat/bird repro of issue 11), runtime edits, graph edges per
assertion, and what the evaluation reports. Every expected value is worked out by hand in the comments."""

from __future__ import annotations

import json

import numpy as np
import pytest
from dspy.utils.dummies import DummyLM

from memtune.optimize.evaluation.evaluate import ingest_all
from memtune.optimize.evaluation.metrics import evidence_recall
from memtune.optimize.sweep.scoring import merge_ingest
from memtune.policies.graph.extract import LLMRelationGenerator
from memtune.policies.graph.memory import GraphMemory
from memtune.policies.graph.store import GraphStore
from memtune.policies.graph.update import RuleConflictResolver
from memtune.policies.policy import MemoryPolicy
from memtune.policies.provenance import PROVENANCE_KEYS, SourceStats, cite, content_words, keeps_content
from memtune.policies.stages.answer import ExtractiveAnswerer
from memtune.policies.stages.decide import ThresholdDecider
from memtune.policies.stages.extract import HeuristicExtractor
from memtune.policies.stages.retrieve import CosineRetriever
from memtune.policies.stages.summarize import NoSummarizer
from memtune.policies.store.changes import Change
from memtune.policies.store.store import MemoryStore
from memtune.policies.types import Message, Scope

MEL = Scope(user_id="melanie")


# ---- the merge rule ----------------------------------------------------------------------------------------------
def test_content_words_drop_function_words_and_plural_s():
    # "Melanie's" -> melanie, "has"/"a"/"and"/"two" ... : "two" is a content word (a number), "lives" -> "live"
    assert content_words("Melanie's dog and two cats") == {"melanie", "dog", "two", "cat"}
    assert content_words("She lives in Boston") == {"live", "boston"}
    assert content_words("glass class is") == {"glass", "class"}  # "-ss" is not a plural
    assert content_words("I am here, it is so!") == frozenset()


@pytest.mark.parametrize(
    ("old", "new", "merge"),
    [
        ("Melanie has a dog", "Melanie has a dog and a cat", True),  # {melanie, dog} kept
        ("Melanie has a dog", "Melanie has dogs", True),  # plural of the same word
        ("Melanie has a dog", "Melanie has a cat", False),  # dog dropped
        ("Caroline lives in Boston", "Caroline lives in Denver", False),  # 2 of 3 kept: a replacement
        ("Melanie's favourite colour is blue", "Melanie's favourite colour is green", False),  # 3 of 4: replacement
        ("Ran a race on 13 May 2023", "Melanie ran a charity race on 13 May 2023 for mental health", True),
        ("ok!", "anything at all", False),  # no content words: never merged into
    ],
)
def test_keeps_content(old, new, merge):
    assert keeps_content(old, new) is merge


def test_cite_keeps_valid_sources_and_counts_fallbacks():
    pair = [Message("A", "x", "D1:1"), Message("B", "y", "D1:2")]
    stats = SourceStats()
    assert cite([2], pair, stats) == ("D1:2",)
    assert cite(2, pair, stats) == ("D1:2",)  # a bare number
    assert cite([True, 1.0, {"n": 1}], pair, stats) == ("D1:1", "D1:2")  # none readable: 3 dropped, fallback
    assert cite([1], [Message("A", "x"), Message("B", "y", "D1:2")], stats) == ()  # cited, but it has no id
    assert stats.as_dict() == {"items": 4, "fallbacks": 1, "dropped": 3}


# ---- the dog/cat/bird repro (issue 11) ---------------------------------------------------------------------------
class AnimalEmbedder:
    """Hand-built vectors: sqrt(.8) on a shared axis + sqrt(.2) on the animal's own axis, so any two texts about
    different animals are 0.8 cosine-similar (above update_threshold 0.70, below noop_threshold 0.95)."""

    id, dim = "animal-4", 4
    axes = {"dog": 1, "cat": 2, "bird": 3}

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            out[row, 0] = np.sqrt(0.8)
            out[row, next(i for word, i in self.axes.items() if word in text.lower())] = np.sqrt(0.2)
        return out


def pets_policy(tmp_path) -> MemoryPolicy:
    embedder = AnimalEmbedder()
    return MemoryPolicy(
        HeuristicExtractor(),
        NoSummarizer(),
        ThresholdDecider(update_threshold=0.70),
        CosineRetriever(top_k=10),
        ExtractiveAnswerer(),
        embedder,
        MemoryStore(tmp_path / "s", dim=embedder.dim, embedder_id=embedder.id),
    )


def test_dog_cat_bird_leaves_one_memory_citing_only_the_bird(tmp_path):
    policy = pets_policy(tmp_path)
    turns = [
        ("I adopted a dog last month.", "D1:1"),
        ("We have a cat at home.", "D2:5"),
        ("My bird sings daily.", "D3:2"),
    ]
    for text, dia in turns:
        (event,) = policy.add([Message("Melanie", text, dia)], MEL)
    # cat vs dog: cosine 0.8 >= 0.70 -> UPDATE; bird vs cat: 0.8 -> UPDATE (the threshold decider replaces)
    assert policy.op_counts == {"ADD": 1, "UPDATE": 2, "DELETE": 0, "NOOP": 0}
    (memory,) = policy.store.get_all(MEL)
    assert memory.text == "Melanie: My bird sings daily." and memory.provenance == ("D3:2",)
    # "What dog did Melanie adopt?": the only memory is retrieved (cosine 0.8) but holds nothing of D1:1
    retrieved = policy.search("What dog did Melanie adopt?", MEL)
    assert [m.id for m in retrieved] == [memory.id]
    assert evidence_recall(["D1:1"], [m.provenance for m in retrieved]) == 0.0
    assert evidence_recall(["D3:2"], [m.provenance for m in retrieved]) == 1.0
    # nothing is lost: the history holds every text and provenance the memory had
    assert [(h["op"], h["old_provenance"], h["provenance"]) for h in policy.store.history(memory.id)] == [
        ("ADD", [], ["D1:1"]),
        ("UPDATE", ["D1:1"], ["D2:5"]),
        ("UPDATE", ["D2:5"], ["D3:2"]),
    ]


def test_a_merging_update_unions_provenance(tmp_path):
    """The same three writes declared as merges (the new text keeps the old content) cite all three turns."""
    store = MemoryStore(tmp_path / "s", dim=4, embedder_id="e")
    vec = np.array([1, 0, 0, 0], np.float32)
    ((_, mid, _),) = store.apply([Change("ADD", "Melanie has a dog", vec, scope=MEL, provenance=("D1:1",))])
    store.apply([Change("UPDATE", "Melanie has a dog and a cat", vec, mid, MEL, ("D2:5",), merge=True)])
    store.apply([Change("UPDATE", "Melanie has a dog, a cat and a bird", vec, mid, MEL, ("D3:2", "D2:5"), merge=True)])
    assert store.get(mid).provenance == ("D1:1", "D2:5", "D3:2")  # union, in order, de-duplicated
    assert evidence_recall(["D1:1"], [store.get(mid).provenance]) == 1.0  # it still holds the dog


# ---- runtime edits -----------------------------------------------------------------------------------------------
def test_memory_update_keeps_provenance_only_when_the_edit_keeps_the_content(tmp_path):
    from memtune.policies.runtime.memory import Memory

    memory = Memory(pets_policy(tmp_path))
    memory.add([{"speaker": "Melanie", "content": "I adopted a dog last month.", "dia_id": "D1:1"}], user_id="melanie")
    (mid,) = [m["id"] for m in memory.get_all(user_id="melanie")]
    memory.update(mid, "Melanie: I adopted a dog last month, a beagle.")  # a correction keeping every word
    assert memory.get(mid)["provenance"] == ["D1:1"]
    memory.update(mid, "Melanie has a bird.")  # the caller rewrote the content: it comes from no turn
    assert memory.get(mid)["provenance"] == []
    assert [h["old_provenance"] for h in memory.history(mid)] == [[], ["D1:1"], ["D1:1"]]
    memory.close()


# ---- graph edges -------------------------------------------------------------------------------------------------
def test_edge_provenance_is_per_assertion_deduplicated_and_bounded(tmp_path, embedder):
    store = GraphStore(tmp_path / "g", embedder.dim, embedder.id, max_edge_provenance=3)
    vec = embedder.embed(["John has team"])[0]
    john = store.add_node(MEL, "John", "john", "PERSON", vec, ("D1:1",), "t1")
    team = store.add_node(MEL, "team", "team", "THING", vec, ("D1:1",), "t1")
    edge = store.add_edge(MEL, john, "has", team, "John has team", vec, "t1", ("D1:1",))
    for turn in ("D2:1", "D2:1", "D3:4", "D4:2", "D5:7"):  # D2:1 stated twice: counted once in provenance
        store.touch_edge(edge, (turn,))
    # 5 distinct turns, bound 3: the first (D1:1, dated by valid_from) + the 2 newest
    assert edge["provenance"] == ["D1:1", "D4:2", "D5:7"] and edge["mentions"] == 6
    with pytest.raises(ValueError, match="max_edge_provenance must be >= 1"):
        GraphStore(tmp_path / "g2", embedder.dim, embedder.id, max_edge_provenance=0)


def test_llm_relations_cite_the_message_that_states_them(tmp_path, embedder):
    """A triplet stated by turn 2 of a pair cites turn 2 only; one citing nothing valid cites the pair, counted."""

    class Entities:
        def extract(self, messages):
            return []

    lm = DummyLM(
        [
            {
                "relations": json.dumps(
                    [
                        {"source": "Caroline", "relation": "lives_in", "destination": "Boston", "sources": [2]},
                        {"source": "Melanie", "relation": "ran", "destination": "race", "sources": [7]},
                    ]
                )
            }
        ]
    )
    relations = LLMRelationGenerator()
    g = GraphMemory(
        "on",
        entities=Entities(),
        relations=relations,
        resolver=RuleConflictResolver(),
        uri=str(tmp_path / "g"),
        embedder=embedder,
        nodes={"merge_threshold": 1.01},
    )
    import dspy

    pair = [Message("Melanie", "I ran a race.", "D1:1"), Message("Caroline", "I live in Boston now.", "D1:2")]
    with dspy.context(lm=lm):
        g.add(pair, MEL)
    cited = {e["text"]: e["provenance"] for e in g.store.scope_edges(MEL)}
    assert cited == {"Caroline lives in Boston": ["D1:2"], "Melanie ran race": ["D1:1", "D1:2"]}
    assert "1. Melanie: I ran a race." in json.dumps(lm.history[0]["messages"])
    stats = g.stats()
    assert (stats["llm_relations"], stats["relation_provenance_fallbacks"], stats["edge_provenance_turns"]) == (2, 1, 3)
    g.close()


# ---- what the evaluation reports ---------------------------------------------------------------------------------
def test_provenance_facts_mean_and_max_over_stored_memories(tmp_path):
    from types import SimpleNamespace

    from memtune.policies.provenance import provenance_facts

    store = MemoryStore(tmp_path / "s", dim=4, embedder_id="e")
    vec = np.array([1, 0, 0, 0], np.float32)
    for prov in [("D1:1",), ("D1:1", "D1:2"), ("D2:1", "D2:2", "D2:3"), ("D3:1",)]:
        store.apply([Change("ADD", "x", vec, scope=MEL, provenance=prov)])
    extractor = SimpleNamespace(sources=SourceStats(items=9, fallbacks=2, dropped=1))
    facts = provenance_facts(SimpleNamespace(store=store, extractor=extractor, decider=ThresholdDecider()))
    # (1 + 2 + 3 + 1) / 4 = 1.75, max 3; the LLM-free decider counts nothing
    assert facts == {
        "provenance_turns_mean": 1.75,
        "provenance_turns_max": 3,
        "llm_facts": 9,
        "provenance_fallbacks": 2,
        "provenance_sources_dropped": 1,
        "decide_provenance_fallbacks": 0,
    }
    assert tuple(facts) == PROVENANCE_KEYS


def test_ingest_all_reports_the_provenance_facts(tmp_path, embedder):
    from memtune.optimize.data.locomo import load_locomo, resolve_path

    policy = MemoryPolicy(
        HeuristicExtractor(),
        NoSummarizer(),
        ThresholdDecider(),
        CosineRetriever(),
        ExtractiveAnswerer(),
        embedder,
        MemoryStore(tmp_path / "s", dim=embedder.dim, embedder_id=embedder.id),
    )
    facts = ingest_all(policy, load_locomo(resolve_path("data/fixture/fixture.json")), progress=False)
    sizes = [len(m.provenance) for m in policy.store.get_all()]
    assert len(sizes) == facts["memories_stored"] > 0
    # heuristic facts come from one turn each, and the threshold decider replaces: one turn per memory
    assert (facts["provenance_turns_mean"], facts["provenance_turns_max"]) == (1.0, 1) and set(sizes) == {1}
    assert (facts["llm_facts"], facts["provenance_fallbacks"]) == (0, 0)  # no LLM stage


def test_merge_ingest_weights_the_mean_by_memories_stored():
    def conv(stored, mean, most, fallbacks):
        base = {k: 0 for k in PROVENANCE_KEYS} | {"provenance_fallbacks": fallbacks, "llm_facts": 10}
        return base | {
            "provenance_turns_mean": mean,
            "provenance_turns_max": most,
            "memories_stored": stored,
            "message_pairs": 1,
            "seconds": 1.0,
            "turns": 2,
            "ops": {},
            "cost": {"phases": {}},
        }

    merged = merge_ingest([conv(30, 1.0, 1, 2), conv(10, 3.0, 7, 5)], ["a", "b"])
    # (30 x 1.0 + 10 x 3.0) / 40 = 1.5; max(1, 7) = 7; fallbacks 2 + 5; LLM facts 10 + 10
    assert (merged["provenance_turns_mean"], merged["provenance_turns_max"]) == (1.5, 7)
    assert (merged["provenance_fallbacks"], merged["llm_facts"]) == (7, 20)
    # a conversation ingested before these facts existed (old cache): unknown, not a made-up number
    old = {k: v for k, v in conv(5, 1.0, 1, 0).items() if k not in PROVENANCE_KEYS}
    assert merge_ingest([conv(30, 1.0, 1, 2), old], ["a", "b"])["provenance_turns_mean"] is None
