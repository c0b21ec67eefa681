"""What happens in one `memtune-gen` conversation, before any sentence is written: who the people are, which slots
each has, when a value is first stated (ADD), changed (UPDATE) or restated (NOOP), and the session dates.

Rules (per person): `slots_per_person` slots are drawn; three sevenths of them (rounded down: 3 of 7) never change, the others
change once or twice (twice only with 3+ sessions) at distinct sessions after the one that introduced them, each
time to a value the person has not had in that slot (sequential slots move forward: single -> in a relationship
-> engaged -> married). A value is restated, in other words, with probability 1/2 in a session strictly after the
one that set it and before the one that replaced it; a never-changing value is restated 0-2 times."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta

from .updates_slots import SLOTS
from .updates_talk import NAMES, RELATIONS

MAX_PEOPLE = 4  # speaker A, speaker B, a relative of A (told by A), a relative of B (told by B)
FIRST_DAY = date(2022, 1, 1)  # the first session falls within 540 days of it
GAP_DAYS = (21, 75)  # days between two sessions


@dataclass(frozen=True)
class Person:
    name: str
    teller: str  # the speaker who states this person's facts
    ref: str = ""  # "" for a speaker (first person); "my sister Dana" for a relative (third person)

    @property
    def first_person(self) -> bool:
        return not self.ref


@dataclass
class Event:
    person: Person
    slot: str
    op: str  # ADD (a first value) | UPDATE (a new value replaces `previous`) | NOOP (the current value restated)
    value: str
    session: int
    previous: str = ""


@dataclass
class Timeline:
    """One person's values of one slot, in order: (value, session that set it)."""

    person: Person
    slot: str
    values: list[tuple[str, int]]
    restated: list[tuple[str, int]] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return len(self.values) > 1


@dataclass
class Plan:
    speakers: tuple[str, str]
    people: list[Person]
    dates: list[date]  # dates[i] = the date of session i + 1
    timelines: list[Timeline]

    def events(self, session: int) -> list[Event]:
        """The events of one session, in timeline order (the writer shuffles them)."""
        out: list[Event] = []
        for t in self.timelines:
            for i, (value, s) in enumerate(t.values):
                if s == session:
                    op, previous = ("ADD", "") if i == 0 else ("UPDATE", t.values[i - 1][0])
                    out.append(Event(t.person, t.slot, op, value, s, previous))
            out += [Event(t.person, t.slot, "NOOP", v, s) for v, s in t.restated if s == session]
        return out


def make_plan(rng: random.Random, sessions: int, people: int, slots: list[str], slots_per_person: int) -> Plan:
    names = rng.sample(NAMES, max(2, people))
    speakers = (names[0], names[1])
    persons = [Person(names[0], names[0]), Person(names[1], names[1])][:people]
    for i in range(2, people):  # relative of speaker A, then of speaker B
        teller = speakers[i - 2]
        persons.append(Person(names[i], teller, f"my {rng.choice(RELATIONS)} {names[i]}"))
    start = FIRST_DAY + timedelta(days=rng.randrange(540))
    dates = [start]
    for _ in range(sessions - 1):
        dates.append(dates[-1] + timedelta(days=rng.randint(*GAP_DAYS)))
    timelines: list[Timeline] = []
    for person in persons:
        chosen = rng.sample(slots, slots_per_person)
        n_stable = slots_per_person * 3 // 7
        for i, slot in enumerate(chosen):
            changing = i < slots_per_person - n_stable
            timelines.append(
                _changing(rng, person, slot, sessions) if changing else _stable(rng, person, slot, sessions)
            )
    return Plan(speakers, persons, dates, timelines)


def _changing(rng: random.Random, person: Person, slot: str, sessions: int) -> Timeline:
    pool = SLOTS[slot].values
    most = min(2, sessions - 1, len(pool) - 1)
    n = 1 if most == 1 else rng.choice((1, 2))
    intro = rng.randint(1, max(1, min(sessions - n, sessions // 3)))
    when = [intro, *sorted(rng.sample(range(intro + 1, sessions + 1), n))]
    if SLOTS[slot].sequential:
        first = rng.randrange(len(pool) - n)
        values = list(pool[first : first + n + 1])
    else:
        values = rng.sample(pool, n + 1)
    timeline = Timeline(person, slot, list(zip(values, when)))
    for i, (value, s) in enumerate(timeline.values):
        until = timeline.values[i + 1][1] if i + 1 < len(timeline.values) else sessions + 1
        between = list(range(s + 1, until))
        if between and rng.random() < 0.5:
            timeline.restated.append((value, rng.choice(between)))
    return timeline


def _stable(rng: random.Random, person: Person, slot: str, sessions: int) -> Timeline:
    intro = rng.randint(1, max(1, sessions // 2))
    value = rng.choice(SLOTS[slot].values)
    later = list(range(intro + 1, sessions + 1))
    n = min(len(later), rng.choice((0, 1, 1, 2)))
    return Timeline(person, slot, [(value, intro)], [(value, s) for s in sorted(rng.sample(later, n))])
