"""LOCOMO loader: fixture, every quirk, selection, truncation, errors, and the real dev-split numbers."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from memtune.optimize.data import locomo
from memtune.optimize.data import types as D
from memtune.optimize.data.locomo import dev_path, fixture_path, load_locomo, resolve_path
from memtune.optimize.data.types import CATEGORY_NAMES, Dataset, Turn
from memtune.policies.types import Message

QUIRKS = fixture_path().parent / "quirks.json"
DEV_IDS = ["conv-26", "conv-30", "conv-41", "conv-42", "conv-43", "conv-44", "conv-47"]
DEV_SHA256 = "8143faac7a6435b3a83d83245fe527a9a33bf19c42269023cfc1c15931e336cd"


@pytest.fixture(scope="module")
def fixture() -> Dataset:
    return load_locomo(fixture_path())


@pytest.fixture(scope="module")
def quirks() -> Dataset:
    return load_locomo(QUIRKS)


@pytest.fixture(scope="module")
def dev() -> Dataset:
    return load_locomo(dev_path())


# ------------------------------------------------------------------------------------------ fixture


def test_fixture_counts(fixture):
    (conv,) = fixture.conversations
    assert conv.sample_id == "fixture-1"
    assert (conv.speaker_a, conv.speaker_b) == ("Priya", "Tomas")
    assert [s.index for s in conv.sessions] == [1, 2, 3]
    assert [len(s.turns) for s in conv.sessions] == [8, 7, 8]
    assert len(conv.turns()) == 23
    assert fixture.category_counts() == {1: 2, 2: 3, 3: 2, 4: 5, 5: 3}
    assert all(n >= 2 for n in fixture.category_counts().values())
    assert [q.qid for q in conv.questions][:3] == ["fixture-1:q0", "fixture-1:q1", "fixture-1:q2"]
    assert all(q.evidence for q in conv.questions)
    # The only report entries: category-5 items that carry adversarial_answer only.
    assert fixture.report.counts == {D.INFO_CAT5: 3}
    cat5 = [q for q in conv.questions if q.category == 5]
    assert all(q.answer == "" and q.adversarial_answer for q in cat5)
    assert cat5[0].category_name == "adversarial"


def test_fixture_sessions_observations_summaries(fixture):
    (conv,) = fixture.conversations
    assert conv.sessions[1].timestamp == "6:30 pm on 14 June, 2023"
    assert all(t.timestamp == conv.sessions[t.session - 1].timestamp for t in conv.turns())
    assert sorted(conv.observations) == [1, 2, 3]
    assert conv.observations[1][0] == ("Priya lives in Lisbon.", ("D1:3",))
    # A list-valued provenance in the file stays a list of ids.
    assert conv.observations[2][0][1] == ("D2:2", "D2:4")
    assert sorted(conv.session_summaries) == [1, 2, 3]


def test_turn_as_message_includes_caption(fixture):
    (conv,) = fixture.conversations
    by_id = {t.dia_id: t for t in conv.turns()}
    photo = by_id["D1:5"].as_message()
    assert isinstance(photo, Message)
    assert photo == Message(
        speaker="Priya",
        text="Here she is. She already owns the place. "
        "[shares a photo of: a photo of a grey cat sitting on a windowsill next to a potted plant]",
        dia_id="D1:5",
        timestamp="10:05 am on 3 March, 2023",
    )
    plain = by_id["D1:1"].as_message()
    assert plain.text == "Hi Tomas! It's been ages. How is life at the coffee shop?"
    assert Turn("D1:1", "A", "", 1, "", image_caption="a dog").as_message().text == "[shares a photo of: a dog]"


# ------------------------------------------------------------------------------------------ quirks


def _question(ds: Dataset, qid: str):
    return next((q for q in ds.questions if q.qid == qid), None)


def _has(ds: Dataset, item: str, action: str, fragment: str = "") -> bool:
    return any(e.action == action and fragment in e.problem for e in ds.report.for_item(item))


def test_quirk_int_answer(quirks):
    q = _question(quirks, "quirks-1:q0")
    assert q.answer == "2022" and isinstance(q.answer, str)
    assert _has(quirks, "quirks-1:q0", D.CONVERTED, "2022")


def test_quirk_empty_evidence_kept(quirks):
    q = _question(quirks, "quirks-1:q1")
    assert q is not None and q.evidence == ()
    assert _has(quirks, "quirks-1:q1", D.KEPT_NO_RECALL, "empty evidence")


def test_quirk_semicolon_ids_split(quirks):
    assert _question(quirks, "quirks-1:q2").evidence == ("D1:2", "D1:3")
    assert _has(quirks, "quirks-1:q2", D.REPAIRED, "'D1:2; D1:3'")


def test_quirk_extra_colon_repaired(quirks):
    assert _question(quirks, "quirks-1:q3").evidence == ("D1:4",)
    assert _has(quirks, "quirks-1:q3", D.REPAIRED, "'D:1:4' -> 'D1:4'")


def test_quirk_leading_zero_repaired(quirks):
    assert _question(quirks, "quirks-1:q4").evidence == ("D1:5",)
    assert _has(quirks, "quirks-1:q4", D.REPAIRED, "'D1:05' -> 'D1:5'")


def test_quirk_nonexistent_id_dropped(quirks):
    assert _question(quirks, "quirks-1:q5").evidence == ("D2:2",)
    assert _has(quirks, "quirks-1:q5", D.DROPPED_ID, "'D7:1'")
    # An item whose only id does not exist keeps the question, with empty evidence (excluded from recall).
    assert _question(quirks, "quirks-1:q10").evidence == ()
    assert _has(quirks, "quirks-1:q10", D.DROPPED_ID, "'D9:9'")
    assert _has(quirks, "quirks-1:q10", D.KEPT_NO_RECALL, "every evidence id was dropped")


def test_quirk_duplicate_keeps_first(quirks):
    assert _question(quirks, "quirks-1:q6") is None
    assert _question(quirks, "quirks-1:q4") is not None
    assert _has(quirks, "quirks-1:q6", D.DROPPED_DUPLICATE, "quirks-1:q4")
    texts = Counter(q.question for q in quirks.questions)
    assert texts["What did Ana share a photo of?"] == 1


def test_quirk_category5_without_answer(quirks):
    q = _question(quirks, "quirks-1:q7")
    assert (q.answer, q.adversarial_answer, q.category) == ("", "a sunset painting", 5)
    assert _has(quirks, "quirks-1:q7", D.INFO_CAT5)


def test_quirk_bad_category_skipped_with_fix(quirks):
    assert _question(quirks, "quirks-1:q8") is None
    assert _has(quirks, "quirks-1:q8", D.SKIPPED, "unknown category 7 (fix: use one of the ints 1 multi-hop")


def test_quirk_missing_question_skipped_with_fix(quirks):
    assert _question(quirks, "quirks-1:q9") is None
    assert _has(quirks, "quirks-1:q9", D.SKIPPED, "no 'question' text (fix: add the question")


def test_quirk_orphan_date_time_ignored(quirks):
    (conv,) = quirks.conversations
    assert [s.index for s in conv.sessions] == [1, 2]
    assert _has(quirks, "quirks-1:session_9_date_time", D.IGNORED, "no matching session_9")


def test_quirk_observation_ids(quirks):
    (conv,) = quirks.conversations
    assert conv.observations[1][1][1] == ("D1:2", "D1:4")  # "D1:2, D1:4" split
    assert conv.observations[2][1][1] == ()  # "D2:9" does not exist: dropped
    assert _has(quirks, "quirks-1:obs:session_1", D.REPAIRED)
    assert _has(quirks, "quirks-1:obs:session_2", D.DROPPED_ID, "'D2:9'")


def test_quirks_totals_and_summary(quirks):
    # 11 qa items - 2 skipped (q8, q9) - 1 duplicate (q6) = 8 questions.
    assert len(quirks.questions) == 8
    assert quirks.report.counts == {
        D.IGNORED: 1,
        D.CONVERTED: 1,
        D.KEPT_NO_RECALL: 2,
        D.REPAIRED: 5,
        D.DROPPED_ID: 3,
        D.DROPPED_DUPLICATE: 1,
        D.INFO_CAT5: 1,
        D.SKIPPED: 2,
    }
    text = quirks.report.summary()
    assert text.index("skipped: 2") < text.index("repaired: 5")  # most serious first
    for item in ("quirks-1:q8", "quirks-1:q9", "quirks-1:q6", "quirks-1:q0"):
        assert item in text


# ------------------------------------------------------------------------------------------ selection, caps


def test_select_conversations_keeps_file_order():
    ds = load_locomo(dev_path(), conversations=["conv-30", "conv-26"])
    assert [c.sample_id for c in ds.conversations] == ["conv-26", "conv-30"]
    assert len(ds.questions) == 199 + 105
    single = load_locomo(dev_path(), conversations="conv-30")  # a bare string is one id, not characters
    assert [c.sample_id for c in single.conversations] == ["conv-30"]


def test_unknown_conversation_lists_available():
    with pytest.raises(ValueError) as info:
        load_locomo(dev_path(), conversations=["conv-26", "conv-99"])
    message = str(info.value)
    assert "conv-99" in message
    for sample_id in DEV_IDS:
        assert sample_id in message
    assert "dataset.conversations" in message


def test_max_sessions_fixture():
    ds = load_locomo(fixture_path(), max_sessions=1)
    (conv,) = ds.conversations
    assert [s.index for s in conv.sessions] == [1]
    # Only q7 ("Pixel", D1:3) and q12 (category 5, D1:3) have all their evidence in session 1.
    assert [q.qid for q in conv.questions] == ["fixture-1:q7", "fixture-1:q12"]
    assert len(ds.report.with_action(D.DROPPED_BY_MAX_SESSIONS)) == 13
    assert _has(ds, "fixture-1:q0", D.DROPPED_BY_MAX_SESSIONS, "['D2:2']")
    assert sorted(conv.observations) == [1] and sorted(conv.session_summaries) == [1]


def test_max_sessions_dev_and_empty_evidence():
    ds = load_locomo(dev_path(), conversations=["conv-26"], max_sessions=2)
    (conv,) = ds.conversations
    assert [s.index for s in conv.sessions] == [1, 2]
    assert conv.questions, "conv-26 has questions about its first two sessions"
    assert all(e.startswith(("D1:", "D2:")) for q in conv.questions for e in q.evidence)
    assert all(q.evidence for q in conv.questions)
    # Empty-evidence questions cannot be placed in a session, so truncation drops them (and says why).
    assert _has(ds, "conv-26:q30", D.DROPPED_BY_MAX_SESSIONS, "no evidence")
    # max_sessions >= the number of sessions changes nothing.
    assert len(load_locomo(fixture_path(), max_sessions=3).questions) == 15


def test_max_questions():
    ds = load_locomo(fixture_path(), max_questions=4)
    assert [q.qid for q in ds.questions] == [f"fixture-1:q{i}" for i in range(4)]
    assert _has(ds, "fixture-1", D.DROPPED_BY_MAX_QUESTIONS, "dropped the last 11")


def test_bad_caps_raise():
    with pytest.raises(ValueError, match="max_sessions"):
        load_locomo(fixture_path(), max_sessions=0)
    with pytest.raises(ValueError, match="max_questions"):
        load_locomo(fixture_path(), max_questions=-1)


# ------------------------------------------------------------------------------------------ errors, paths


def test_missing_file_names_path_and_fix(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_locomo(tmp_path / "nope.json")
    assert "nope.json" in str(info.value) and "dataset.path" in str(info.value)


def test_not_json(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[{'sample_id': 'x'}]")
    with pytest.raises(ValueError, match=r"bad\.json is not valid JSON .*line 1"):
        load_locomo(bad)


def test_wrong_top_level_type(tmp_path):
    bad = tmp_path / "dict.json"
    bad.write_text(json.dumps({"conv-1": {}}))
    with pytest.raises(ValueError, match="top level is a JSON dict, expected a list"):
        load_locomo(bad)


def test_no_usable_conversation(tmp_path):
    bad = tmp_path / "empty_conv.json"
    bad.write_text(json.dumps([{"sample_id": "c1", "qa": []}]))
    with pytest.raises(ValueError, match="no usable conversation") as info:
        load_locomo(bad)
    assert "c1" in str(info.value) and "no 'conversation' object" in str(info.value)


def test_resolve_path(tmp_path, monkeypatch):
    assert resolve_path(fixture_path()) == fixture_path()
    monkeypatch.chdir(tmp_path)
    # Relative to the project root when the working directory has no such file.
    assert resolve_path("data/fixture/fixture.json") == fixture_path().resolve()
    assert load_locomo("data/fixture/fixture.json").conversations[0].sample_id == "fixture-1"
    # Relative to the working directory first.
    (tmp_path / "data" / "fixture").mkdir(parents=True)
    local = tmp_path / "data" / "fixture" / "fixture.json"
    local.write_text(fixture_path().read_text())
    assert resolve_path("data/fixture/fixture.json") == local.resolve()
    assert dev_path().is_file() and fixture_path().is_file() and QUIRKS.is_file()


# ------------------------------------------------------------------------------------------ dev split


def test_dev_split_counts(dev):
    assert [c.sample_id for c in dev.conversations] == DEV_IDS
    assert dev.sha256 == DEV_SHA256
    # SOURCE.md: 1,347 questions; category 1: 192, 2: 214, 3: 66, 4: 563, 5: 312 (no duplicates in the dev split).
    assert len(dev.questions) == 1347
    assert dev.category_counts() == {1: 192, 2: 214, 3: 66, 4: 563, 5: 312}
    assert sum(1 for q in dev.questions if q.category <= 4 and q.evidence) == 1033  # DESIGN's recall denominator
    assert sum(len(c.sessions) for c in dev.conversations) == 187
    assert sum(len(c.turns()) for c in dev.conversations) == 4124
    assert dev.report.counts == {
        D.IGNORED: 16,  # conv-26 session_20..35_date_time
        D.CONVERTED: 6,
        D.KEPT_NO_RECALL: 2,
        D.REPAIRED: 3,
        D.INFO_CAT5: 310,
        D.DROPPED_ID: 3,
    }
    assert {e.item for e in dev.report.with_action(D.CONVERTED)} == {f"conv-26:q{i}" for i in (1, 26, 40, 49, 72, 75)}
    q37 = _question(dev, "conv-26:q37")
    assert q37.evidence == ("D8:6", "D9:17")
    assert "D11:26" in _question(dev, "conv-43:q18").evidence  # was "D:11:26"
    assert "D" not in _question(dev, "conv-42:q88").evidence
    conv26 = dev.conversation("conv-26")
    assert [s.index for s in conv26.sessions] == list(range(1, 20))


def test_dev_file_is_upstream_layout(dev, tmp_path):
    """The dev file is upstream locomo10.json re-serialised: the loader reads that layout unchanged.

    Re-writing one conversation compactly (as upstream does not indent) gives the same records.
    """
    raw = json.loads(dev_path().read_text(encoding="utf-8"))
    assert isinstance(raw, list) and len(raw) == 7
    for obj in raw:
        assert set(obj) == {"sample_id", "conversation", "qa", "event_summary", "observation", "session_summary"}
    one = tmp_path / "one.json"
    one.write_text(json.dumps(raw[1:2], ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    loaded = load_locomo(one)
    assert loaded.conversations[0] == dev.conversation("conv-30")


@pytest.mark.skipif(not os.environ.get("LOCOMO10_PATH"), reason="set LOCOMO10_PATH to the full upstream file")
def test_full_upstream_file():
    ds = load_locomo(os.environ["LOCOMO10_PATH"])
    assert ds.sha256 == "79fa87e90f04081343b8c8debecb80a9a6842b76a7aa537dc9fdf651ea698ff4"
    assert len(ds.conversations) == 10 and len(ds.questions) == 1975
    assert ds.category_counts() == {1: 282, 2: 321, 3: 96, 4: 830, 5: 446}
    assert len(ds.report.with_action(D.DROPPED_DUPLICATE)) == 11
    assert _question(ds, "conv-50:q69") is not None and "D30:5" in _question(ds, "conv-50:q69").evidence


def test_category_names():
    # LOCOMO's numbers keep their meaning; other benchmarks get their own ranges (types.py), never 1-5 reused
    assert {k: CATEGORY_NAMES[k] for k in range(1, 6)} == {
        1: "multi-hop",
        2: "temporal",
        3: "open-domain",
        4: "single-hop",
        5: "adversarial",
    }
    assert {k: CATEGORY_NAMES[k] for k in (11, 12, 13)} == {11: "current", 12: "history", 13: "stable"}
    assert sorted(CATEGORY_NAMES) == [1, 2, 3, 4, 5, 11, 12, 13, 21, 22, 23, 24, 25, 26]
    assert 7 not in CATEGORY_NAMES  # data/fixture/quirks.json's unknown category


def test_paths_point_into_repo():
    assert fixture_path() == Path(locomo.__file__).resolve().parents[3] / "data" / "fixture" / "fixture.json"
