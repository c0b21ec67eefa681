"""Slot-first ranking (retriever `slot_rank`): the asked person's asked slot moves to the front, current before
superseded; questions that name no person or no attribute keep the cosine order."""

from __future__ import annotations

import pytest

from memtune.policies.stages.slot_rank import question_slot, slot_first
from memtune.policies.types import MemoryRecord, Scope


@pytest.mark.parametrize(
    "question, slot",
    [
        ("How does Maya get to work now?", ("maya", "commute")),  # not a job: "get to work" wins
        ("Which company does Umar work for now?", ("umar", "employer")),
        ("What does Amara do for a living now?", ("amara", "job")),
        ("Where did Maya live before moving to Porto?", ("maya", "home")),
        ("In May, what pet did Carol have?", ("carol", "pet")),  # a month is not a name
        ("What is Nikhil's hobby now?", ("nikhil", "hobby")),
        ("When did Caroline go to the LGBTQ support group?", None),  # no attribute
        ("Where does the user live?", None),  # no name
    ],
)
def test_question_slot(question, slot):
    assert question_slot(question) == slot


def mem(mid: str, text: str, invalid: str = "") -> MemoryRecord:
    return MemoryRecord(mid, text, Scope("c"), invalid_at=invalid)


def test_the_asked_slot_goes_first_current_before_superseded():
    ranked = [
        mem("chat", "Maya: Oh, nice to hear."),
        mem("job", "Maya works as a chef."),
        mem("old", "Maya: I take the bus to work.", invalid="5 May 2023"),
        mem("bob", "Nikhil commutes to work by train."),
        mem("new", "Maya: I've started commuting by train."),
    ]
    assert [m.id for m in slot_first("How does Maya get to work now?", ranked)] == ["new", "old", "chat", "job", "bob"]
    assert [m.id for m in slot_first("When did Maya last call?", ranked)] == [m.id for m in ranked]
    assert [m.id for m in slot_first("Where does Maya live?", ranked)] == [m.id for m in ranked]  # no home memory


def test_slot_rank_is_a_retriever_knob(tmp_path, embedder):
    from memtune.policies.stages.retrieve import CosineRetriever
    from memtune.policies.store.changes import Change
    from memtune.policies.store.store import MemoryStore

    store = MemoryStore(tmp_path / "s", dim=embedder.dim, embedder_id=embedder.id)
    texts = ["Maya: How does the weather get to work on you now?", "Maya: I commute by bike."]
    store.apply([Change("ADD", t, embedder.embed([t])[0], scope=Scope("c")) for t in texts])
    question = "How does Maya get to work now?"
    vector = embedder.embed([question])[0]
    plain = CosineRetriever(top_k=5).retrieve(question, vector, store, Scope("c"))
    ranked = CosineRetriever(top_k=5, slot_rank=True).retrieve(question, vector, store, Scope("c"))
    assert plain[0].text == texts[0]  # the words of the question win on cosine
    assert [m.text for m in ranked] == [texts[1], texts[0]]
