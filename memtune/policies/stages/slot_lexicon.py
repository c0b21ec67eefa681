"""The attribute lexicon of slot detection (slots.py): which predicates name a single-valued attribute of a person
(one home, one job, one diet at a time). Word lists are in slot_words.py.

Each attribute has regular expressions matched case-insensitively against one clause. A match names the
attribute; the value is the pattern's `value` group when it has one, else the rest of the clause after the match
(up to slot_words.CLAUSE_END). `(?-i:[A-Z])` asks for a capital letter (a name: "joined Quartz Labs", not "joined a
club"). Only attributes listed here are slots: a predicate outside the lexicon ("I went to", "I love") is
multi-valued and never superseded, like the graph's SINGLE_VALUED relations (graph/update.py). The attribute
`activity` ("taken up X", "really into X") is resolved by its value: a workout (slot_words.WORKOUTS) or a hobby.
"""

from __future__ import annotations

import re

from .slot_words import CARS, DIETS, JOBS, MODES, PETS, STATUS

_NAME = r"(?-i:[A-Z])[\w&'-]*(?:\s+(?-i:[A-Z])[\w&'-]*)*"  # a capitalised name of one or more words
_WHOSE = r"(?:my|our|(?-i:[A-Z])\w+'s)"  # my / our / Dana's
_THING = r"^\s*[\w-]+(?:\s+[\w-]+)?"  # one or two words opening the clause: "woodworking is the new hobby"
_BE = r"(?:am|I'm|is|are|be|being|been|became|become|becoming|went|going|gone|turned|stay|staying|stayed|still)"

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "home": (
        r"\b(?:live|lives|living|lived|reside|resides|residing)\s+in\b",
        r"\b(?:moved|move|moves|moving|relocated|relocating|relocate)\s+(?:back\s+)?(?:to|into|out\s+of)\b",
        rf"\b{_WHOSE}\s+(?:new\s+)?(?:home|house|apartment|flat|place)\s+is\s+(?:now\s+)?in\b",
        r"\bbased\s+in\b",
        rf"(?P<value>{_NAME})\s+is\s+(?:now\s+|still\s+)?(?:{_WHOSE}\s+)?(?:new\s+)?home\b",
    ),
    "job": (
        r"\b(?:work|works|working|worked)\s+as\b(?!\s+a\s+team\b)",
        r"\b(?:job|position|role|career)\s+as\b",
        r"\b(?:employed|hired)\s+as\b",
        rf"\b{_WHOSE}\s+(?:job|profession|occupation)\s+is\b",
        rf"\b(?:I'm|I\s+am|is|now|being|became|become)\s+(?:now\s+|still\s+)?(?:a|an)\s+(?P<value>(?:[\w-]+\s+){{0,2}}{JOBS})\b",
    ),
    "employer": (
        r"\b(?:work|works|working|worked)\s+(?:at|for)\b(?!\s+a\s+team\b)",
        r"\b(?:employed|hired)\s+(?:at|by)\b",
        r"\b(?:job|position|role)\s+(?:at|with)\b",
        rf"\b{_WHOSE}\s+employer\s+is\b",
        rf"\b{_WHOSE}\s+(?:job|work)\s+is\s+(?:at|with|for)\b",
        rf"(?P<value>{_NAME})\s+is\s+(?:still\s+|now\s+)?{_WHOSE}\s+employer\b",
        rf"\b(?:joined|joining|started\s+at|starting\s+at|still\s+at)\s+(?P<value>{_NAME})",
    ),
    "pet": (
        rf"\b(?:have|has|had|got|get|adopted|adopt|adopting|own|owns|bought|rescued)\s+(?:a|an)\s+"
        rf"(?P<value>(?:[\w-]+\s+)?{PETS}s?\b(?:\s+(?:named|called)\s+\w+)?)",
        rf"\b{_WHOSE}\s+{PETS}(?:'s\s+name\s+is|\s+is\s+(?:called|named))\b",
        rf"\b(?:{_WHOSE}|the)\s+(?P<value>(?:[\w-]+\s+)?{PETS}(?:\s+(?-i:[A-Z])\w+)?)\s+(?:\w+\s+)?"
        r"(?:passed\s+away|died|ran\s+away|is|was)\b",
    ),
    "diet": (
        # a person's diet ("I'm vegan", "went vegetarian"), not a dish ("vegan ice cream", "dairy-free desserts")
        rf"\b(?:{_BE}|eat|eats|eating)\s+(?:(?:a|an|fully|strictly|strict|now|completely|mostly|committed)\s+){{0,3}}"
        rf"(?P<value>{DIETS})\b(?!\s+(?:ice|dessert|desserts|recipe|recipes|option|options|food|dish|dishes|meal|"
        r"meals|restaurant|cookbook|cheese|butter|milk|margarine|baking|cooking|version))",
        r"\beat(?:s|ing)?\s+(?P<value>meat)\b",
        r"\b(?:on|to|follow|follows|following)\s+(?:a|the)\s+(?P<value>[\w-]+(?:\s+[\w-]+)?)\s+diet\b",
        r"\bgave\s+up\s+(?:the|my)\s+(?P<value>[\w-]+)\s+diet\b",
        rf"\b{_WHOSE}\s+diet\s+is\b",
    ),
    "commute": (
        r"\bcommut(?:e|es|ing)\s+(?:to\s+work\s+)?(?:is\s+)?(?:by|on|via)?\b",
        rf"\b(?P<value>{MODES}(?:\s+(?:the|my|a)\s+\w+)?)\s+to\s+(?:work|the\s+office|the\s+studio|school|campus)\b",
        r"\b(?:get|gets|getting|got|go|goes|going|went)\s+to\s+work\s+(?P<value>by\s+\w+|on\s+foot)",
        r"\bto\s+work\s+(?:by|on)\b",
    ),
    "car": (
        r"\b(?:drive|drives|driving)\s+(?:a|an|the)\s+(?!lot\b|bit\b|long\b|few\b|kids\b)",
        rf"\b{_WHOSE}\s+(?:new\s+|current\s+)?car\s+is\s+(?:a|an)?\b",
        rf"\b(?:bought|got|leased|purchased|sold)\s+(?:a|an|the|my|myself\s+a)\s+(?:new\s+|used\s+)?"
        rf"(?P<value>(?:\w+\s+)?{CARS}(?:\s+[\w-]+)?)",
        rf"\b(?:the|my|our)\s+(?P<value>(?:\w+\s+)?{CARS}(?:\s+[\w-]+)?)\s+(?:still\s+)?(?:runs|works|drives)\b",
    ),
    "relationship": (
        r"\b(?:dating|engaged\s+to|married\s+to|in\s+a\s+relationship\s+with|going\s+out\s+with)\b",
        r"\bmy\s+(?:new\s+)?(?:girlfriend|boyfriend|partner|wife|husband|fianc[eé]e?)(?:'s\s+name)?\s+is\s+"
        r"(?P<value>(?-i:[A-Z])\w+)",
        r"\b(?:broke|split)\s+up\s+with\b",
        rf"\b(?:{_BE}|we're|got|getting|officially|now)\s+(?:now\s+|officially\s+|still\s+|happily\s+)?"
        rf"(?P<value>{STATUS})\b",
    ),
    "activity": (
        r"\b(?:taken|took|take|taking)\s+up\b",
        r"\b(?:gotten|got|getting|really)\s+into\s+(?P<value>[\w -]+?)(?=\s+(?:for|lately|recently|these)\b|$|[.,!;])",
        r"\bhooked\s+on\b",
        r"\bswitched\s+from\s+[\w -]+?\s+to\s+(?P<value>[\w -]+?)(?=\s+for\b|$|[.,!;])",
        r"\bdoing\s+(?P<value>[\w-]+(?:\s+[\w-]+)?)\s+(?:a\s+few\s+times|every|twice|several\s+times|three\s+times)\b",
        r"\b(?:does|do|doing|did)\s+(?P<value>[\w-]+(?:\s+[\w-]+)?)\s+for\s+(?:exercise|fitness)\b",
    ),
    "exercise": (
        rf"\b{_WHOSE}\s+workout\s+of\s+choice\s+is\b",
        rf"(?P<value>{_THING})\s+is\s+(?:still\s+)?{_WHOSE}\s+(?:main\s+|favou?rite\s+)?workout\b",
    ),
    "hobby": (
        rf"\b{_WHOSE}\s+(?:favou?rite\s+)?(?:pastime|hobby)\s+is\b",
        r"\bspends?\s+(?:most\s+|all\s+)?(?:weekends|evenings|free\s+time|spare\s+time)\s+(?:on|doing)\b",
        rf"(?P<value>{_THING})\s+is\s+(?:the|{_WHOSE})\s+new\s+hobby\b",
        rf"(?P<value>{_THING})\s+is\s+(?:still\s+)?how\s+\w+\s+unwinds?\b",
    ),
    "plan": (
        r"\bplanning\s+(?:a\s+)?(?:\w+\s+)?trip\s+to\b",
        r"\bplans?\s+to\s+(?:travel|go|fly)\s+to\b",
        rf"\bnext\s+on\s+{_WHOSE}\s+travel\s+list\s+is\b",
        rf"\bgoing\s+to\s+(?P<value>{_NAME})\s+instead\s+of\b",
        r"\bdropped\s+the\s+[\w ]+?\s+trip\s+for\b",
        rf"\b{_WHOSE}\s+(?P<value>{_NAME})\s+trip\s+is\s+(?:still\s+)?on\b",
        r"\bset\s+on\s+going\s+to\b",
    ),
    "study": (r"\b(?:study|studies|studying|enrolled|majoring)\s+(?:at|in)\b",),
    "smoking": (r"\b(?P<value>smoke|smokes|smoking|vape|vapes|vaping)\b",),
    "age": (r"\b(?:turned|turning)\s+(?P<value>\d{1,3})\b", r"\bI(?:'m|\s+am)\s+(?P<value>\d{1,3})\s+years?\s+old\b"),
    "favourite": (r"\bmy\s+(?:all[- ]time\s+)?favou?rite\s+(?P<attr>\w+)\s+(?:is|are)\b",),
}
PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(p, re.IGNORECASE)) for name, ps in ATTRIBUTES.items() for p in ps
]
