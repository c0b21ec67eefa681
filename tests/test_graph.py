"""Graph memory (Mem0g): node merge, conflict -> invalidation (soft/hard), retrieval of valid edges only unless
asked, compaction, scope isolation, persistence, spaCy and LLM (DummyLM) extraction, and the policy.graph knob."""

from __future__ import annotations

import json

import pytest
from dspy.utils.dummies import DummyLM

from memtune.policies.graph.extract import (
    LLMEntityExtractor,
    LLMRelationGenerator,
    SpacyEntityExtractor,
    SpacyRelationGenerator,
)
from memtune.policies.graph.memory import GraphMemory
from memtune.policies.graph.retrieve import is_graph_record
from memtune.policies.graph.store import GraphStore
from memtune.policies.graph.types import Entity, Triplet
from memtune.policies.graph.update import LLMConflictResolver, RuleConflictResolver
from memtune.policies.policy import MemoryPolicy
from memtune.policies.stages.answer import ExtractiveAnswerer, memory_context
from memtune.policies.stages.decide import ThresholdDecider
from memtune.policies.stages.extract import HeuristicExtractor
from memtune.policies.stages.retrieve import CosineRetriever
from memtune.policies.stages.summarize import NoSummarizer
from memtune.policies.types import Message, Scope

ALICE, BOB = Scope(user_id="alice"), Scope(user_id="o'brien")  # a quote in a scope value must be harmless


class Scripted:
    """Entity extractor + relation generator replaying what the test says each message states."""

    def __init__(self):
        self.entities: dict[str, list[Entity]] = {}
        self.triplets: dict[str, list[Triplet]] = {}

    def extract(self, messages):
        return [e for m in messages for e in self.entities.get(m.text, [])]

    def generate(self, messages, entities):
        return [t for m in messages for t in self.triplets.get(m.text, [])]


def say(script: Scripted, text: str, when: str, dia: str, *triplets, entities=()) -> Message:
    script.triplets[text] = [Triplet(s, r, d, when, (dia,), *types) for s, r, d, *types in triplets]
    script.entities[text] = [Entity(n, t, (dia,), when) for n, t in entities]
    return Message("Caroline", text, dia, when)


def graph(tmp_path, embedder, script=None, resolver=None, **kw) -> GraphMemory:
    """A graph over the scripted extraction. Merge by embedding is off unless a test asks for it: single words
    collide in the 64 buckets of the test's hashing embedder."""
    script = script or Scripted()
    kw.setdefault("nodes", {"merge_threshold": 1.01})
    return GraphMemory(
        "on",
        entities=script,
        relations=script,
        resolver=resolver or RuleConflictResolver(),
        uri=str(tmp_path / "store"),
        embedder=embedder,
        **kw,
    )


def test_node_merge_by_key_and_by_embedding_within_threshold_and_type(tmp_path, embedder):
    s = Scripted()
    g = graph(tmp_path, embedder, s, nodes={"merge_threshold": 0.8})
    g.add([say(s, "m1", "8 May 2023", "D1:1", ("Caroline", "go_to", "LGBTQ support group", "PERSON", "THING"))], ALICE)
    # same key (case and determiner differ) -> the same node; "support group" is 0.95 cosine from it -> merged
    g.add([say(s, "m2", "9 May 2023", "D1:2", ("caroline", "like", "the support group", "PERSON", "THING"))], ALICE)
    assert g.store.counts(ALICE)["nodes"] == 2
    assert g.counts["nodes_merged"] == 1
    node = next(n for n in g.store.scope_nodes(ALICE) if n["key"] == "caroline")
    assert node["mentions"] == 2 and node["provenance"] == ["D1:1", "D1:2"]
    # a stricter threshold keeps them apart; so does an incompatible type
    s2 = Scripted()
    strict = graph(tmp_path / "b", embedder, s2, nodes={"merge_threshold": 0.96})
    strict.add(
        [
            say(s2, "m1", "", "D1:1", ("Caroline", "go_to", "LGBTQ support group")),
            say(s2, "m2", "", "D1:2", ("Caroline", "like", "support group")),
        ],
        ALICE,
    )
    assert strict.store.counts(ALICE)["nodes"] == 3
    s3 = Scripted()
    typed = graph(tmp_path / "c", embedder, s3, nodes={"merge_threshold": 0.8})
    typed.add(
        [
            say(s3, "m1", "", "D1:1", ("Caroline", "go_to", "LGBTQ support group", "PERSON", "ORG")),
            say(s3, "m2", "", "D1:2", ("Caroline", "meet", "support group", "PERSON", "PERSON")),
        ],
        ALICE,
    )
    assert typed.store.counts(ALICE)["nodes"] == 3


def _moves(s: Scripted):
    return [
        say(s, "I live in Boston", "1:00 pm on 1 January, 2023", "D1:1", ("Caroline", "live_in", "Boston")),
        say(s, "I moved, I live in Denver", "1:00 pm on 1 June, 2023", "D2:1", ("Caroline", "live_in", "Denver")),
        say(s, "I like tea", "1:00 pm on 2 June, 2023", "D2:2", ("Caroline", "like", "tea")),
        say(s, "I like chess", "1:00 pm on 3 June, 2023", "D2:3", ("Caroline", "like", "chess")),
    ]


def test_conflict_soft_invalidation_keeps_the_edge_marked_and_persists(tmp_path, embedder):
    s = Scripted()
    g = graph(tmp_path, embedder, s)
    for m in _moves(s):
        g.add([m], ALICE)
    edges = {e["destination"]: e for e in g.store.scope_edges(ALICE, include_invalid=True)}
    assert edges["Boston"]["invalidated_at"] == "1:00 pm on 1 June, 2023"
    assert edges["Boston"]["invalidated_by"] == edges["Denver"]["id"]
    assert not edges["Denver"]["invalidated_at"]
    assert not edges["tea"]["invalidated_at"] and not edges["chess"]["invalidated_at"]  # multi-valued relation
    assert g.store.counts(ALICE) == {"nodes": 5, "edges": 4, "valid_edges": 3, "invalid_edges": 1}
    g.close()
    reopened = GraphStore(tmp_path / "store", embedder.dim, embedder.id)
    assert reopened.counts(ALICE) == {"nodes": 5, "edges": 4, "valid_edges": 3, "invalid_edges": 1}
    with pytest.raises(ValueError, match="embedder"):
        GraphStore(tmp_path / "store", embedder.dim, "another-embedder")


def test_hard_invalidation_deletes_and_repeats_only_add_provenance(tmp_path, embedder):
    s = Scripted()
    g = graph(tmp_path, embedder, s, edges={"invalidation": "hard"})
    for m in _moves(s) + [
        say(s, "Still in Denver", "1:00 pm on 4 June, 2023", "D2:4", ("Caroline", "live_in", "Denver"))
    ]:
        g.add([m], ALICE)
    edges = {e["destination"]: e for e in g.store.scope_edges(ALICE, include_invalid=True)}
    assert "Boston" not in edges and g.store.counts(ALICE)["invalid_edges"] == 0
    assert edges["Denver"]["provenance"] == ["D2:1", "D2:4"] and edges["Denver"]["mentions"] == 2
    g.close()
    assert GraphStore(tmp_path / "store", embedder.dim, embedder.id).counts(ALICE)["edges"] == 3


def test_retrieval_returns_only_valid_edges_unless_asked(tmp_path, embedder):
    s = Scripted()
    g = graph(tmp_path, embedder, s)
    for m in _moves(s):
        g.add([m], ALICE)
    q = "Where does Caroline live?"
    vec = embedder.embed([q])[0]
    hits = g.search(q, vec, ALICE)
    assert {h.metadata["destination"] for h in hits} == {"Denver", "tea", "chess"}
    assert all(is_graph_record(h) and not h.metadata["invalidated_at"] for h in hits)
    top = hits[0]
    assert top.text == "Caroline live in Denver" and top.provenance == ("D2:1",)
    assert top.timestamp == "1:00 pm on 1 June, 2023"
    g.retriever.knobs.include_invalid = True
    old = [h for h in g.search(q, vec, ALICE) if h.metadata["destination"] == "Boston"]
    assert old and old[0].metadata["invalidated_at"] == "1:00 pm on 1 June, 2023"
    # the answerer sees each triplet with when it held
    shown = memory_context(old)[0]
    assert shown == {
        "said_at": "1:00 pm on 1 January, 2023",
        "memory": "Caroline -- live_in -- Boston",
        "valid_from": "1:00 pm on 1 January, 2023",
        "invalid_since": "1:00 pm on 1 June, 2023",
    }


def test_entity_walk_follows_hops(tmp_path, embedder):
    s = Scripted()
    g = graph(tmp_path, embedder, s, retrieval={"triplet_top_k": 0, "seed_nodes": 0, "hops": 1})
    g.add(
        [
            say(s, "a", "", "D1:1", ("Caroline", "has_sister", "Anna")),
            say(s, "b", "", "D1:2", ("Anna", "work_at", "Zeta Corp")),
        ],
        ALICE,
    )
    q = "What about Caroline?"
    vec = embedder.embed([q])[0]
    assert [h.metadata["relation"] for h in g.search(q, vec, ALICE)] == ["has_sister"]
    g.retriever.knobs.hops = 2
    assert {h.metadata["relation"] for h in g.search(q, vec, ALICE)} == {"has_sister", "work_at"}
    assert all(h.metadata["path"] == "entity" for h in g.search(q, vec, ALICE))


def _flip_flop(s: Scripted) -> list[Message]:
    months = ["January", "February", "March", "April", "September"]
    return [
        say(s, f"m{i}", f"1:00 pm on 1 {month}, 2023", f"D{i}:1", ("Caroline", "feel", mood))
        for i, (month, mood) in enumerate(zip(months, ["happy", "sad", "calm", "tired", "happy"]))
    ]


@pytest.mark.parametrize(
    "edges, kept_invalid",
    [
        ({"compaction": "keep_all"}, ["happy", "sad", "calm", "tired"]),
        ({"compaction": "keep_last", "keep_last": 1}, ["tired"]),
        ({"compaction": "keep_last", "keep_last": 0}, []),
        ({"compaction": "max_age", "max_age_days": 180}, ["calm", "tired"]),  # newest time said: 1 September
    ],
)
def test_compaction(tmp_path, embedder, edges, kept_invalid):
    s = Scripted()
    g = graph(tmp_path, embedder, s, edges=edges)
    for m in _flip_flop(s):
        g.add([m], ALICE)
    edges = g.store.scope_edges(ALICE, include_invalid=True)
    assert sorted(e["destination"] for e in edges if e["invalidated_at"]) == sorted(kept_invalid)
    valid = [e for e in edges if not e["invalidated_at"]]
    assert [e["destination"] for e in valid] == ["happy"] and valid[0]["valid_from"].endswith("September, 2023")
    assert g.counts["edges_compacted"] == 4 - len(kept_invalid)


def test_scope_isolation(tmp_path, embedder):
    s = Scripted()
    g = graph(tmp_path, embedder, s)
    g.add([say(s, "x", "", "D1:1", ("Caroline", "live_in", "Boston"))], ALICE)
    g.add([say(s, "y", "", "D9:1", ("Caroline", "live_in", "Paris"))], BOB)
    # the same name in two scopes is two nodes, and Bob's move does not invalidate Alice's edge
    assert (
        g.store.counts(ALICE) == g.store.counts(BOB) == {"nodes": 2, "edges": 1, "valid_edges": 1, "invalid_edges": 0}
    )
    q = "Where does Caroline live?"
    vec = embedder.embed([q])[0]
    assert [h.metadata["destination"] for h in g.search(q, vec, BOB)] == ["Paris"]
    assert g.delete_all(BOB) == 2
    assert g.store.counts(BOB)["nodes"] == 0 and g.store.counts(ALICE)["edges"] == 1
    g.close()
    assert GraphStore(tmp_path / "store", embedder.dim, embedder.id).counts() == {
        "nodes": 2,
        "edges": 1,
        "valid_edges": 1,
        "invalid_edges": 0,
    }


def test_spacy_extraction_resolves_first_person_to_the_speaker():
    msgs = [
        Message(
            "Caroline",
            "I went to the LGBTQ support group yesterday. My sister Anna loves painting.",
            "D1:3",
            "1:56 pm on 8 May, 2023",
        ),
        Message("Melanie", "I am keen on pottery.", "D1:4", "1:56 pm on 8 May, 2023"),
    ]
    entities = SpacyEntityExtractor().extract(msgs)
    names = {(e.name, e.type) for e in entities}
    assert {
        ("Caroline", "PERSON"),
        ("Melanie", "PERSON"),
        ("Anna", "PERSON"),
        ("LGBTQ support group", "THING"),
    } <= names
    assert not any(e.name.lower() in ("i", "yesterday") for e in entities)
    triplets = {(t.source, t.relation, t.destination): t for t in SpacyRelationGenerator().generate(msgs, entities)}
    assert ("Caroline", "go_to", "LGBTQ support group") in triplets
    assert ("Caroline", "has_sister", "Anna") in triplets
    assert ("Melanie", "is_keen_on", "pottery") in triplets
    t = triplets[("Caroline", "go_to", "LGBTQ support group")]
    assert t.provenance == ("D1:3",) and t.timestamp == "1:56 pm on 8 May, 2023"


def _llm_policy(tmp_path, embedder, answers):
    lm = DummyLM(answers)
    g = GraphMemory(
        "on",
        entities=LLMEntityExtractor(),
        relations=LLMRelationGenerator(),
        resolver=LLMConflictResolver(),
        uri=str(tmp_path / "store"),
        embedder=embedder,
    )
    from memtune.policies.store.store import MemoryStore

    store = MemoryStore(tmp_path / "store", dim=embedder.dim, embedder_id=embedder.id)
    return MemoryPolicy(
        HeuristicExtractor(),
        NoSummarizer(),
        ThresholdDecider(),
        CosineRetriever(top_k=3),
        ExtractiveAnswerer(),
        embedder,
        store,
        lm=lm,
        graph=g,
    )


def test_llm_graph_stages_with_dummy_lm(tmp_path, embedder):
    def ents(*n):
        return {"entities": json.dumps([{"name": x, "type": "PERSON" if x == "Caroline" else "PLACE"} for x in n])}

    def rels(d):
        return {"relations": json.dumps([{"source": "Caroline", "relation": "Lives In", "destination": d}])}

    policy = _llm_policy(
        tmp_path,
        embedder,
        [
            ents("Caroline", "Boston"),
            rels("Boston"),
            ents("Caroline", "Denver"),
            rels("Denver"),
            {"outdated_ids": json.dumps([0, 7])},  # 7 was never shown
        ],
    )
    policy.add([Message("Caroline", "I live in Boston now, it is lovely.", "D1:1", "1 January 2023")], ALICE)
    policy.add([Message("Caroline", "I moved to Denver last week, big change.", "D2:1", "1 June 2023")], ALICE)
    edges = {e["destination"]: e for e in policy.graph.store.scope_edges(ALICE, include_invalid=True)}
    assert edges["Boston"]["relation"] == "lives_in" and edges["Boston"]["invalidated_at"] == "1 June 2023"
    assert not edges["Denver"]["invalidated_at"] and policy.graph.resolver.rejected == [7]
    assert {(n["name"], n["type"]) for n in policy.graph.store.scope_nodes(ALICE)} == {
        ("Caroline", "PERSON"),
        ("Boston", "PLACE"),
        ("Denver", "PLACE"),
    }
    phases = policy.meter.as_dict()["phases"]
    assert phases["graph_entities"]["calls"] == 2 and phases["graph_conflicts"]["calls"] == 1
    # mode "on": vector memories first, then triplets; "only": triplets alone
    found = policy.search("Where does Caroline live?", ALICE)
    assert not is_graph_record(found[0]) and [m.text for m in found if is_graph_record(m)] == [
        "Caroline lives in Denver"
    ]
    policy.graph.mode = "only"
    assert [m.text for m in policy.search("Where does Caroline live?", ALICE)] == ["Caroline lives in Denver"]


def test_llm_graph_stage_without_lm_is_a_clear_error(tmp_path, embedder):
    policy = _llm_policy(tmp_path, embedder, [])
    with pytest.raises(ValueError, match="graph.entities"):
        MemoryPolicy(
            policy.extractor,
            policy.summarizer,
            policy.decider,
            policy.retriever,
            policy.answerer,
            embedder,
            policy.store,
            graph=policy.graph,
        )


def test_graph_knob_builds_and_keys_the_ingestion_cache(tmp_path):
    from hydra import compose, initialize_config_module

    from memtune.optimize.data.locomo import load_locomo, resolve_path
    from memtune.optimize.evaluation.ingest_cache import ingestion_key
    from memtune.policies.build import build_graph, graph_mode

    with initialize_config_module("memtune.conf", version_base="1.3"):
        cfgs = {
            o: compose("eval", overrides=["dataset=fixture", *o])
            for o in [
                (),
                ("policy/graph=on",),
                ("policy/graph=only",),
                ("policy.graph.mode=off",),
                ("policy/graph=on", "policy.graph.edges.invalidation=hard"),
                ("policy/graph=on", "policy.graph.retrieval.hops=2"),
                ("policy=rag",),
            ]
        }
    assert [graph_mode(c) for c in cfgs.values()] == ["off", "on", "only", "off", "on", "on", "off"]
    dataset = load_locomo(resolve_path(cfgs[()].dataset.path))
    keys = {o: ingestion_key(c, dataset) for o, c in cfgs.items()}
    assert keys[()] == keys[("policy.graph.mode=off",)]  # off: the Mem0 store, shared
    assert (
        keys[("policy/graph=on",)]
        == keys[("policy/graph=only",)]
        == keys[("policy/graph=on", "policy.graph.retrieval.hops=2")]
    )  # retrieval knobs do not re-ingest
    assert (
        len({keys[()], keys[("policy/graph=on",)], keys[("policy/graph=on", "policy.graph.edges.invalidation=hard")]})
        == 3
    )
    assert build_graph(cfgs[()], tmp_path, None) is None


def test_eval_with_graph_reports_graph_metrics(tmp_path, embedder):
    """The evaluation loop on the fixture with graph on: growth per session, graph-only recall and tokens."""
    from memtune.optimize.data.locomo import load_locomo, resolve_path
    from memtune.optimize.evaluation.evaluate import answer_all, ingest_all, score_table, summary_dict
    from memtune.policies.store.store import MemoryStore

    dataset = load_locomo(resolve_path("data/fixture/fixture.json"))
    g = GraphMemory(
        "on",
        entities=SpacyEntityExtractor(),
        relations=SpacyRelationGenerator(),
        resolver=RuleConflictResolver(),
        uri=str(tmp_path / "s"),
        embedder=embedder,
    )
    policy = MemoryPolicy(
        HeuristicExtractor(),
        NoSummarizer(),
        ThresholdDecider(),
        CosineRetriever(top_k=5),
        ExtractiveAnswerer(),
        embedder,
        MemoryStore(tmp_path / "s", embedder.dim, embedder.id),
        graph=g,
    )
    facts = ingest_all(policy, dataset, progress=False)
    growth = facts["graph_growth"]
    assert [x["sessions"] for x in growth] == list(range(1, len(growth) + 1)) and len(growth) >= 2
    assert growth[-1]["nodes"] == facts["graph"]["nodes"] > growth[0]["nodes"] > 0
    assert facts["graph"]["disk_bytes"] > 0 and facts["graph"]["valid_edges"] > 0
    overall = summary_dict(score_table(answer_all(policy, dataset, progress=False)))["overall"]
    assert 0 <= overall["graph_evidence_recall"] <= overall["evidence_recall"] <= 1
    assert 0 < overall["graph_context_tokens"] < overall["context_tokens"]


def test_graph_search_space_composes_for_every_mode():
    import optuna
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from memtune.optimize.sweep.search_space import SearchSpace
    from memtune.policies.build import graph_mode

    space = SearchSpace.from_config(OmegaConf.load("conf/search_space/graph.yaml"))
    base = {
        "policy/graph": "on",
        "policy.graph.edges.invalidation": "soft",
        "policy.graph.edges.compaction": "keep_last",
        "policy.graph.edges.keep_last": 2,
        "policy.graph.nodes.merge_threshold": 0.9,
        "policy.graph.retrieval.hops": 2,
        "policy.graph.retrieval.entity_top_k": 5,
        "policy.graph.retrieval.triplet_top_k": 10,
        "policy.graph.retrieval.merge": "score",
        "policy.graph.retrieval.include_invalid": True,
    }
    with initialize_config_module("memtune.conf", version_base="1.3"):
        for mode in ("off", "on", "only"):
            overrides = space.suggest(optuna.trial.FixedTrial(base | {"policy/graph": mode}))
            cfg = compose("eval", overrides=overrides)
            assert graph_mode(cfg) == mode
            if mode == "off":
                assert overrides == ["policy/graph=off"]
            else:
                assert cfg.policy.graph.edges.keep_last == 2 and cfg.policy.graph.retrieval.include_invalid is True


def test_merge_appends_or_ranks_by_score():
    from memtune.policies.graph.retrieve import merge
    from memtune.policies.types import MemoryRecord

    mems = [MemoryRecord("m1", "a", ALICE, score=0.9), MemoryRecord("m2", "b", ALICE, score=0.3)]
    trips = [MemoryRecord("t1", "c", ALICE, score=0.5, metadata={"kind": "graph"})]
    assert [m.id for m in merge(mems, trips, "append")] == ["m1", "m2", "t1"]
    assert [m.id for m in merge(mems, trips, "score")] == ["m1", "t1", "m2"]
    with pytest.raises(ValueError, match="merge"):
        from memtune.policies.graph.retrieve import GraphRetriever

        GraphRetriever(merge="interleave")


def test_triplets_stated_together_do_not_invalidate_each_other(tmp_path, embedder):
    s = Scripted()
    g = graph(tmp_path, embedder, s)
    g.add(
        [
            say(
                s,
                "I'm happy and thankful",
                "8 May 2023",
                "D1:1",
                ("Caroline", "is", "happy"),
                ("Caroline", "is", "thankful"),
            )
        ],
        ALICE,
    )
    assert g.store.counts(ALICE)["invalid_edges"] == 0
    g.add([say(s, "I'm tired", "9 May 2023", "D1:2", ("Caroline", "is", "tired"))], ALICE)
    edges = {e["destination"]: e for e in g.store.scope_edges(ALICE, include_invalid=True)}
    assert edges["happy"]["invalidated_at"] == edges["thankful"]["invalidated_at"] == "9 May 2023"
    assert not edges["tired"]["invalidated_at"]


def test_memory_api_delete_all_and_reset_reach_the_graph(tmp_path, embedder):
    from memtune.policies.runtime.memory import Memory
    from memtune.policies.store.store import MemoryStore

    s = Scripted()
    g = graph(tmp_path, embedder, s)
    store = MemoryStore(tmp_path / "store", dim=embedder.dim, embedder_id=embedder.id)
    memory = Memory(
        MemoryPolicy(
            HeuristicExtractor(),
            NoSummarizer(),
            ThresholdDecider(),
            CosineRetriever(top_k=3),
            ExtractiveAnswerer(),
            embedder,
            store,
            graph=g,
        )
    )
    say(s, "I live in Boston now.", "", "D1:1", ("Caroline", "live_in", "Boston"))
    say(s, "I live in Paris now.", "", "D1:2", ("Caroline", "live_in", "Paris"))
    memory.add([{"role": "Caroline", "content": "I live in Boston now."}], user_id="alice")
    memory.add([{"role": "Caroline", "content": "I live in Paris now."}], user_id="o'brien")
    assert g.store.counts(ALICE)["edges"] == g.store.counts(BOB)["edges"] == 1
    # each served add is durable: a second handle on the same LanceDB tables sees the graph at once
    assert GraphStore(tmp_path / "store", embedder.dim, embedder.id).counts()["edges"] == 2
    memory.delete_all(user_id="o'brien")  # a deleted user's entities and relations go with their memories
    assert g.store.counts(BOB) == {"nodes": 0, "edges": 0, "valid_edges": 0, "invalid_edges": 0}
    assert g.store.counts(ALICE)["edges"] == 1
    memory.reset()
    assert g.store.counts()["nodes"] == 0
    memory.close()
