"""The attribute lexicon of slot detection (slots.py): which predicates name a single-valued attribute of a person
(one home, one job, one diet at a time), and the words that shape a value.

Each attribute has regular expressions matched case-insensitively against one clause. A match names the
attribute; the value is the pattern's `value` group when it has one, else the rest of the clause after the match.
A `attr` group refines the attribute ("my favourite book is ..." -> "favourite book"). Only attributes listed here
are slots: a predicate outside the lexicon ("I went to", "I love") is multi-valued and never superseded, like the
graph's SINGLE_VALUED relations (graph/update.py).
"""

from __future__ import annotations

import re

_PETS = r"(?:dog|cat|puppy|kitten|parrot|rabbit|bunny|hamster|turtle|tortoise|goldfish|snake|horse|pony|lizard|pet)"
_JOBS = (
    r"(?:teacher|nurse|engineer|developer|programmer|doctor|designer|chef|cook|lawyer|accountant|manager|"
    r"consultant|writer|journalist|artist|photographer|musician|pharmacist|dentist|architect|scientist|"
    r"researcher|librarian|barista|waiter|waitress|cashier|mechanic|electrician|plumber|firefighter|"
    r"police officer|pilot|student|analyst|therapist|counselor|counsellor|veterinarian|vet|paramedic|"
    r"carpenter|baker|farmer|salesperson|recruiter|freelancer|intern)"
)
_DIETS = r"(?:vegetarian|vegan|pescatarian|keto|paleo|gluten[- ]free|dairy[- ]free|plant[- ]based|carnivore)"
_CARS = (
    r"(?:car|suv|truck|van|tesla|toyota|honda|ford|bmw|audi|volkswagen|vw|fiat|kia|hyundai|subaru|nissan|mazda|"
    r"volvo|jeep|chevy|chevrolet|mercedes|prius|civic|corolla|mini|renault|peugeot|skoda)"
)
_MODES = r"(?:bike|bikes|biking|cycle|cycles|cycling|drive|drives|driving|walk|walks|walking|ride|rides|riding|take|takes|taking|run|runs|running)"

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "home": (
        r"\b(?:live|lives|living|lived|reside|resides|residing)\s+in\b",
        r"\b(?:moved|move|moves|moving|relocated|relocating|relocate)\s+(?:back\s+)?(?:to|into|out\s+of)\b",
        r"\b(?:my|our)\s+(?:new\s+)?(?:home|house|apartment|flat|place)\s+is\s+(?:now\s+)?in\b",
        r"\bbased\s+in\b",
        r"(?P<value>[\w' -]+?)\s+is\s+(?:now\s+)?(?:my|our)\s+(?:new\s+)?home\b",
    ),
    "job": (
        r"\b(?:work|works|working|worked)\s+(?:at|for|as)\b(?!\s+a\s+team\b)",
        r"\b(?:employed|hired)\s+(?:at|by|as)\b",
        r"\b(?:job|position|role)\s+(?:at|as|with)\b",
        r"\bmy\s+(?:job|profession|occupation)\s+is\b",
        rf"\bI(?:'m|\s+am)\s+(?:now\s+)?(?:a|an)\s+(?P<value>(?:\w+\s+)?{_JOBS})\b",
    ),
    "pet": (
        rf"\b(?:have|has|had|got|get|adopted|adopt|adopting|own|owns|bought|rescued)\s+(?:a|an)\s+"
        rf"(?:new\s+|little\s+|cute\s+|young\s+)?(?P<value>{_PETS}\b.*)",
        rf"\bmy\s+{_PETS}(?:'s\s+name\s+is|\s+is\s+(?:called|named))\b",
        rf"\b(?P<value>(?:my|our)\s+{_PETS}\s+\w+)\s+(?:passed\s+away|died|ran\s+away)\b",
    ),
    "diet": (
        # a person's diet ("I'm vegan", "went vegetarian"), not a dish ("vegan ice cream", "dairy-free desserts")
        rf"\b(?:am|I'm|is|are|be|being|been|became|become|becoming|went|going|gone|turned|stay|staying|stayed|eat|"
        rf"eating)\s+(?:(?:a|an|fully|strictly|strict|now|completely|mostly|still|committed|proud)\s+){{0,3}}"
        rf"(?P<value>{_DIETS})\b"
        r"(?!\s+(?:ice|dessert|desserts|recipe|recipes|option|options|food|dish|dishes|meal|meals|restaurant|cookbook|"
        r"cheese|butter|milk|margarine|baking|cooking|version))",
        r"\beat(?:s|ing)?\s+(?P<value>meat)\b",
        r"\bon\s+a\s+(?P<value>[\w-]+(?:\s+[\w-]+)?)\s+diet\b",
        r"\bmy\s+diet\s+is\b",
    ),
    "commute": (
        r"\bcommut(?:e|es|ing)\s+(?:to\s+work\s+)?(?:by|on|via)?\b",
        rf"\b(?P<value>{_MODES}(?:\s+(?:the|my|a)\s+\w+)?)\s+to\s+(?:work|the\s+office|the\s+studio|school|campus)\b",
        r"\bto\s+work\s+(?:by|on)\b",
    ),
    "car": (
        r"\b(?:drive|drives|driving)\s+(?:a|an)\s+(?!lot\b|bit\b|long\b|few\b)",
        r"\bmy\s+(?:new\s+|current\s+)?car\s+is\s+(?:a|an)?\b",
        rf"\b(?:bought|got|leased|purchased)\s+(?:a|an|myself\s+a)\s+(?:new\s+|used\s+)?(?P<value>(?:\w+\s+)?{_CARS})\b",
        r"\bsold\s+my\s+(?P<value>car)\b",
    ),
    "relationship": (
        r"\b(?:dating|engaged\s+to|married\s+to|in\s+a\s+relationship\s+with|going\s+out\s+with)\b",
        r"\bmy\s+(?:new\s+)?(?:girlfriend|boyfriend|partner|wife|husband|fianc[eé]e?)(?:'s\s+name)?\s+is\s+"
        r"(?P<value>(?-i:[A-Z])\w+)",
        r"\b(?:broke|split)\s+up\s+with\b",
        r"\b(?:I'm|I\s+am|we're|we\s+are|got|getting)\s+(?:now\s+)?(?P<value>single|married|engaged|divorced|separated)\b",
    ),
    "study": (r"\b(?:study|studies|studying|enrolled|majoring)\s+(?:at|in)\b",),
    "smoking": (r"\b(?P<value>smoke|smokes|smoking|vape|vapes|vaping)\b",),
    "age": (r"\b(?:turned|turning)\s+(?P<value>\d{1,3})\b", r"\bI(?:'m|\s+am)\s+(?P<value>\d{1,3})\s+years?\s+old\b"),
    "favourite": (r"\bmy\s+(?:all[- ]time\s+)?favou?rite\s+(?P<attr>\w+)\s+(?:is|are)\b",),
}
PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(p, re.IGNORECASE)) for name, ps in ATTRIBUTES.items() for p in ps
]

# A clause saying the value no longer holds: "I don't live in Lisbon anymore", "I stopped being vegetarian",
# "we broke up", "I left my job at Acme", "I used to work at Acme", "my cat died", "I sold my car".
NEGATION = re.compile(
    r"\b(?:not|no\s+longer|never|stopped|stop|quit|quitting|gave\s+up|give\s+up|anymore|any\s+more|used\s+to|"
    r"broke\s+up|split\s+up|divorced|separated|sold|left|leaving|lost|out\s+of|passed\s+away|died|ran\s+away|former|ex)\b"
    r"|n't\b",
    re.IGNORECASE,
)
# Words that carry no value: time, degree and filler words, and the predicate words a value group can hold.
VALUE_STOP = frozenset(
    """now currently these days day since recently lately today yesterday week weeks month months year years last ago
    just really actually finally anymore longer again new still officially already soon next first time back
    named called name named pet being be become became full part permanently happily
    take taking ride riding commute commuting by via work the office place house apartment flat home""".split()
)
# One word per value: modes of transport and habits said in several forms ("biking" = "bike").
VALUE_LEMMAS = {
    "bikes": "bike",
    "biking": "bike",
    "cycle": "bike",
    "cycles": "bike",
    "cycling": "bike",
    "bicycle": "bike",
    "drives": "drive",
    "driving": "drive",
    "walks": "walk",
    "walking": "walk",
    "foot": "walk",
    "runs": "run",
    "running": "run",
    "smokes": "smoke",
    "smoking": "smoke",
    "vapes": "vape",
    "vaping": "vape",
    "subway": "metro",
    "underground": "metro",
    "tube": "metro",
    "puppy": "dog",
    "kitten": "cat",
    "bunny": "rabbit",
}
# Pets come in numbers: "another dog" adds one, it does not replace the first.
ADDITIVE = re.compile(r"\b(?:another|second|third|also|too|more|both)\b", re.IGNORECASE)
# Clause boundaries: a value ends where the clause does.
CLAUSE_END = re.compile(
    r"[,;:.!?()]|\s[-–—]\s|\b(?:and|but|because|so|although|though|while|whereas|which|where|who|since|after|"
    r"before|when|until|with\s+my|for\s+the|as\s+a)\b",
    re.IGNORECASE,
)
KIN = re.compile(
    r"\bmy\s+(sister|brother|mom|mother|mum|dad|father|son|daughter|wife|husband|partner|boyfriend|girlfriend|"
    r"friend|cousin|aunt|uncle|grandma|grandmother|grandpa|grandfather|boss|roommate|neighbou?r|parents|kids)\b",
    re.IGNORECASE,
)
FIRST_PERSON = re.compile(r"\b(?:i|i'm|i've|i'd|i'll|me|my|mine|we|we're|we've|us|our)\b", re.IGNORECASE)
SECOND_PERSON = re.compile(r"\b(?:you|you're|you've|your|yours)\b", re.IGNORECASE)
NAME = re.compile(r"\b[A-Z][a-z]+\b")
NOT_NAMES = frozenset(
    """I I'm I've My We Our The A An So And But Now Today Yesterday Finally Well Yes No Oh Hey Also Actually Recently
    Last This That It After Before Since Just Then Anyway Guess Honestly Sadly Luckily Still Next When While Lately
    Currently These Those Since Plus Even Yeah Wow Sure Ok Okay Thanks Thank Mom Dad""".split()
)
