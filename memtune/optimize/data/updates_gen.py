"""Conversations in which facts change: LOCOMO-layout JSON (loaded by `load_locomo` unchanged) and the label
file of the memory operation each fact-bearing turn calls for. The plan (who, which slot, when) is
updates_plan.py; the words are updates_slots.py and updates_talk.py; the command line is updates_cli.py.

Questions (`qa`), in the categories of `memtune.optimize.data.types.UPDATES_CATEGORIES`:

- 11 current: "Where does Alice live now?" -> the latest value; evidence = the turn that stated it first (a later
  restatement says nothing new: a policy that NOOPs it keeps the memory of that turn). Never an older value's turn.
- 12 history: "Where did Alice live before moving to Porto?" / "... in May 2023?" -> a superseded value; evidence
  = the turn that stated it. A month is asked only when it lies wholly after that turn's session and before the
  month of the session that replaced the value.
- 13 stable: a value that never changes; evidence = the turn that stated it first.

Each conversation draws from its own `random.Random(f"{seed}:{index}")`: the same seed and GENERATOR_VERSION give
byte-identical files, and the first N conversations do not depend on how many are generated."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

from .updates_plan import MAX_PEOPLE, Event, Plan, Timeline, make_plan
from .updates_slots import SLOTS, ask, render
from .updates_talk import CLOSINGS, FOLLOW_UPS, GREETINGS, LEADS, NEWS_REACTIONS, OPENERS, SMALL_TALK, STEADY_REACTIONS

GENERATOR_VERSION = "1"  # bump whenever the same arguments produce different output
DEFAULT_SLOTS_PER_PERSON = 7
CURRENT, HISTORY, STABLE = 11, 12, 13  # registered in types.CATEGORY_NAMES
MONTHS = ("January February March April May June July August September October November December").split()


class GeneratorInputError(ValueError):
    """Bad arguments to the generator: the message names the argument and the fix."""


@dataclass(frozen=True)
class Params:
    seed: int = 0
    conversations: int = 10
    sessions: int = 8
    people: int = 2
    slots: tuple[str, ...] = tuple(SLOTS)
    slots_per_person: int | None = None  # None: min(DEFAULT_SLOTS_PER_PERSON, len(slots))

    def checked(self) -> Params:
        """These parameters with `slots_per_person` filled in; GeneratorInputError on anything out of range."""

        def whole(name: str, value: object, low: int, fix: str, high: int | None = None) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value < low or (high and value > high):
                span = f"an integer >= {low}" + (f" and <= {high}" if high else "")
                raise GeneratorInputError(f"{name}={value!r}: must be {span} (fix: {fix})")

        whole("seed", self.seed, 0, "--seed 0, or any non-negative integer")
        whole("conversations", self.conversations, 1, "--conversations 10")
        whole("sessions", self.sessions, 2, "--sessions 8: a fact needs two sessions to change", 50)
        whole("people", self.people, 1, "--people 2 (the two speakers; 3-4 add a relative of each)", MAX_PEOPLE)
        slots = tuple(self.slots)
        unknown = [s for s in slots if s not in SLOTS]
        if unknown or not slots:
            what = f"unknown slot(s) {unknown}" if unknown else "no slots"
            raise GeneratorInputError(f"{what}: known slots are {', '.join(SLOTS)} (fix: --slots home,job,pet)")
        if len(set(slots)) != len(slots):
            raise GeneratorInputError(f"slots {list(slots)} repeat a name (fix: name each slot once)")
        per = self.slots_per_person
        if per is None:
            per = min(DEFAULT_SLOTS_PER_PERSON, len(slots))
        whole(
            "slots_per_person", per, 1, f"--slots-per-person {min(len(slots), 7)} (at most the slots given)", len(slots)
        )
        return Params(self.seed, self.conversations, self.sessions, self.people, slots, per)


def generate(params: Params) -> tuple[list[dict], dict]:
    """(the LOCOMO-layout conversations, the label file's content)."""
    p = params.checked()
    assert p.slots_per_person is not None
    conversations, decisions, timelines = [], [], {}
    for index in range(1, p.conversations + 1):
        rng = random.Random(f"{p.seed}:{index}")
        cid = f"upd-{index:02d}"
        plan = make_plan(rng, p.sessions, p.people, list(p.slots), p.slots_per_person)
        conv, said = _write(rng, cid, plan)
        conv["qa"] = _questions(rng, plan, said)
        conversations.append(conv)
        decisions += [row | {"conversation": cid} for row in said["decisions"]]
        timelines[cid] = [_timeline_row(t, said) for t in plan.timelines]
    labels = {
        "generator": "memtune-gen",
        "version": GENERATOR_VERSION,
        "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in p.__dict__.items()},
        "ops": "ADD: a first value of a (person, slot); UPDATE: a new value supersedes `previous` (whose turn is "
        "`supersedes`); NOOP: the current value restated in other words (its first statement is `restates`)",
        "decisions": decisions,
        "timelines": timelines,
    }
    return conversations, labels


def timestamp(day: date, rng: random.Random) -> str:
    """LOCOMO's session time format: "1:56 pm on 8 May, 2023"."""
    hour, minute = rng.randint(8, 21), rng.randrange(60)
    clock = f"{(hour - 1) % 12 + 1}:{minute:02d} {'am' if hour < 12 else 'pm'}"
    return f"{clock} on {day.day} {MONTHS[day.month - 1]}, {day.year}"


def _write(rng: random.Random, cid: str, plan: Plan) -> tuple[dict, dict]:
    a, b = plan.speakers
    conv: dict = {"speaker_a": a, "speaker_b": b}
    observation: dict = {}
    said: dict = {"first": {}, "decisions": []}  # first: (person, slot, value) -> dia_id of its first statement
    for s, day in enumerate(plan.dates, start=1):
        events = plan.events(s)
        rng.shuffle(events)
        turns: list[tuple[str, str, list[Event]]] = []  # (speaker, text, events stated in it)
        hello, bye = rng.choice(GREETINGS), rng.choice(CLOSINGS)
        turns += [(a, hello[0].format(a=a, b=b), []), (b, hello[1].format(a=a, b=b), [])]
        talk = rng.sample(SMALL_TALK, len(SMALL_TALK))
        i = 0
        while i < len(events):
            group = [events[i]]  # a quarter of the time, the teller states the next fact in the same turn
            if i + 1 < len(events) and events[i + 1].person.teller == group[0].person.teller and rng.random() < 0.25:
                group.append(events[i + 1])
            i += len(group)
            if talk and rng.random() < 0.4:
                turns += [(a, talk[-1][0], []), (b, talk.pop()[1], [])]
            text = rng.choice(LEADS) + " ".join(_statement(rng, e) for e in group)
            steady = all(e.op == "NOOP" for e in group)
            reaction = rng.choice(STEADY_REACTIONS if steady else NEWS_REACTIONS)
            if group[0].person.teller == a:
                turns += [(a, text, group), (b, reaction, [])]
            else:
                turns += [
                    (a, rng.choice(OPENERS), []),
                    (b, text, group),
                    (a, reaction, []),
                    (b, rng.choice(FOLLOW_UPS), []),
                ]
        turns += [(a, bye[0].format(a=a, b=b), []), (b, bye[1].format(a=a, b=b), [])]
        conv[f"session_{s}_date_time"] = timestamp(day, rng)
        conv[f"session_{s}"] = [
            {"speaker": sp, "dia_id": f"D{s}:{n}", "text": t} for n, (sp, t, _) in enumerate(turns, 1)
        ]
        facts: dict[str, list] = {}
        for n, (speaker, text, group) in enumerate(turns, start=1):
            for e in group:
                _label(said, e, f"D{s}:{n}", speaker, text)
                facts.setdefault(speaker, []).append(
                    [render(SLOTS[e.slot].fact, False, e.person.name, e.value), f"D{s}:{n}"]
                )
        if facts:
            observation[f"session_{s}_observation"] = facts
    return {"sample_id": cid, "conversation": conv, "observation": observation}, said


def _statement(rng: random.Random, e: Event) -> str:
    slot = SLOTS[e.slot]
    templates = {"ADD": slot.intro, "UPDATE": slot.change, "NOOP": slot.restate}[e.op]
    return render(rng.choice(templates), e.person.first_person, e.person.ref, e.value, e.previous)


def _label(said: dict, e: Event, dia_id: str, speaker: str, text: str) -> None:
    key = (e.person.name, e.slot)
    first = said["first"]
    row: dict[str, str | None] = {
        "dia_id": dia_id,
        "speaker": speaker,
        "subject": e.person.name,
        "slot": e.slot,
        "op": e.op,
    }
    row |= {"value": e.value, "previous": e.previous or None, "text": text}
    if e.op == "UPDATE":
        row["supersedes"] = first[(*key, e.previous)]
    if e.op == "NOOP":
        row["restates"] = first[(*key, e.value)]
    else:
        first[(*key, e.value)] = dia_id
    said["decisions"].append(row)


def _timeline_row(t: Timeline, said: dict) -> dict:
    restated: dict[str, list[str]] = {}
    for row in said["decisions"]:
        if row["op"] == "NOOP" and (row["subject"], row["slot"]) == (t.person.name, t.slot):
            restated.setdefault(row["value"], []).append(row["dia_id"])
    values = [
        {"value": v, "session": s, "stated": said["first"][(t.person.name, t.slot, v)], "restated": restated.get(v, [])}
        for v, s in t.values
    ]
    return {"subject": t.person.name, "teller": t.person.teller, "slot": t.slot, "changes": t.changes, "values": values}


def _questions(rng: random.Random, plan: Plan, said: dict) -> list[dict]:
    qa = []
    for t in plan.timelines:
        slot, name = SLOTS[t.slot], t.person.name
        stated = [said["first"][(name, t.slot, v)] for v, _ in t.values]
        if not t.changes:
            qa.append(_qa(ask(slot.stable_q, name), t.values[0][0], stated[0], STABLE))
            continue
        qa.append(_qa(ask(slot.current_q, name), t.values[-1][0], stated[-1], CURRENT))
        for i, (old, s) in enumerate(t.values[:-1]):
            new, replaced = t.values[i + 1]
            months = _months_inside(plan.dates[s - 1], plan.dates[replaced - 1])
            forms = ([ask(slot.when_q, name, when=rng.choice(months))] if slot.when_q and months else []) + (
                [ask(slot.before_q, name, new=new)] if slot.before_q else []
            )
            if forms:
                qa.append(_qa(rng.choice(forms), old, stated[i], HISTORY))
    return qa


def _qa(question: str, answer: str, evidence: str, category: int) -> dict:
    return {"question": question, "answer": answer, "evidence": [evidence], "category": category}


def _months_inside(start: date, end: date) -> list[str]:
    """Months that begin after `start` and end before the month of `end` begins ("May 2023")."""
    out: list[str] = []
    day = date(start.year, start.month, 1)
    while True:
        day = (day + timedelta(days=32)).replace(day=1)
        after = (day + timedelta(days=32)).replace(day=1)
        if after > date(end.year, end.month, 1):
            return out
        out.append(f"{MONTHS[day.month - 1]} {day.year}")
