"""memtune-gen: determinism, refused input, the shipped set (loaded by the LOCOMO loader unchanged), and the
correctness of every question's gold answer and evidence against the label file's timelines."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from memtune.optimize.data.locomo import load_locomo
from memtune.optimize.data.updates_cli import labels_path, main, render_files
from memtune.optimize.data.updates_gen import CURRENT, HISTORY, STABLE, GeneratorInputError, Params, generate
from memtune.optimize.data.updates_slots import SLOTS

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "data" / "updates" / "updates.json"
SMALL = Params(seed=3, conversations=2, sessions=5)


@pytest.fixture(scope="module")
def shipped():
    return load_locomo(SHIPPED), json.loads(labels_path(SHIPPED).read_text())


@pytest.fixture(scope="module", params=["shipped", "fresh"])
def dataset(request, tmp_path_factory):
    """The shipped set, and one the code writes now with other knobs (relatives, fewer sessions, other slots)."""
    if request.param == "shipped":
        return request.getfixturevalue("shipped")
    path = tmp_path_factory.mktemp("gen") / "fresh.json"
    text, labels = render_files(Params(seed=9, conversations=4, sessions=6, people=4, slots_per_person=5))
    path.write_text(text)
    return load_locomo(path), json.loads(labels)


# ------------------------------------------------------------------------------------------------ determinism


def test_same_seed_same_bytes_other_seed_other_bytes():
    assert render_files(SMALL) == render_files(SMALL)
    assert render_files(SMALL)[0] != render_files(Params(seed=4, conversations=2, sessions=5))[0]


def test_the_first_conversations_do_not_depend_on_how_many_are_made():
    two, _ = generate(Params(seed=3, conversations=2))
    three, _ = generate(Params(seed=3, conversations=3))
    assert three[:2] == two and three[2] != two[1]


def test_the_shipped_files_are_what_the_generator_writes(tmp_path, capsys):
    """data/updates/README.md's command (seed 0, the defaults) regenerates both files byte for byte."""
    text, labels = render_files(Params())
    assert SHIPPED.read_text() == text
    assert labels_path(SHIPPED).read_text() == labels
    main(["--out", str(SHIPPED), "--check"])
    assert "up to date" in capsys.readouterr().out
    copy = tmp_path / "updates.json"
    copy.write_text(text.replace("Porto", "Braga", 1))
    labels_path(copy).write_text(labels)
    with pytest.raises(SystemExit) as err:
        main(["--out", str(copy), "--check"])
    assert err.value.code == 1


def test_cli_writes_both_files(tmp_path, capsys):
    out = tmp_path / "u" / "x.json"
    main(["--out", str(out), "--seed", "5", "--conversations", "2", "--sessions", "3", "--people", "3"])
    assert out.is_file() and (tmp_path / "u" / "x.labels.json").is_file()
    assert "2 conversations" in capsys.readouterr().out
    assert load_locomo(out).report.entries == []


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("params", "names", "fix"),
    [
        (Params(seed=-1), "seed=-1", "--seed 0"),
        (Params(seed=1.5), "seed=1.5", "--seed 0"),  # type: ignore[arg-type]
        (Params(seed="7"), "seed='7'", "--seed 0"),  # type: ignore[arg-type]
        (Params(seed=True), "seed=True", "--seed 0"),
        (Params(people=0), "people=0", "--people 2"),
        (Params(people=5), "people=5", "<= 4"),
        (Params(sessions=1), "sessions=1", "--sessions 8"),
        (Params(conversations=0), "conversations=0", "--conversations 10"),
        (Params(slots=("home", "house", "pets")), "unknown slot(s) ['house', 'pets']", "--slots home,job,pet"),
        (Params(slots=()), "no slots", "known slots are home, job"),
        (Params(slots=("home", "home")), "repeat", "name each slot once"),
        (Params(slots=("home", "job"), slots_per_person=3), "slots_per_person=3", "at most the slots given"),
    ],
)
def test_bad_input_names_the_item_and_the_fix(params, names, fix):
    with pytest.raises(GeneratorInputError) as err:
        generate(params)
    assert names in str(err.value) and fix in str(err.value)


def test_cli_refuses_bad_input_with_exit_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "x.json"
    for argv in (["--seed", "-3"], ["--people", "0"], ["--sessions", "1"], ["--slots", "home,castle"]):
        with pytest.raises(SystemExit) as err:
            main(["--out", str(out), *argv])
        assert err.value.code == 2
        assert "memtune-gen: error:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--out", str(out), "--seed", "abc"])  # argparse: not an int
    assert "invalid int value: 'abc'" in capsys.readouterr().err
    assert not out.exists()


def test_slots_and_sessions_are_honoured():
    convs, labels = generate(Params(seed=1, conversations=3, sessions=2, slots=("home", "diet")))
    assert {row["slot"] for row in labels["decisions"]} == {"home", "diet"}
    assert all(
        set(c["conversation"]) >= {"session_1", "session_2"} and "session_3" not in c["conversation"] for c in convs
    )
    assert all(v["session"] <= 2 for t in labels["timelines"].values() for row in t for v in row["values"])


# ------------------------------------------------------------------------------------------------ the shipped set


def test_the_shipped_set_loads_through_the_normal_loader(shipped):
    ds, labels = shipped
    assert ds.report.entries == []  # nothing repaired or skipped
    assert [c.sample_id for c in ds.conversations] == [f"upd-{i:02d}" for i in range(1, 11)]
    assert all(len(c.sessions) == 8 for c in ds.conversations)
    assert sum(len(c.turns()) for c in ds.conversations) == 1668
    assert ds.category_counts() == {CURRENT: 80, HISTORY: 118, STABLE: 60}
    assert {q.category_name for q in ds.questions} == {"current", "history", "stable"}
    assert Counter(row["op"] for row in labels["decisions"]) == {"ADD": 140, "UPDATE": 119, "NOOP": 128}
    assert labels["version"] == "1" and labels["params"]["seed"] == 0
    assert SHIPPED.stat().st_size < 1_000_000 and labels_path(SHIPPED).stat().st_size < 1_000_000


def timeline_of(labels, cid: str, subject: str, slot: str) -> dict:
    (row,) = [t for t in labels["timelines"][cid] if (t["subject"], t["slot"]) == (subject, slot)]
    return row


def parse_question(conv, q, labels):
    """The timeline a question is about, read from its text: the one whose person and slot wording match."""
    found = []
    for t in labels["timelines"][conv.sample_id]:
        slot = SLOTS[t["slot"]]
        for stem in filter(None, (slot.current_q, slot.stable_q, slot.before_q, slot.when_q)):
            pattern = re.escape(stem).replace(r"\{P\}", re.escape(t["subject"]))
            for blank in (r"\{when\}", r"\{new\}", r"\{a_new\}"):
                pattern = pattern.replace(blank, ".+")
            if re.fullmatch(pattern, q.question):
                found.append(t)
    assert len(found) == 1, (q.qid, q.question, found)
    return found[0]


def test_every_question_has_the_right_gold_and_evidence(dataset):
    ds, labels = dataset
    for conv in ds.conversations:
        text = {t.dia_id: t.text for t in conv.turns()}
        for q in conv.questions:
            t = parse_question(conv, q, labels)
            values = [v["value"] for v in t["values"]]
            (evidence,) = q.evidence  # one turn per question
            assert re.search(rf"\b{re.escape(q.answer)}\b", text[evidence], re.IGNORECASE), (q.qid, evidence)
            if q.category == CURRENT:
                assert t["changes"] and q.answer == values[-1] and evidence == t["values"][-1]["stated"]
                superseded = {v["stated"] for v in t["values"][:-1]} | {
                    d for v in t["values"][:-1] for d in v["restated"]
                }
                assert evidence not in superseded
            elif q.category == HISTORY:
                assert t["changes"] and q.answer in values[:-1] and q.answer != values[-1]
                assert evidence == t["values"][values.index(q.answer)]["stated"]
            else:
                assert q.category == STABLE and not t["changes"] and q.answer == values[0]
                assert evidence == t["values"][0]["stated"]


def test_history_questions_name_a_month_inside_the_old_value_or_the_value_that_replaced_it(dataset):
    ds, labels = dataset
    month_number = {m: i for i, m in enumerate("January February March April May June July August September "
                                                "October November December".split(), start=1)}  # fmt: skip
    for conv in ds.conversations:
        dates = {s.index: s.timestamp for s in conv.sessions}
        for q in (q for q in conv.questions if q.category == HISTORY):
            t = parse_question(conv, q, labels)
            i = [v["value"] for v in t["values"]].index(q.answer)
            start, end = (t["values"][i]["session"], t["values"][i + 1]["session"])
            when = re.search(r" in (\w+) (\d{4})\?$", q.question)
            if when is None:  # "before <the next value>"
                assert t["values"][i + 1]["value"] in q.question
                continue
            asked = (int(when[2]), month_number[when[1]])

            ym = {}
            for s in (start, end):
                _, month, year = re.search(r"on (\d+) (\w+), (\d{4})$", dates[s]).groups()
                ym[s] = (int(year), month_number[month])
            assert ym[start] < asked < ym[end], (q.qid, q.question, dates[start], dates[end])


def test_labels_match_the_turns(dataset):
    ds, labels = dataset
    turns = {(c.sample_id, t.dia_id): t for c in ds.conversations for t in c.turns()}
    current: dict[tuple, str] = {}
    for row in labels["decisions"]:  # in conversation order
        turn = turns[(row["conversation"], row["dia_id"])]
        assert turn.text == row["text"] and turn.speaker == row["speaker"]
        assert re.search(rf"\b{re.escape(row['value'])}\b", turn.text, re.IGNORECASE)
        key = (row["conversation"], row["subject"], row["slot"])
        if row["op"] == "ADD":
            assert key not in current
        elif row["op"] == "UPDATE":
            assert current[key] == row["previous"] != row["value"]
        else:
            assert row["op"] == "NOOP" and current[key] == row["value"] and row["restates"] != row["dia_id"]
        current[key] = row["value"]


def test_restatements_use_other_words_and_later_sessions(dataset):
    _, labels = dataset
    first = {(r["conversation"], r["dia_id"]): r for r in labels["decisions"]}
    noops = [r for r in labels["decisions"] if r["op"] == "NOOP"]
    assert noops
    for r in noops:
        original = first[(r["conversation"], r["restates"])]
        assert int(r["dia_id"][1:].split(":")[0]) > int(original["dia_id"][1:].split(":")[0])
        assert r["text"] != original["text"]


def test_only_labelled_turns_mention_a_slot_value(dataset):
    """Small talk never states a value, so the labelled turns are every fact-bearing turn."""
    ds, labels = dataset
    labelled = {(r["conversation"], r["dia_id"]) for r in labels["decisions"]}
    values = [v for slot in SLOTS.values() for v in slot.values]
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, values)) + r")\b", re.IGNORECASE)
    for conv in ds.conversations:
        for turn in conv.turns():
            if (conv.sample_id, turn.dia_id) not in labelled:
                assert not pattern.search(turn.text), (conv.sample_id, turn.dia_id, turn.text)


def test_relatives_are_told_in_the_third_person_by_their_speaker():
    convs, labels = generate(Params(seed=2, conversations=3, sessions=4, people=4))
    for conv in convs:
        a, b = conv["conversation"]["speaker_a"], conv["conversation"]["speaker_b"]
        subjects = {t["subject"]: t["teller"] for t in labels["timelines"][conv["sample_id"]]}
        assert len(subjects) == 4 and subjects[a] == a and subjects[b] == b
        relatives = [s for s in subjects if s not in (a, b)]
        assert sorted(subjects[r] for r in relatives) == sorted([a, b])
        asked = " ".join(q["question"] for q in conv["qa"])
        assert all(r in asked for r in relatives)
    for row in labels["decisions"]:
        if row["subject"] != row["speaker"]:
            assert re.search(rf"\bmy [a-z ]+ {row['subject']}\b", row["text"], re.IGNORECASE), row["text"]
