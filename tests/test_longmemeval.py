"""The LongMemEval loader on a small hand-written file in its format (data/fixture/longmemeval_tiny.json), its
refusals, and the dataset entry point: format by `format:` or detected, several files as one dataset."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from memtune.optimize.data import types as D
from memtune.optimize.data.load import load_dataset, load_from_config
from memtune.optimize.data.longmemeval import load_longmemeval

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "data" / "fixture" / "longmemeval_tiny.json"
RAW = json.loads(TINY.read_text())


@pytest.fixture(scope="module")
def tiny():
    return load_longmemeval(TINY)


def conv(ds, cid):
    return ds.conversation(cid)


def write(tmp_path: Path, entries) -> Path:
    path = tmp_path / "lme.json"
    path.write_text(json.dumps(entries))
    return path


def test_one_entry_is_one_conversation_with_one_question(tiny):
    assert [c.sample_id for c in tiny.conversations] == ["ku0001", "tr0002", "ssu0003_abs", "ms0004"]
    assert all(len(c.questions) == 1 and c.questions[0].qid == f"{c.sample_id}:q0" for c in tiny.conversations)
    assert all((c.speaker_a, c.speaker_b) == ("user", "assistant") for c in tiny.conversations)
    assert tiny.category_counts() == {5: 1, 24: 1, 25: 1, 26: 1}
    assert sum(len(c.turns()) for c in tiny.conversations) == 21


def test_knowledge_update_evidence_is_every_has_answer_turn(tiny):
    c = conv(tiny, "ku0001")
    q = c.questions[0]
    assert (q.category, q.category_name, q.answer) == (25, "knowledge-update", "Porto")
    assert q.evidence == ("D2:1", "D3:1")
    turns = {t.dia_id: t for t in c.turns()}
    assert "Lisbon" in turns["D2:1"].text and "Porto" in turns["D3:1"].text
    assert turns["D3:1"].speaker == "user" and turns["D3:2"].speaker == "assistant"
    assert turns["D3:1"].timestamp == "2023/07/21 (Fri) 13:30" == c.sessions[2].timestamp
    assert q.question == "Which city do I live in now? (Current date: 2023/09/02 (Sat) 18:40)"


def test_unsorted_sessions_are_put_in_date_order_and_int_answers_become_text(tiny):
    c = conv(tiny, "tr0002")
    assert [s.timestamp for s in c.sessions] == [
        "2023/04/11 (Tue) 19:20",
        "2023/04/20 (Thu) 12:00",
        "2023/05/28 (Sun) 17:45",
    ]
    text = {t.dia_id: t.text for t in c.turns()}
    assert "running shoes" in text["D1:1"] and "half marathon" in text["D3:1"]
    assert c.questions[0].evidence == ("D1:1", "D3:1") and c.questions[0].answer == "47"
    assert c.questions[0].category == 24
    assert {(e.problem, e.action) for e in tiny.report.for_item("tr0002")} == {
        ("haystack sessions are not in date order: sorted by haystack_dates", D.REPAIRED),
        ("field 'answer' is the int 47", D.CONVERTED),
    }


def test_abstention_questions_are_category_5_and_keep_the_upstream_answer(tiny):
    q = conv(tiny, "ssu0003_abs").questions[0]
    assert q.category == 5 and q.category_name == "adversarial"
    assert q.answer.startswith("The information provided is not enough") and q.evidence == ("D1:1",)
    multi = conv(tiny, "ms0004")
    assert multi.questions[0].evidence == ("D1:2", "D2:1") and multi.turns()[0].speaker == "assistant"


def test_question_date_can_be_left_out_and_types_selected():
    ds = load_longmemeval(TINY, question_date=False, question_types=["knowledge-update", "multi-session"])
    assert [c.sample_id for c in ds.conversations] == ["ku0001", "ms0004"]
    assert ds.conversations[0].questions[0].question == "Which city do I live in now?"
    assert [c.sample_id for c in load_longmemeval(TINY, conversations=["tr0002"]).conversations] == ["tr0002"]
    with pytest.raises(ValueError, match=r"unknown question type\(s\) \['knowledge'\].*knowledge-update"):
        load_longmemeval(TINY, question_types=["knowledge"])
    with pytest.raises(ValueError, match=r"unknown question_id\(s\) \['nope'\].*dataset.conversations"):
        load_longmemeval(TINY, conversations=["nope"])


def test_max_sessions_drops_questions_whose_evidence_is_cut_off():
    ds = load_longmemeval(TINY, max_sessions=2)
    assert conv(ds, "ku0001").questions == () and len(conv(ds, "ku0001").sessions) == 2
    assert conv(ds, "ms0004").questions[0].evidence == ("D1:2", "D2:1")
    assert [e.item for e in ds.report.with_action(D.DROPPED_BY_MAX_SESSIONS)] == ["ku0001:q0", "tr0002:q0"]


@pytest.mark.parametrize(
    ("mutate", "item", "problem"),
    [
        (lambda e: e.pop("question"), "ku0001", "field 'question' missing"),
        (lambda e: e.update(question_type="trivia"), "ku0001", "field 'question_type' is 'trivia'"),
        (lambda e: e.update(answer=["Porto"]), "ku0001", "field 'answer' is list"),
        (lambda e: e["haystack_dates"].pop(), "ku0001", "field 'haystack_dates' has 2 items for 3 haystack_sessions"),
        (lambda e: e.pop("haystack_session_ids"), "ku0001", "field 'haystack_session_ids' has NoneType"),
        (lambda e: e.update(haystack_sessions="none"), "ku0001", "field 'haystack_sessions' is not a list"),
        (lambda e: e.pop("question_id"), "#0", "field 'question_id' missing"),
    ],
)
def test_a_bad_entry_is_skipped_naming_the_entry_and_field(tmp_path, mutate, item, problem):
    entries = copy.deepcopy(RAW)
    mutate(entries[0])
    ds = load_longmemeval(write(tmp_path, entries))
    assert len(ds.conversations) == 3  # the others load
    (entry,) = ds.report.with_action(D.SKIPPED)
    assert entry.item == item and entry.problem.startswith(problem) and "fix:" in entry.problem


def test_bad_turns_and_missing_evidence_are_reported(tmp_path):
    entries = copy.deepcopy(RAW)
    entries[0]["haystack_sessions"][0][1] = {"role": "assistant"}  # no content
    entries[0]["haystack_sessions"][0][0]["role"] = "system"
    for session in entries[3]["haystack_sessions"]:
        for turn in session:
            turn.pop("has_answer", None)
    entries[3]["haystack_dates"][0] = "yesterday"
    entries[3]["answer_session_ids"] = ["answer_ms0004_1", "answer_ms0004_9"]
    ds = load_longmemeval(write(tmp_path, entries))
    got = {(e.item, e.action): e.problem for e in ds.report.entries}
    assert "lacks a string 'role' and 'content'" in got[("ku0001:haystack_sessions[0][1]", D.SKIPPED)]
    assert "role 'system'" in got[("ku0001:haystack_sessions[0][0]", D.WARNED)]
    assert [t.dia_id for t in conv(ds, "ku0001").sessions[0].turns] == ["D1:1"]  # ids keep the file position
    assert conv(ds, "ms0004").questions[0].evidence == ()
    assert got[("ms0004", D.KEPT_NO_RECALL)] == "no turn has has_answer: true (empty evidence)"
    warned = [e.problem for e in ds.report.for_item("ms0004") if e.action == D.WARNED]
    assert warned == [
        "haystack_dates[0] 'yesterday' is not like '2023/05/20 (Sat) 02:21': file order",
        "answer_session_ids ['answer_ms0004_9'] are not in haystack_session_ids",
    ]


def test_file_level_errors_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"not shipped.*dataset.path="):
        load_longmemeval(tmp_path / "missing.json")
    with pytest.raises(ValueError, match=r"top level is a JSON dict.*longmemeval_s.json"):
        load_longmemeval(write(tmp_path, {"question_id": "x"}))
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(ValueError, match="not UTF-8 JSON"):
        load_longmemeval(tmp_path / "broken.json")
    with pytest.raises(ValueError, match="no usable LongMemEval entry"):
        load_longmemeval(write(tmp_path, [{"question_id": "a"}]))


# ------------------------------------------------------------------------------------------------ entry point


def test_the_format_is_detected_or_named(tmp_path):
    assert load_dataset(TINY).category_counts() == {5: 1, 24: 1, 25: 1, 26: 1}
    assert load_dataset(TINY, format="longmemeval").sha256 == load_longmemeval(TINY).sha256
    assert load_dataset(ROOT / "data" / "fixture" / "fixture.json").conversations[0].sample_id == "fixture-1"
    with pytest.raises(ValueError, match="dataset.format=.*must be one of auto, locomo, longmemeval"):
        load_dataset(TINY, format="csv")
    with pytest.raises(ValueError, match="cannot tell the format.*dataset.format=locomo"):
        load_dataset(write(tmp_path, [{"foo": 1}]))
    with pytest.raises(ValueError, match="question_types applies to LongMemEval files only"):
        load_dataset(ROOT / "data" / "fixture" / "fixture.json", question_types=["knowledge-update"])
    with pytest.raises(FileNotFoundError, match="LOCOMO file not found"):
        load_dataset(tmp_path / "none.json")


def test_several_files_are_one_dataset_with_unique_ids(tmp_path):
    both = load_dataset([ROOT / "data" / "fixture" / "fixture.json", TINY])
    assert [c.sample_id for c in both.conversations] == ["fixture-1", "ku0001", "tr0002", "ssu0003_abs", "ms0004"]
    assert both.category_counts()[25] == 1 and both.category_counts()[4] == 5
    assert " + " in both.path and len(both.sha256) == 64
    assert both.sha256 != load_dataset(TINY).sha256
    picked = load_dataset([ROOT / "data" / "fixture" / "fixture.json", TINY], conversations=["ms0004", "fixture-1"])
    assert [c.sample_id for c in picked.conversations] == ["fixture-1", "ms0004"]
    with pytest.raises(ValueError, match=r"unknown conversation id\(s\) \['zzz'\]"):
        load_dataset([ROOT / "data" / "fixture" / "fixture.json", TINY], conversations=["zzz"])
    with pytest.raises(ValueError, match="'ku0001' is in both .* ids must be unique"):
        load_dataset([TINY, write(tmp_path, RAW[:1])])


def test_dataset_configs_load(tmp_path):
    for name, n in (("updates", 10), ("locomo_updates", 17), ("fixture", 1)):
        cfg = OmegaConf.load(ROOT / "conf" / "dataset" / f"{name}.yaml")
        assert len(load_from_config(cfg).conversations) == n, name
    cfg = OmegaConf.load(ROOT / "conf" / "dataset" / "longmemeval.yaml")
    with pytest.raises(FileNotFoundError, match="LongMemEval file not found"):
        load_from_config(cfg)
    cfg.path = str(TINY)
    cfg.question_types = ["temporal-reasoning"]
    assert [c.sample_id for c in load_from_config(cfg).conversations] == ["tr0002"]
