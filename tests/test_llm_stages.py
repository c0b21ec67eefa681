"""LLM stages driven by DSPy's DummyLM: parsing, every decider op applied to the store, hallucinated ids,
and malformed output retried, then recorded and skipped."""

from __future__ import annotations

import json

import pytest
from dspy.utils.dummies import DummyLM

from memtune.policies.policy import MemoryPolicy
from memtune.policies.stages.answer import ExtractiveAnswerer, LLMAnswerer
from memtune.policies.stages.decide import LLMDecider, ThresholdDecider
from memtune.policies.stages.extract import HeuristicExtractor, LLMExtractor
from memtune.policies.stages.retrieve import CosineRetriever
from memtune.policies.stages.summarize import LLMSummarizer, NoSummarizer
from memtune.policies.types import Message, Scope

ALICE = Scope(user_id="alice")


def ops(*items):
    return {"operations": json.dumps(list(items))}


def make_policy(store, embedder, answers, extractor=None, decider=None, summarizer=None, answerer=None):
    lm = DummyLM(answers)
    return MemoryPolicy(
        extractor=extractor or LLMExtractor(),
        summarizer=summarizer or NoSummarizer(),
        decider=decider or LLMDecider(),
        retriever=CosineRetriever(top_k=5),
        answerer=answerer or LLMAnswerer(),
        embedder=embedder,
        store=store,
        lm=lm,
    ), lm


PAIR = [
    Message("Melanie", "I ran a charity race for mental health last Saturday.", "D1:1", "20 May 2023"),
    Message("Caroline", "That's great! I live in Boston now.", "D1:2", "20 May 2023"),
]


def facts(*items):
    """The extractor's answer: (fact, sources) pairs, sources the numbers of the new messages as shown."""
    return {"facts": json.dumps([{"fact": f, "sources": src} for f, src in items])}


def test_llm_extractor_cites_the_message_each_fact_came_from(store, embedder):
    policy, lm = make_policy(
        store,
        embedder,
        [
            facts(("Melanie ran a charity race on 13 May 2023", [1]), ("Caroline lives in Boston", [2])),
            ops(
                {"event": "ADD", "text": "Melanie ran a charity race on 13 May 2023"},
                {"event": "ADD", "text": "Caroline lives in Boston"},
            ),
        ],
    )
    events = policy.add(PAIR, ALICE)
    assert [e.op for e in events] == ["ADD", "ADD"]
    stored = {m.text: m for m in store.get_all(ALICE)}
    assert set(stored) == {"Melanie ran a charity race on 13 May 2023", "Caroline lives in Boston"}
    # Caroline's fact cites Caroline's turn only (not Melanie's), and the decider kept each fact's own source
    assert stored["Caroline lives in Boston"].provenance == ("D1:2",)
    assert stored["Melanie ran a charity race on 13 May 2023"].provenance == ("D1:1",)
    assert stored["Caroline lives in Boston"].timestamp == "20 May 2023"
    assert policy.extractor.sources.as_dict() == {"items": 2, "fallbacks": 0, "dropped": 0}
    # the extraction prompt carried the new messages, numbered, with their timestamps
    prompt = json.dumps(lm.history[0]["messages"])
    assert "1. [20 May 2023] Melanie: I ran a charity race" in prompt
    assert "2. [20 May 2023] Caroline: That's great!" in prompt
    assert policy.meter.phases["extract"].calls == 1 and policy.meter.phases["decide"].calls == 1


@pytest.mark.parametrize(
    ("sources", "cited", "fallbacks", "dropped"),
    [
        ([2], ("D1:2",), 0, 0),
        ([1, 2, 2], ("D1:1", "D1:2"), 0, 0),  # both turns, de-duplicated
        (["2"], ("D1:2",), 0, 0),  # a digit string is a number
        (["D1:2"], ("D1:2",), 0, 0),  # the dia_id of a shown message is accepted too
        ([2, 3], ("D1:2",), 0, 1),  # 3: no such new message -> dropped, the valid one kept
        ([0, -1, "D9:9", "x"], ("D1:1", "D1:2"), 1, 4),  # none valid -> the whole pair, counted
        ([], ("D1:1", "D1:2"), 1, 0),  # none given -> the whole pair, counted
        (None, ("D1:1", "D1:2"), 1, 0),
    ],
)
def test_llm_extractor_validates_sources(store, embedder, sources, cited, fallbacks, dropped):
    answer = {"facts": json.dumps([{"fact": "Caroline lives in Boston", "sources": sources}])}
    policy, _ = make_policy(store, embedder, [answer, ops({"event": "ADD", "text": "Caroline lives in Boston"})])
    policy.add(PAIR, ALICE)
    (memory,) = store.get_all(ALICE)
    assert memory.provenance == cited
    assert policy.extractor.sources.as_dict() == {"items": 1, "fallbacks": fallbacks, "dropped": dropped}


def test_llm_extractor_fact_without_sources_falls_back_to_the_pair_and_is_counted(store, embedder):
    answer = {"facts": json.dumps([{"fact": "Melanie ran a race"}, "Caroline lives in Boston"])}  # no sources
    policy, _ = make_policy(
        store,
        embedder,
        [
            answer,
            ops({"event": "ADD", "text": "Melanie ran a race"}, {"event": "ADD", "text": "Caroline lives in Boston"}),
        ],
    )
    policy.add(PAIR, ALICE)
    assert {m.provenance for m in store.get_all(ALICE)} == {("D1:1", "D1:2")}
    assert policy.extractor.sources.as_dict() == {"items": 2, "fallbacks": 2, "dropped": 0}


def test_llm_decider_merge_unions_and_rewrite_replaces(store, embedder):
    """UPDATE text keeping every content word of the old memory merges (provenance unions); otherwise it replaces
    (the new fact's provenance only; the old one stays in the history row)."""
    policy, _ = make_policy(
        store,
        embedder,
        [
            facts(("Melanie has a dog", [1])),
            ops({"event": "ADD", "text": "Melanie has a dog"}),
            facts(("Melanie also has a cat", [1])),
            ops({"event": "UPDATE", "id": 0, "text": "Melanie has a dog and a cat"}),  # keeps dog: merge
            facts(("Melanie gave her pets away and now has a bird", [1])),
            ops({"event": "UPDATE", "id": 0, "text": "Melanie has a bird"}),  # drops dog and cat: replace
        ],
    )
    policy.add([Message("Melanie", "I have a dog.", "D1:1")], ALICE)
    policy.add([Message("Melanie", "We got a cat too!", "D2:5")], ALICE)
    (merged,) = store.get_all(ALICE)
    assert merged.text == "Melanie has a dog and a cat" and merged.provenance == ("D1:1", "D2:5")
    policy.add([Message("Melanie", "The pets went to my sister; I have a bird now.", "D3:2")], ALICE)
    (replaced,) = store.get_all(ALICE)
    assert replaced.text == "Melanie has a bird" and replaced.provenance == ("D3:2",)
    history = store.history(replaced.id)
    assert [(h["op"], h["old_provenance"], h["provenance"]) for h in history] == [
        ("ADD", [], ["D1:1"]),
        ("UPDATE", ["D1:1"], ["D1:1", "D2:5"]),
        ("UPDATE", ["D1:1", "D2:5"], ["D3:2"]),
    ]


def test_llm_decider_cites_the_facts_each_operation_restates(store, embedder):
    """One decide call for a pair: each ADD cites the turn of the fact it restates, not both turns."""
    policy, _ = make_policy(
        store,
        embedder,
        [
            facts(("Melanie ran a charity race", [1]), ("Caroline lives in Boston", [2])),
            ops(
                {"event": "ADD", "text": "Melanie ran a charity race"},  # the same text
                {"event": "ADD", "text": "Caroline lives in Boston now"},  # keeps the fact's words
                {"event": "ADD", "text": "Melanie likes races"},  # most shared words: the race fact
                {"event": "ADD", "text": "Something else entirely"},  # no word shared: every fact, counted
            ),
        ],
    )
    policy.add(PAIR, ALICE)
    cited = {m.text: m.provenance for m in store.get_all(ALICE)}
    assert cited == {
        "Melanie ran a charity race": ("D1:1",),
        "Caroline lives in Boston now": ("D1:2",),
        "Melanie likes races": ("D1:1",),
        "Something else entirely": ("D1:1", "D1:2"),
    }
    assert policy.decider.sources.as_dict() == {"items": 4, "fallbacks": 1, "dropped": 0}


def test_llm_decider_applies_every_op_and_ignores_hallucinated_ids(store, embedder):
    seed = [Message("Caroline", "seed", "D1:1", "1 May 2023")]
    policy, _ = make_policy(
        store,
        embedder,
        [
            {"facts": json.dumps(["Caroline lives in Boston", "Caroline has a dog named Rex", "Caroline likes tea"])},
            ops(
                {"event": "ADD", "text": "Caroline lives in Boston"},
                {"event": "ADD", "text": "Caroline has a dog named Rex"},
                {"event": "ADD", "text": "Caroline likes tea"},
            ),
        ],
    )
    policy.add(seed, ALICE)
    ids = {m.text: m.id for m in store.get_all(ALICE)}
    # Second pair: the decider shows the 3 memories as small ints 0..2 in similarity order.
    policy.lm = DummyLM(
        [
            {
                "facts": json.dumps(
                    [
                        "Caroline moved to Denver",
                        "Caroline's dog Rex died",
                        "Caroline likes tea",
                        "Caroline plays chess",
                    ]
                )
            },
        ]
    )
    original, shown = policy.decider.predict, {}

    def scripted(**kwargs):  # reads the small ids the decider shows, then scripts the LM's answer with them
        listed = {m["text"]: m["id"] for m in kwargs["existing_memories"]}
        shown.update(listed)
        policy.lm.answers = iter(
            [
                ops(
                    {"event": "UPDATE", "id": listed["Caroline lives in Boston"], "text": "Caroline lives in Denver"},
                    {"event": "DELETE", "id": listed["Caroline has a dog named Rex"]},
                    {"event": "NOOP", "id": listed["Caroline likes tea"]},
                    {"event": "ADD", "text": "Caroline plays chess"},
                    {"event": "DELETE", "id": 99},  # hallucinated: never shown
                    {"event": "UPDATE", "id": 42, "text": "should never be written"},
                )
            ]
        )
        return original(**kwargs)

    policy.decider.predict = scripted
    events = policy.add([Message("Caroline", "news", "D2:1", "9 Jun 2023")], ALICE)
    assert sorted(e.op for e in events) == ["ADD", "DELETE", "NOOP", "UPDATE"]
    texts = {m.text for m in store.get_all(ALICE)}
    assert texts == {"Caroline lives in Denver", "Caroline likes tea", "Caroline plays chess"}
    assert store.get(ids["Caroline has a dog named Rex"]) is None
    updated = store.get(ids["Caroline lives in Boston"])
    assert updated.text == "Caroline lives in Denver"
    # "lives in Denver" drops "Boston": a replacing UPDATE cites the new turn only; the old one is in the history
    assert updated.provenance == ("D2:1",)
    assert store.history(updated.id)[-1]["old_provenance"] == ["D1:1"]
    assert [h["op"] for h in store.history(ids["Caroline lives in Boston"])] == ["ADD", "UPDATE"]
    assert [h["op"] for h in store.history(ids["Caroline likes tea"])] == ["ADD", "NOOP"]
    assert {r["id"] for r in policy.decider.rejected} == {99, 42}
    assert set(shown.values()) <= set(range(len(shown)))  # only small ints were shown, never real ids
    assert policy.op_counts == {"ADD": 4, "UPDATE": 1, "DELETE": 1, "NOOP": 1}


def test_update_to_the_same_text_is_a_noop(store, embedder):
    policy, _ = make_policy(
        store,
        embedder,
        [
            {"facts": json.dumps(["Caroline lives in Boston"])},
            ops({"event": "ADD", "text": "Caroline lives in Boston"}),
            {"facts": json.dumps(["Caroline lives in Boston"])},
            ops({"event": "UPDATE", "id": 0, "text": " Caroline lives in Boston "}),
        ],
    )
    policy.add([Message("Caroline", "I live in Boston.", "D1:1")], ALICE)
    events = policy.add([Message("Caroline", "Still in Boston!", "D2:1")], ALICE)
    (memory,) = store.get_all(ALICE)
    assert [e.op for e in events] == ["NOOP"]
    assert memory.provenance == ("D1:1",)  # a same-text "update" neither rewrites the memory nor widens its provenance
    assert [h["op"] for h in store.history(memory.id)] == ["ADD", "NOOP"]


def test_malformed_output_is_retried_then_recorded_and_skipped(store, embedder):
    policy, lm = make_policy(
        store,
        embedder,
        [
            {"facts": "not a list"},
            {"facts": "not a list"},  # attempt 1 (chat adapter + JSON fallback)
            {"facts": json.dumps(["Melanie ran a race"])},  # attempt 2 succeeds
            ops({"event": "ADD", "text": "Melanie ran a race"}),
        ],
    )
    assert [e.op for e in policy.add(PAIR, ALICE)] == ["ADD"]
    assert policy.meter.failures == []

    policy.lm = DummyLM([{"facts": "garbage"}] * 6)  # 3 attempts x 2 adapters, all malformed
    assert policy.add(PAIR, ALICE) == []
    [failure] = policy.meter.failures
    assert failure.phase == "extract" and failure.item == "D1:1,D1:2" and failure.attempts == 3
    assert "AdapterParseError" in failure.error
    assert store.count(ALICE) == 1  # nothing lost, nothing added

    # The decider's malformed answer is skipped the same way and the sweep goes on.
    policy.lm = DummyLM([{"facts": json.dumps(["new fact"])}] + [{"operations": "garbage"}] * 6)
    assert policy.add(PAIR, ALICE) == []
    assert [f.phase for f in policy.meter.failures] == ["extract", "decide"]


def test_repeated_failures_stop_the_run_with_a_clear_error(store, embedder):
    policy, _ = make_policy(store, embedder, [{"facts": "garbage"}] * 200)
    policy.meter.max_consecutive_failures = 3
    with pytest.raises(RuntimeError, match="in a row failed"):
        for _ in range(5):
            policy.add(PAIR, ALICE)


def test_llm_summarizer_refreshes_every_window_and_feeds_extraction(store, embedder):
    policy, lm = make_policy(
        store,
        embedder,
        [
            {"facts": "[]"},
            {"summary": "Melanie runs; Caroline lives in Boston."},
            {"facts": "[]"},
        ],
        summarizer=LLMSummarizer(window=2),
    )
    policy.add(PAIR, ALICE)
    assert policy.summary(ALICE) == "Melanie runs; Caroline lives in Boston."
    policy.add([Message("Melanie", "ok", "D1:3")], ALICE)
    assert "Melanie runs; Caroline lives in Boston." in json.dumps(lm.history[-1]["messages"])
    assert policy.meter.phases["summarize"].calls == 1


def test_llm_answerer_sees_memories_with_timestamps(store, embedder):
    policy, lm = make_policy(
        store,
        embedder,
        [
            {"facts": json.dumps(["Melanie ran a charity race"])},
            ops({"event": "ADD", "text": "Melanie ran a charity race"}),
            {"answer": "13 May 2023"},
        ],
    )
    policy.add(PAIR, ALICE)
    answer, memories = policy.answer("When did Melanie run a charity race?", ALICE)
    assert answer == "13 May 2023" and memories[0].text == "Melanie ran a charity race"
    assert '"said_at": "20 May 2023"' in json.dumps(lm.history[-1]["messages"]).replace('\\"', '"')


def test_llm_stage_without_lm_is_a_clear_error(store, embedder):
    with pytest.raises(ValueError, match="need an LM"):
        MemoryPolicy(
            LLMExtractor(),
            NoSummarizer(),
            ThresholdDecider(),
            CosineRetriever(),
            ExtractiveAnswerer(),
            embedder,
            store,
            lm=None,
        )


def test_offline_policy_threshold_decider_noop_update_add(store, embedder):
    policy = MemoryPolicy(
        HeuristicExtractor(),
        NoSummarizer(),
        ThresholdDecider(noop_threshold=0.99, update_threshold=0.7),
        CosineRetriever(top_k=3),
        ExtractiveAnswerer(),
        embedder,
        store,
    )
    msg = Message("Caroline", "I adopted a golden retriever puppy named Rex.", "D1:1", "1 May 2023")
    assert [e.op for e in policy.add([msg], ALICE)] == ["ADD"]
    assert [e.op for e in policy.add([msg], ALICE)] == ["NOOP"]
    changed = Message("Caroline", "I adopted a golden retriever puppy named Max.", "D2:1", "2 May 2023")
    [event] = policy.add([changed], ALICE)
    assert event.op == "UPDATE" and "Max" in event.text and "Rex" in event.old_text
    assert store.count(ALICE) == 1


def test_cost_meter_memory_is_bounded_but_totals_are_exact(monkeypatch):
    from memtune.policies import lm as lm_module
    from memtune.policies.lm import CostMeter

    monkeypatch.setattr(lm_module, "MAX_SAMPLES", 10)
    meter = CostMeter()
    for _ in range(25):
        with meter.timed("search"):
            pass
    phase = meter.as_dict()["phases"]["search"]
    assert phase["steps"] == 25 and len(meter.phases["search"].seconds) <= 10  # a server meters forever
    assert phase["seconds_total"] >= 0 and phase["seconds_p95"] is not None
