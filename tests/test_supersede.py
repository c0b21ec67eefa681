"""Offline supersede (threshold decider, `supersede=true`): slot reading, the decider's rules on hand-built
neighbours, and hand-built conversations through the whole policy (heuristic extractor, MiniLM, LanceDB) under soft
and hard invalidation: moves, a job change, a new pet, a diet stopped, restatements in other words, unrelated facts
and two people with the same attribute, which must not supersede each other."""

from __future__ import annotations

from collections import Counter

import pytest

from memtune.policies.embed.minilm import MiniLMEmbedder
from memtune.policies.policy import MemoryPolicy
from memtune.policies.stages.answer import ExtractiveAnswerer
from memtune.policies.stages.decide import DecisionKnobs, ThresholdDecider
from memtune.policies.stages.extract import HeuristicExtractor
from memtune.policies.stages.retrieve import CosineRetriever
from memtune.policies.stages.slots import contradicts, relation, slot_of
from memtune.policies.stages.summarize import NoSummarizer
from memtune.policies.stages.supersede import slot_decisions
from memtune.policies.store.store import MemoryStore
from memtune.policies.types import Fact, MemoryRecord, Message, Scope

SCOPE = Scope("conv-1")


# ---- slots ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, subject, attribute, value, negated",
    [
        ("Alice: I live in Porto now", "alice", "home", {"porto"}, False),
        ("Alice: Porto is my home these days", "alice", "home", {"porto"}, False),
        ("Alice: I moved to Porto last month and I love it", "alice", "home", {"porto"}, False),
        ("Alice: My brother lives in Rome", "alice's brother", "home", {"rome"}, False),
        ("Alice: Bob moved to Rome", "bob", "home", {"rome"}, False),
        ("Alice: I don't live in Lisbon anymore", "alice", "home", {"lisbon"}, True),
        ("Alice: I used to live in Lisbon", "alice", "home", {"lisbon"}, True),
        ("Alice: I work at Acme as a designer", "alice", "employer", {"acme"}, False),
        ("Alice: I started a new job at Globex", "alice", "employer", {"globex"}, False),
        ("Alice: I just joined Quartz Labs!", "alice", "employer", {"quartz", "lab"}, False),
        ("Alice: Dana's employer is Redwood Bank", "dana", "employer", {"redwood", "bank"}, False),
        ("Alice: I work as a high school teacher", "alice", "job", {"high", "school", "teacher"}, False),
        ("Alice: I've switched careers: I'm an urban planner now", "alice", "job", {"urban", "planner"}, False),
        ("Alice: I'm now a nurse", "alice", "job", {"nurse"}, False),
        ("Carol: We adopted a cat named Luna", "carol", "pet", {"cat", "luna"}, False),
        ("Carol: My sister Dana has a golden retriever", "dana", "pet", {"golden", "retriever"}, False),
        ("Carol: Our cat Luna passed away", "carol", "pet", {"cat", "luna"}, True),
        ("Bob: I'm a strict vegetarian now", "bob", "diet", {"vegetarian"}, False),
        ("Bob: I stopped being vegetarian", "bob", "diet", {"vegetarian"}, True),
        ("Bob: I eat meat again", "bob", "diet", {"vegetarian"}, True),  # eating meat: not vegetarian
        ("Bob: I don't eat meat", "bob", "diet", {"vegetarian"}, False),
        ("Dan: I bike to work every day", "dan", "commute", {"bike"}, False),
        ("Dan: I commute by bike", "dan", "commute", {"bike"}, False),
        ("Dan: I take the bus to work", "dan", "commute", {"bus"}, False),
        ("Dan: I drive a Honda Civic", "dan", "car", {"honda", "civic"}, False),
        ("Eve: I'm dating Tom", "eve", "relationship", {"tom"}, False),
        ("Eve: I broke up with Tom", "eve", "relationship", {"tom"}, True),
        ("Eve: My girlfriend is Sara", "eve", "relationship", {"sara"}, False),
        ("Melanie: Caroline, my favorite book is Dune", "melanie", "favourite book", {"dune"}, False),
        ("Jon: I quit smoking", "jon", "smoking", {"smoke"}, True),
        ("Jon: I gave up the vegan diet and eat keto now", "jon", "diet", {"keto"}, False),
        ("Jon: I left Lisbon and moved to Porto", "jon", "home", {"porto"}, False),
        ("Jon: I've taken up rowing", "jon", "exercise", {"rowing"}, False),
        ("Jon: I've taken up pottery", "jon", "hobby", {"pottery"}, False),
        ("Jon: I'm in a relationship these days", "jon", "relationship", {"relationship"}, False),
        ("Jon: Change of plans: I'm going to Peru instead of Japan", "jon", "plan", {"peru"}, False),
    ],
)
def test_slot_of(text, subject, attribute, value, negated):
    slot = slot_of(text)
    assert slot is not None, text
    assert (slot.subject, slot.attribute, set(slot.value), slot.negated) == (subject, attribute, value, negated)


@pytest.mark.parametrize(
    "text",
    [
        "Alice: I love hiking in the mountains",  # multi-valued: not in the lexicon
        "Alice: So you moved to Porto?",  # second person: who "you" is depends on the listener
        "Nate: I made vegan ice cream for the party",  # a dish, not a diet
        "Nate: Its like a dream come true seeing my dog so happy.",  # mentions a pet, states no ownership
        "Carol: We got another dog",  # another pet: adds, does not replace
        "John: I work as a team with my friends",
        "Caroline: I've been living in my new place for a month",  # no value but "place"
    ],
)
def test_no_slot(text):
    assert slot_of(text) is None


def test_relation_of_two_statements():
    lisbon, porto = slot_of("Alice: I live in Lisbon"), slot_of("Alice: I live in Porto")
    not_lisbon, not_rome = slot_of("Alice: I don't live in Lisbon anymore"), slot_of("Alice: I don't live in Rome")
    river = slot_of("Alice: I live in Lisbon, by the river")
    assert relation(porto, lisbon, 0.5) == "ends" and relation(lisbon, porto, 0.5) == "ends"
    assert relation(river, lisbon, 0.5) == "restates"
    assert relation(not_lisbon, lisbon, 0.5) == "ends"  # a negation ends the value it negates ...
    assert relation(not_rome, lisbon, 0.5) is None  # ... and no other
    assert relation(porto, not_lisbon, 0.5) == "ends"
    assert relation(slot_of("Bob: I live in Porto"), lisbon, 0.5) is None  # another person
    assert relation(slot_of("Alice: I work at Acme in Lisbon"), lisbon, 0.5) is None  # another attribute
    assert contradicts(lisbon, porto, 0.5) and not contradicts(lisbon, river, 0.5)
    two = slot_of("Dan: I drive a Honda Civic")
    assert relation(slot_of("Dan: I drive a Honda"), two, 0.5) == "restates"  # 1 of min(1, 2) words
    assert relation(slot_of("Dan: I drive a Honda"), two, 1.0) == "restates"
    assert relation(slot_of("Dan: I drive a Honda Jazz"), two, 0.6) == "ends"  # 1 of 2 words < 0.6


# ---- the decider on hand-built neighbours -------------------------------------------------------------------------
def mem(mid: str, text: str, score: float) -> MemoryRecord:
    return MemoryRecord(mid, text, SCOPE, score=score)


def decide(fact: str, neighbours: list[MemoryRecord], **knobs):
    d = ThresholdDecider(supersede=True, **knobs)
    return d.decide([Fact(fact, ("D2:1",), "2 June 2023")], [neighbours]), d.supersede_stats


def test_decider_supersedes_restates_and_leaves_others_alone():
    ops, _ = decide("Alice: I moved to Porto", [mem("m1", "Alice: I live in Lisbon", 0.75)])
    assert [(d.op, d.target, d.supersedes, d.merge) for d in ops] == [("UPDATE", "m1", (), False)]
    ops, _ = decide("Alice: Porto is my home now", [mem("m1", "Alice: I live in Porto", 0.74)])
    assert [(d.op, d.target) for d in ops] == [("NOOP", "m1")]  # a restatement, below the cosine NOOP cut-off
    # two stale memories of one slot: the most similar is the target, the other is superseded with it
    ops, stats = decide(
        "Alice: I moved to Porto",
        [mem("m1", "Alice: I live in Lisbon", 0.75), mem("m2", "Alice: I moved to Faro", 0.7)],
    )
    assert [(d.op, d.target, d.supersedes) for d in ops] == [("UPDATE", "m1", ("m2",))]
    assert stats["superseded"] == 2
    # restates one, ends another: NOOP the first, DELETE (soft: invalidate) the second
    ops, _ = decide(
        "Alice: I live in Porto", [mem("m1", "Alice: Porto is my home", 0.8), mem("m2", "Alice: I live in Faro", 0.7)]
    )
    assert [(d.op, d.target) for d in ops] == [("NOOP", "m1"), ("DELETE", "m2")]


def test_decider_never_touches_another_person_or_another_slot():
    # the plain cosine rule would UPDATE these (>= 0.85): supersede mode refuses
    ops, stats = decide("Bob: I live in Lisbon", [mem("a1", "Alice: I live in Lisbon", 0.97)])
    assert [d.op for d in ops] == ["ADD"] and stats["other_subject_skipped"] == 1
    ops, _ = decide("Alice: I work in Lisbon", [mem("a1", "Alice: I live in Lisbon", 0.905)])
    assert [d.op for d in ops] == ["ADD"]
    ops, _ = decide("Alice: I don't live in Rome", [mem("a1", "Alice: I live in Lisbon", 0.9)])
    assert [d.op for d in ops] == ["ADD"]  # negates another value: Lisbon still holds
    # below the slot cut-off a slot-mate is not compared (and not the cosine rule's either)
    ops, _ = decide("Alice: I moved to Porto", [mem("m1", "Alice: I live in Lisbon", 0.35)], slot_threshold=0.4)
    assert [d.op for d in ops] == ["ADD"]
    # facts without a slot keep the cosine rule, within one person
    ops, _ = decide("Alice: I love hiking a lot", [mem("m1", "Alice: I love hiking", 0.9)])
    assert [(d.op, d.target) for d in ops] == [("UPDATE", "m1")]
    ops, _ = decide("Alice: I love hiking a lot", [mem("m1", "Bob: I love hiking a lot", 0.99)])
    assert [d.op for d in ops] == ["ADD"]


def test_supersede_off_is_the_plain_threshold_decider():
    d = ThresholdDecider()
    ops = d.decide([Fact("Bob: I live in Lisbon")], [[mem("a1", "Alice: I live in Lisbon", 0.97)]])
    assert [(o.op, o.target) for o in ops] == [("NOOP", "a1")]
    stats: Counter = Counter()
    assert slot_decisions(Fact("Alice: I love hiking"), [], DecisionKnobs(), stats) == ([], [])


@pytest.mark.parametrize(
    "knobs, words",
    [
        ({"invalidation": "sometimes"}, "invalidation must be one of"),
        ({"slot_threshold": 1.5}, "slot_threshold"),
        ({"restate_threshold": 0}, "restate_threshold"),
    ],
)
def test_bad_knobs_are_refused(knobs, words):
    with pytest.raises(ValueError, match=words):
        ThresholdDecider(**knobs)


# ---- whole conversations through the policy -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm():
    return MiniLMEmbedder()


def make_policy(tmp_path, minilm, invalidation="soft", supersede=True, name="s") -> MemoryPolicy:
    store = MemoryStore(tmp_path / name, dim=minilm.dim, embedder_id=minilm.id, compact_every=0)
    return MemoryPolicy(
        HeuristicExtractor(min_words=3),
        NoSummarizer(),
        ThresholdDecider(supersede=supersede, invalidation=invalidation),
        CosineRetriever(top_k=5),
        ExtractiveAnswerer(),
        minilm,
        store,
    )


def say(policy: MemoryPolicy, lines: list[tuple[str, str]], session: int = 1) -> list:
    """Feed (speaker, text) turns one at a time; dia_ids D<session>:<n>, timestamp '<session> May 2023'."""
    events = []
    for n, (speaker, text) in enumerate(lines, 1):
        events += policy.add([Message(speaker, text, f"D{session}:{n}", f"{session} May 2023")], SCOPE)
    return events


def texts(policy: MemoryPolicy, invalid: bool = False) -> set[str]:
    return {m.text for m in policy.store.get_all(SCOPE, include_invalid=True) if m.valid != invalid}


CASES = {  # name: (first session, second session, valid after, superseded after)
    "move": (
        [("Alice", "I live in Lisbon.")],
        [("Alice", "I moved to Porto last month.")],
        {"Alice: I moved to Porto last month."},
        {"Alice: I live in Lisbon."},
    ),
    "employer change": (
        [("Alice", "I work at Acme as a designer.")],
        [("Alice", "I started a new job at Globex.")],
        {"Alice: I started a new job at Globex."},
        {"Alice: I work at Acme as a designer."},
    ),
    "job change": (
        [("Bob", "I work as a nurse at the city hospital.")],
        [("Bob", "I just started a new job as an architect!")],
        {"Bob: I just started a new job as an architect!"},
        {"Bob: I work as a nurse at the city hospital."},
    ),
    "new pet": (
        [("Carol", "We adopted a cat named Luna.")],
        [("Carol", "Sadly our cat Luna passed away.")],
        {"Carol: Sadly our cat Luna passed away."},
        {"Carol: We adopted a cat named Luna."},
    ),
    "diet stopped": (
        [("Bob", "I am vegetarian these days.")],
        [("Bob", "I stopped being vegetarian.")],
        {"Bob: I stopped being vegetarian."},
        {"Bob: I am vegetarian these days."},
    ),
    "commute": (
        [("Dan", "I bike to work every day.")],
        [("Dan", "I take the bus to work now.")],
        {"Dan: I take the bus to work now."},
        {"Dan: I bike to work every day."},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_changed_fact_supersedes_the_old_one_soft(tmp_path, minilm, case):
    first, second, valid, superseded = CASES[case]
    policy = make_policy(tmp_path, minilm)
    say(policy, first, 1)
    events = say(policy, second, 2)
    assert texts(policy) == valid and texts(policy, invalid=True) == superseded
    (old,) = [m for m in policy.store.get_all(SCOPE, include_invalid=True) if not m.valid]
    (new,) = policy.store.get_all(SCOPE)
    assert old.superseded_by == new.id and old.invalid_at == "2 May 2023"  # when the new fact was said
    assert [(e.op, e.memory_id, e.superseded_by) for e in events] == [
        ("ADD", new.id, ""),
        ("INVALIDATE", old.id, new.id),
    ]
    assert policy.invalidated == 1 and policy.op_counts["UPDATE"] == 1
    # search returns the current fact only; with history, both (the old one marked)
    question = {"move": "Where does Alice live?", "employer change": "Where does Alice work?"}.get(case, second[0][1])
    assert [m.id for m in policy.search(question, SCOPE)] == [new.id]
    assert {m.id for m in policy.store.search(minilm.embed([question])[0], SCOPE, 5, include_invalid=True)} == {
        old.id,
        new.id,
    }


@pytest.mark.parametrize("case", ["move", "diet stopped"])
def test_hard_invalidation_overwrites_as_mem0_does(tmp_path, minilm, case):
    first, second, valid, superseded = CASES[case]
    policy = make_policy(tmp_path, minilm, invalidation="hard")
    say(policy, first, 1)
    say(policy, second, 2)
    (memory,) = policy.store.get_all(SCOPE, include_invalid=True)
    assert {memory.text} == valid and memory.valid and memory.provenance == ("D2:1",)
    assert [h["op"] for h in policy.store.history(memory.id)] == ["ADD", "UPDATE"]
    assert policy.store.history(memory.id)[1]["old_text"] in superseded and policy.invalidated == 0


def test_restatements_in_other_words_are_stored_once(tmp_path, minilm):
    policy = make_policy(tmp_path, minilm)
    say(policy, [("Alice", "I live in Porto now."), ("Bob", "I work at Globex as an engineer.")], 1)
    events = say(
        policy,
        [
            ("Alice", "Porto is my home these days."),
            ("Bob", "My job is at Globex, I build engines."),
            ("Alice", "I still live in Porto, by the river."),
        ],
        2,
    )
    assert [e.op for e in events] == ["NOOP", "NOOP", "NOOP"]
    assert texts(policy) == {"Alice: I live in Porto now.", "Bob: I work at Globex as an engineer."}
    assert texts(policy, invalid=True) == set()


def test_unrelated_facts_and_two_people_do_not_supersede_each_other(tmp_path, minilm):
    policy = make_policy(tmp_path, minilm)
    say(
        policy,
        [
            ("Alice", "I live in Lisbon."),
            ("Alice", "I work in Lisbon at a bank."),  # another attribute, same city: cosine 0.9
            ("Alice", "I love hiking in the mountains."),
            ("Bob", "I live in Lisbon too."),  # another person, same attribute and value
            ("Bob", "My sister lives in Rome."),  # another subject of Bob's
        ],
    )
    assert len(texts(policy)) == 5 and texts(policy, invalid=True) == set()
    say(policy, [("Bob", "I moved to Porto last week.")], 2)
    assert texts(policy, invalid=True) == {"Bob: I live in Lisbon too."}  # Bob's home only
    assert "Alice: I live in Lisbon." in texts(policy) and "Bob: My sister lives in Rome." in texts(policy)


def test_without_supersede_the_old_home_stays_current(tmp_path, minilm):
    """Today's threshold decider (supersede off): the move is ADDed beside the old home, which stays valid."""
    policy = make_policy(tmp_path, minilm, supersede=False)
    say(policy, [("Alice", "I live in Lisbon."), ("Bob", "I live in Lisbon too.")])
    say(policy, [("Alice", "I moved to Porto last month.")], 2)
    assert texts(policy) == {
        "Alice: I live in Lisbon.",
        "Bob: I live in Lisbon too.",
        "Alice: I moved to Porto last month.",
    }
    assert policy.op_counts == {"ADD": 3, "UPDATE": 0, "DELETE": 0, "NOOP": 0} and policy.invalidated == 0
