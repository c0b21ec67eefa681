"""The slots of `memtune-gen` (home, job, employer, pet, relationship, diet, commute, car, exercise, hobby, plan):
their values, the sentences that state a value for the first time (intro), change it (change) or restate it in
other words (restate), the canonical fact (the `observation` oracle) and the question of each kind.

Template syntax (rendered by `render`): ``[first|third]`` picks the first-person form for a speaker talking about
themself and the third-person form for a relative they talk about; ``@`` is that relative ("my sister Dana");
``{v}`` / ``{old}`` the value / the value it replaces; ``{a_v}`` / ``{a_old}`` the same with "a"/"an". Question
templates take ``{P}`` (the person's name), ``{v}``, ``{a_v}``, ``{new}``, ``{a_new}`` and ``{when}`` ("May 2023").
A question template of None: that form is not asked for the slot."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Slot:
    name: str
    values: tuple[str, ...]
    intro: tuple[str, ...]
    change: tuple[str, ...]
    restate: tuple[str, ...]
    fact: str  # the canonical third-person fact, e.g. "@ lives in {v}." (@ = the name)
    current_q: str  # "... now?": gold = the latest value
    stable_q: str  # a value that never changes
    before_q: str | None  # history: the value before {new}
    when_q: str | None  # history: the value in {when}
    sequential: bool = False  # values change in list order (single -> in a relationship -> engaged -> married)


SLOTS: dict[str, Slot] = {
    s.name: s
    for s in (
        Slot(
            "home",
            ("Porto", "Lisbon", "Berlin", "Denver", "Austin", "Toronto", "Melbourne", "Edinburgh", "Lyon", "Seattle")
            + ("Madrid", "Vienna", "Dublin", "Montreal", "Krakow", "Osaka"),
            ("[I|@] [live|lives] in {v}.", "[I've|@ has] been living in {v} for a few years now."),
            ("[I|@] just moved to {v}!", "[I|@] finally left {old} and moved to {v}.", "[I'm|@ is] living in {v} now."),
            ("[I|@] still [live|lives] in {v}.", "{v} is still home for [me|@].", "[I'm|@ is] still based in {v}."),
            "@ lives in {v}.",
            "Where does {P} live now?",
            "Where does {P} live?",
            "Where did {P} live before moving to {new}?",
            "Where did {P} live in {when}?",
        ),
        Slot(
            "job",
            ("nurse", "architect", "software engineer", "high school teacher", "accountant", "chef", "pharmacist")
            + ("graphic designer", "electrician", "physiotherapist", "journalist", "urban planner"),
            ("[I|@] [work|works] as {a_v}.", "[I'm|@ is] {a_v}, and [have|has] been for a while."),
            ("[I|@] just started a new job as {a_v}!", "[I|@] stopped being {a_old} and now [work|works] as {a_v}.")
            + ("[I've|@ has] switched careers: [I'm|@ is] {a_v} now.",),
            ("[I'm|@ is] still working as {a_v}.", "Being {a_v} is still [my|@'s] day job."),
            "@ works as {a_v}.",
            "What does {P} do for a living now?",
            "What does {P} do for a living?",
            "What did {P} do for a living before becoming {a_new}?",
            "What was {P}'s job in {when}?",
        ),
        Slot(
            "employer",
            ("Northwind Logistics", "Brightline Health", "Copperleaf Studios", "Bluefin Analytics", "Redwood Bank")
            + ("Harbor Foods", "Lumen Energy", "Quartz Labs", "Maple Insurance", "Silverline Media", "Orbit Airlines"),
            ("[I|@] [work|works] at {v}.", "[My|@'s] employer is {v}."),
            ("[I|@] just joined {v}!", "[I|@] left {old} and started at {v}.", "[I|@] got hired by {v}."),
            ("[I'm|@ is] still at {v}.", "{v} is still [my|@'s] employer."),
            "@ works at {v}.",
            "Which company does {P} work for now?",
            "Which company does {P} work for?",
            "Which company did {P} work for before joining {new}?",
            "Which company was {P} working for in {when}?",
        ),
        Slot(
            "pet",
            ("tabby cat", "golden retriever", "beagle", "parrot", "hamster", "corgi", "tortoise", "ferret")
            + ("border collie", "Siamese cat"),
            ("[I|@] [have|has] {a_v} at home.", "[My|@'s] {v} is great company."),
            ("[I|@] just adopted {a_v}!", "The {old} went to live with a relative, and [I|@] got {a_v} instead."),
            ("[My|@'s] {v} is doing great.", "The {v} is still [my|@'s] best friend."),
            "@ has {a_v}.",
            "What pet does {P} have now?",
            "What pet does {P} have?",
            "What pet did {P} have before getting the {new}?",
            "What pet did {P} have in {when}?",
        ),
        Slot(
            "relationship",
            ("single", "in a relationship", "engaged", "married"),
            ("[I'm|@ is] {v} these days.", "Relationship-wise, [I'm|@ is] {v}."),
            ("Big personal news: [I'm|@ is] officially {v}.", "Update on the love front: [I'm|@ is] {v} now."),
            ("[I'm|@ is] still {v}.", "Nothing new on [my|@'s] love front: still {v}."),
            "@ is {v}.",
            "What is {P}'s relationship status now?",
            "What is {P}'s relationship status?",
            None,
            "What was {P}'s relationship status in {when}?",
            sequential=True,
        ),
        Slot(
            "diet",
            ("vegetarian", "vegan", "pescatarian", "keto", "gluten-free", "dairy-free"),
            ("[I'm|@ is] on a {v} diet.", "[I|@] [eat|eats] {v}, mostly."),
            ("[I|@] switched to a {v} diet.", "[I|@] gave up the {old} diet and [am|is] eating {v} now."),
            ("[I'm|@ is] still eating {v}.", "[My|@'s] diet is still {v}."),
            "@ follows a {v} diet.",
            "What diet does {P} follow now?",
            "What diet does {P} follow?",
            "What diet did {P} follow before going {new}?",
            "What diet was {P} following in {when}?",
        ),
        Slot(
            "commute",
            ("by bike", "by train", "by bus", "by car", "on foot", "by scooter", "by tram", "by ferry"),
            ("[I|@] [get|gets] to work {v}.", "[My|@'s] commute is {v}."),
            ("[I've|@ has] started commuting {v}.", "[I|@] stopped going {old} and now [commute|commutes] {v}."),
            ("[I|@] still [commute|commutes] {v}.", "Going to work {v} is still [my|@'s] routine."),
            "@ commutes to work {v}.",
            "How does {P} get to work now?",
            "How does {P} get to work?",
            "How did {P} get to work before switching to commuting {new}?",
            "How did {P} get to work in {when}?",
        ),
        Slot(
            "car",
            ("Mazda 3", "Volvo XC40", "Toyota Corolla", "Tesla Model 3", "Fiat Panda", "Subaru Outback")
            + ("Honda Civic", "Kia Niro", "Volkswagen Golf", "Renault Clio"),
            ("[I|@] [drive|drives] {a_v}.", "[My|@'s] car is {a_v}."),
            ("[I|@] sold the {old} and bought {a_v}.", "[I|@] just got {a_v}!"),
            ("[I'm|@ is] still driving the {v}.", "The {v} still runs fine for [me|@]."),
            "@ drives {a_v}.",
            "What car does {P} drive now?",
            "What car does {P} drive?",
            "What car did {P} drive before the {new}?",
            "What car did {P} drive in {when}?",
        ),
        Slot(
            "exercise",
            ("running", "swimming", "yoga", "cycling", "rock climbing", "pilates", "boxing", "rowing", "tennis"),
            ("[My|@'s] workout of choice is {v}.", "[I'm|@ is] really into {v} for fitness."),
            ("[I've|@ has] taken up {v}.", "[I|@] switched from {old} to {v} for exercise."),
            ("[I'm|@ is] still doing {v} a few times a week.", "{v} is still [my|@'s] main workout."),
            "@ does {v} for exercise.",
            "What does {P} do for exercise now?",
            "What does {P} do for exercise?",
            "What did {P} do for exercise before taking up {new}?",
            "What did {P} do for exercise in {when}?",
        ),
        Slot(
            "hobby",
            ("painting", "chess", "pottery", "gardening", "birdwatching", "baking bread", "knitting", "photography")
            + ("playing guitar", "woodworking"),
            ("[My|@'s] favourite pastime is {v}.", "[I|@] [spend|spends] most weekends on {v}."),
            ("[I've|@ has] gotten really into {v} lately.", "[I|@] lost interest in {old}; {v} is the new hobby."),
            ("[I'm|@ is] still hooked on {v}.", "{v} is still how [I|@] [unwind|unwinds]."),
            "@'s hobby is {v}.",
            "What is {P}'s hobby now?",
            "What is {P}'s hobby?",
            "What was {P}'s hobby before {new}?",
            "What was {P}'s hobby in {when}?",
        ),
        Slot(
            "plan",
            ("Japan", "Peru", "Iceland", "Morocco", "New Zealand", "Vietnam", "Norway", "Chile", "Kenya", "Greece"),
            ("[I'm|@ is] planning a big trip to {v} next year.", "Next on [my|@'s] travel list is {v}."),
            ("Change of plans: [I'm|@ is] going to {v} instead of {old}.", "[I|@] dropped the {old} trip for {v}."),
            ("[My|@'s] {v} trip is still on.", "[I'm|@ is] still set on going to {v}."),
            "@ plans to travel to {v}.",
            "Where is {P} planning to travel now?",
            "Where is {P} planning to travel?",
            "Where was {P} planning to travel before choosing {new}?",
            "Where was {P} planning to travel in {when}?",
        ),
    )
}

_PERSON = re.compile(r"\[([^\[\]|]*)\|([^\[\]|]*)\]")


def article(word: str) -> str:
    """``"an architect"``, ``"a nurse"``."""
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def render(template: str, first_person: bool, ref: str, value: str, old: str = "") -> str:
    """One statement: the person form picked, @ -> `ref`, the values filled in, the first letter capitalised."""
    text = _PERSON.sub(lambda m: m.group(1) if first_person else m.group(2), template)
    text = text.replace("@", ref).replace("{a_v}", article(value)).replace("{a_old}", article(old) if old else "")
    return capitalise(text.replace("{v}", value).replace("{old}", old))


def ask(template: str, name: str, value: str = "", new: str = "", when: str = "") -> str:
    """One question: {P} -> the name, {v}/{a_v}, {new}/{a_new}, {when}."""
    text = template.replace("{P}", name).replace("{a_new}", article(new) if new else "").replace("{new}", new)
    return text.replace("{a_v}", article(value) if value else "").replace("{v}", value).replace("{when}", when)
