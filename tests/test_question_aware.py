"""The question-aware extractive answerer (no LM): question typing, LOCOMO-style dates resolved against the
session date, a span of the right kind for every question type, the fallback to the extractive answerer when
spaCy is missing, and an answer that is never empty. Hand-built questions and memories only."""

from __future__ import annotations

import warnings
from dataclasses import replace

import pytest
from conftest import HashEmbedder
from omegaconf import OmegaConf

from memtune.optimize.data.locomo import load_locomo, resolve_path
from memtune.optimize.evaluation.evaluate import answer_questions, ingest
from memtune.optimize.evaluation.metrics import f1_set
from memtune.policies.lm import CostMeter
from memtune.policies.metering import metering
from memtune.policies.policy import MemoryPolicy
from memtune.policies.stages import answer as answer_module
from memtune.policies.stages import answer_spans
from memtune.policies.stages.answer import (
    NOT_MENTIONED,
    ExtractiveAnswerer,
    QuestionAwareAnswerer,
    QuestionAwareKnobs,
    question_type,
)
from memtune.policies.stages.answer_dates import parse_timestamp, when_answer
from memtune.policies.stages.answer_typing import QUESTION_TYPES, choice_options, focus_labels, quantity_word
from memtune.policies.stages.decide import ThresholdDecider
from memtune.policies.stages.extract import HeuristicExtractor
from memtune.policies.stages.retrieve import CosineRetriever
from memtune.policies.stages.summarize import NoSummarizer
from memtune.policies.store.store import MemoryStore
from memtune.policies.types import MemoryRecord, Scope

SAID = "1:56 pm on 8 May, 2023"  # a Monday
ROOT = resolve_path("data/fixture/fixture.json").parents[2]


def memory(text: str, timestamp: str = SAID, turn: str = "D1:1") -> MemoryRecord:
    return MemoryRecord(id=text[:12], text=text, scope=Scope(), provenance=(turn,), timestamp=timestamp)


def ask(question: str, *texts: str, **knobs) -> str:
    return QuestionAwareAnswerer(**knobs).answer(question, [memory(t) for t in texts])


@pytest.mark.parametrize(
    "question, kind",
    [
        ("When did Caroline go to the LGBTQ support group?", "when"),
        ("In what year did John get his dog?", "when"),
        ("Where did Caroline move from 4 years ago?", "where"),
        ("Who supports Caroline when she has a negative experience?", "who"),
        ("Whose birthday did Melanie celebrate recently?", "who"),
        ("How many children does Melanie have?", "quantity"),
        ("How much did the tickets cost?", "quantity"),
        ("How long has Caroline had her current group of friends for?", "quantity"),
        ("How often does John work out with his family?", "quantity"),
        ("What did the charity race raise awareness for?", "what"),
        ("According to Gina, what makes Jon a perfect mentor?", "what"),
        ("Which city have both Jean and John visited?", "which"),
        ("Did Melanie make the black and white bowl in the photo?", "yes_no"),
        ("Would Caroline be considered religious?", "yes_no"),
        ("Is it likely that Nate has friends besides Joanna?", "yes_no"),
        ("Why did Jon shut down his bank account?", "why"),
        ("How did Melanie feel after the accident?", "how"),
        ("Tell me about Melanie.", "other"),
        ("", "other"),
    ],
)
def test_question_type(question, kind):
    assert question_type(question) == kind
    assert kind in QUESTION_TYPES


@pytest.mark.parametrize(
    "text, locomo, absolute",
    [
        ("I went to a LGBTQ support group yesterday.", "7 May 2023", "7 May 2023"),
        ("We had dinner last night.", "7 May 2023", "7 May 2023"),
        ("I went to a conference two days ago.", "6 May 2023", "6 May 2023"),
        ("I'll come over tomorrow.", "9 May 2023", "9 May 2023"),
        ("I told the school about it last week.", "the week before 8 May 2023", "1 May 2023"),
        ("Last Fri I took my kids to a pottery workshop.", "the Friday before 8 May 2023", "5 May 2023"),
        ("I joined a mentorship program last weekend.", "the weekend before 8 May 2023", "6 May 2023"),
        ("We went camping two weekends ago.", "two weekends before 8 May 2023", "24 April 2023"),
        ("I'm hosting a party two weekends later.", "the weekend after 8 May 2023", "22 May 2023"),
        ("I went to a convention last month.", "April 2023", "April 2023"),
        ("I'm going to a conference this month.", "May 2023", "May 2023"),
        ("We're putting on a talent show next month.", "June 2023", "June 2023"),
        ("We had a blast last year at the Pride fest.", "2022", "2022"),
        ("A friend made it for my 18th birthday ten years ago.", "2013", "2013"),
        ("Max and I went camping last summer.", "the summer of 2022", "the summer of 2022"),
        ("We got Max in 2013.", "2013", "2013"),
        ("We met on May 3, 2023 at the gym.", "3 May 2023", "3 May 2023"),
        ("My online store is open!", "8 May 2023", "8 May 2023"),  # no time named: the session date
        ("I'm working in marketing now.", "8 May 2023", "8 May 2023"),  # "mar..." is not March
    ],
)
def test_when_answer_resolves_the_time_the_text_names_against_its_session_date(text, locomo, absolute):
    assert when_answer(text, SAID, "locomo") == locomo
    assert when_answer(text, SAID, "absolute") == absolute
    assert when_answer(text, SAID, "session") == "8 May 2023"


def test_when_answer_reads_iso_timestamps_and_keeps_an_unparseable_one():
    assert parse_timestamp("2023-05-08T13:56:00") == parse_timestamp(SAID)
    assert when_answer("I went there yesterday.", "2023-05-08T13:56:00") == "7 May 2023"
    assert when_answer("I went there yesterday.", "sometime") == "sometime"
    assert when_answer("My store is open!", SAID, undated="month") == "May 2023"
    with pytest.raises(ValueError, match="date_format"):
        when_answer("x", SAID, "iso")


def test_when_question_answers_the_resolved_date_of_the_matching_memory():
    answer = ask(
        "When did Caroline go to the LGBTQ support group?",
        "Melanie: I painted a lake sunrise last year.",
        "Caroline: I went to a LGBTQ support group yesterday and it was so powerful.",
    )
    assert answer == "7 May 2023"  # f1 1.0 against LOCOMO's gold "7 May 2023"


def test_when_question_borrows_the_time_named_in_the_same_turn():
    memories = [
        memory("Nate: I went to a game convention and met new people.", turn="D9:3"),
        memory("Joanna: My laptop crashed last week.", turn="D9:4"),
        memory("Nate: Something exciting happened last Friday.", turn="D9:3"),
    ]
    question = "When did Nate go to a convention and meet new people?"
    assert QuestionAwareAnswerer().answer(question, memories) == "the Friday before 8 May 2023"
    alone = QuestionAwareAnswerer(same_turn=False, dated_bonus=0.0).answer(question, memories)
    assert alone == "8 May 2023"  # the convention memory itself names no time: its session date


@pytest.mark.parametrize(
    "question, texts, expected",
    [
        ("Where did Caroline move from?", ["Caroline: I moved here from Sweden four years ago."], "Sweden"),
        ("Who performed at the concert?", ["Melanie: Matt Patterson performed at the concert, amazing."], "Matt"),
        ("Who gave Maria's family money?", ["Maria: My aunt gave my family money when times were tough."], "aunt"),
        ("How long has Melanie been practicing art?", ["Melanie: I have been painting for seven years now."], "seven"),
        ("How often does John work out?", ["John: We work out three times a week; it keeps us on track."], "three"),
        ("How many kids does Melanie have?", ["Melanie: I have three kids and they keep me busy."], "three"),
        ("What book did Melanie read as a kid?", ['Melanie: I loved reading "Charlotte\'s Web" as a kid.'], "Charl"),
        ("Which city did Jon visit?", ["Jon: I've been to Paris yesterday, it was lovely."], "Paris"),
        ("What did Maria donate to the shelter?", ["Maria: I donated my old car to a homeless shelter."], "old car"),
        ("What kind of flooring is Jon looking for?", ["Jon: I'm after Marley flooring for the studio."], "Marley"),
        ("Why did Jon take a trip to Rome?", ["Jon: Took a short trip to Rome to clear my mind a little."], "clear"),
        ("Did Melanie make the bowl?", ["Melanie: I made this bowl in my pottery class."], "Yes"),
        ("Would Melanie prefer a national park or a theme park?", ["Melanie: We love the national park."], "national"),
    ],
)
def test_each_question_type_gets_a_span_of_its_kind(question, texts, expected):
    answer = ask(question, *texts)
    assert answer.startswith(expected), answer
    assert len(answer.split()) <= QuestionAwareKnobs().max_words


def test_how_question_answers_the_describing_adjective():
    assert "touched" in ask("How did Joanna feel about the letter?", "Joanna: The letter made me feel so touched.")


def test_the_answer_comes_from_the_memory_that_matches_the_question_not_only_the_top_one():
    answer = ask(
        "What book did Melanie read as a kid?",
        "Melanie: I went camping with the kids last week.",
        'Melanie: I loved reading "Charlotte\'s Web" as a kid.',
    )
    assert answer.startswith("Charlotte's Web")


def test_either_or_picks_the_option_the_memories_mention():
    question = "Does John live close to a beach or the mountains?"
    assert choice_options(question) == ("beach", "mountains")
    assert ask(question, "John: We walk to the beach every morning.") == "beach"
    assert ask(question, "John: The mountains are right behind our house.") == "mountains"
    assert choice_options("Was September good for Nate? Answer yes or no.") is None
    assert ask(question, "John: The mountains are right behind our house.", choices=False) == "Yes"


def test_yes_no_rules():
    question = "Would Caroline move back to her home country soon?"
    text = "Caroline: I would not move back, I'm adopting here."
    assert ask(question, text) == "Yes"
    assert ask(question, text, yes_no="likely_yes") == "Likely yes"
    assert ask(question, text, yes_no="negation") == "No"
    assert ask(question, "Caroline: I miss Sweden a lot.", yes_no="negation") == "Yes"


def test_question_helpers():
    assert quantity_word("How long ago was Caroline's 18th birthday?") == "ago"
    assert quantity_word("How many tournaments has Nate won?") == "many"
    assert quantity_word("What did Nate win?") == ""
    assert "WORK_OF_ART" in focus_labels("What book did Caroline recommend?")
    assert "GPE" in focus_labels("Which cities has Jon visited?")
    assert "PERSON" in focus_labels("What are Melanie's pets' names?")
    assert focus_labels("What did Melanie paint?") == ()


def test_no_memories_is_not_mentioned_and_the_answer_is_never_empty():
    answerer = QuestionAwareAnswerer()
    questions = [
        "When did it happen?",
        "Where is it?",
        "Who is it?",
        "How many are there?",
        "What is it?",
        "Which one?",
        "Is it?",
        "Why?",
        "How?",
        "?",
        "",
    ]
    odd = [
        [memory("")],
        [memory("Caroline: ")],
        [memory("ok", timestamp="")],
        [memory("the and of a", timestamp="")],
        [memory("[shares a photo of: a photo of]")],
        [memory("What is it? Where? Who? How many?")],
    ]
    for question in questions:
        assert answerer.answer(question, []) == NOT_MENTIONED
        for memories in odd:
            answer = answerer.answer(question, memories)
            assert answer.strip(), (question, memories[0].text)


def test_without_spacy_entity_questions_fall_back_to_the_extractive_span(monkeypatch):
    monkeypatch.setattr(answer_module, "load_nlp", lambda: None)
    monkeypatch.setattr(answer_module, "_WARNED", [])
    memories = [memory("Maria: I donated my old car to a homeless shelter."), memory("Maria: I love my dog.")]
    question = "What did Maria donate to the shelter?"
    extractive = ExtractiveAnswerer(max_words=6).answer(question, memories)
    with pytest.warns(UserWarning, match="spaCy"):
        assert QuestionAwareAnswerer().answer(question, memories) == extractive
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per process, not per question
        assert QuestionAwareAnswerer().answer(question, memories) == extractive
        # the types that need no entities still get their typed answer
        when = QuestionAwareAnswerer().answer("When did Maria donate her car?", memories)
        assert when == "8 May 2023"
        assert QuestionAwareAnswerer().answer("Did Maria donate her car?", memories) == "Yes"


def test_use_entities_off_is_the_extractive_span_for_entity_questions():
    memories = [memory("Jon: I've been to Paris yesterday, it was lovely.")]
    question = "Which city did Jon visit?"
    expected = ExtractiveAnswerer(max_words=6).answer(question, memories)
    assert QuestionAwareAnswerer(use_entities=False).answer(question, memories) == expected


def test_spans_never_return_only_the_question_words():
    asked = answer_spans.content_stems("What did Maria donate to the homeless shelter?")
    for span, fit in answer_spans.spans("what", "I donated to a homeless shelter.", asked):
        assert answer_spans.content_stems(span) - asked, span
        assert 0 <= fit <= 1


def test_the_answer_is_timed_once_per_question():
    meter = CostMeter()
    with metering(meter):
        QuestionAwareAnswerer().answer("What is it?", [memory("Caroline: ok")])  # falls back
        QuestionAwareAnswerer().answer("When was it?", [memory("Caroline: ok")])
    assert meter.phases["answer"].steps == 2


@pytest.mark.parametrize(
    "knobs, match",
    [
        ({"date_format": "iso"}, "date_format"),
        ({"yes_no": "maybe"}, "yes_no"),
        ({"undated": "week"}, "undated"),
        ({"max_words": 0}, "max_words"),
        ({"pool": 0}, "pool"),
        ({"join": 0}, "join"),
    ],
)
def test_bad_knobs_fail_with_the_knob_named(knobs, match):
    with pytest.raises(ValueError, match=match):
        QuestionAwareAnswerer(**knobs)


def test_the_conf_variant_builds_the_dataclass_defaults():
    from hydra.utils import instantiate

    cfg = OmegaConf.load(ROOT / "conf" / "policy" / "answerer" / "question_aware.yaml")
    built = instantiate(cfg)
    assert isinstance(built, QuestionAwareAnswerer)
    assert built.knobs == QuestionAwareKnobs()  # the yaml states the measured defaults, no drift


def test_the_per_question_frame_has_the_question_type(tmp_path):
    conversation = load_locomo(resolve_path("data/fixture/fixture.json")).conversations[0]
    conversation = replace(conversation, questions=conversation.questions[:8])
    embedder = HashEmbedder()
    policy = MemoryPolicy(
        HeuristicExtractor(),
        NoSummarizer(),
        ThresholdDecider(),
        CosineRetriever(top_k=8),
        QuestionAwareAnswerer(),
        embedder,
        MemoryStore(tmp_path / "store", embedder.dim, embedder.id),
    )
    ingest(policy, conversation, progress=False)
    rows = answer_questions(policy, conversation, progress=False)
    assert [r["question_type"] for r in rows] == [question_type(q.question) for q in conversation.questions]
    assert all(r["prediction"].strip() for r in rows)
    assert all(0 <= f1_set(r["prediction"], r["answer"]) <= 1 for r in rows)


def test_the_answerer_search_space_builds_valid_answerers_and_only_answer_objectives_sample_it():
    import dataclasses

    import optuna
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from memtune.optimize.sweep.knob_deps import restrict
    from memtune.optimize.sweep.scoring import Objective
    from memtune.optimize.sweep.search_space import SearchSpace

    space = SearchSpace.from_config(OmegaConf.load(ROOT / "conf" / "search_space" / "answerer.yaml"))
    fields = {f.name for f in dataclasses.fields(QuestionAwareKnobs)}
    assert {k.target.removeprefix("policy.answerer.") for k in space.knobs[1:]} <= fields
    with pytest.raises(ValueError, match="none of its knobs"):  # recall cannot move with the answerer
        restrict(space, [Objective("evidence_recall", "scores.overall.evidence_recall", "maximize")])
    assert restrict(space, [Objective("f1", "scores.overall.f1", "maximize")])[1] == {}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    built = set()
    for _ in range(12):
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose(config_name="eval", overrides=space.suggest(study.ask()))  # as a sweep trial composes it
        answerer = instantiate(cfg.policy.answerer)
        built.add(type(answerer).__name__)
        assert answerer.answer("When did Caroline go?", [memory("Caroline: I went yesterday.")]).strip()
    assert built == {"ExtractiveAnswerer", "QuestionAwareAnswerer"}
