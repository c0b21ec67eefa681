"""Word lists of slot detection (slot_lexicon.py, slots.py): the kinds of things a single-valued attribute can hold
(pets, jobs, diets, cars, workouts), the words that shape a value, and the words that say whose it is."""

from __future__ import annotations

import re

PETS = (
    r"(?:dog|cat|puppy|kitten|parrot|rabbit|bunny|hamster|turtle|tortoise|goldfish|snake|horse|pony|lizard|ferret|"
    r"gecko|iguana|budgie|canary|cockatiel|guinea\s+pig|retriever|labrador|beagle|poodle|corgi|collie|terrier|"
    r"spaniel|bulldog|husky|dachshund|shepherd|chihuahua|pug|greyhound|dalmatian)"
)
JOBS = (
    r"(?:teacher|nurse|engineer|developer|programmer|doctor|designer|chef|cook|lawyer|accountant|manager|"
    r"consultant|writer|journalist|artist|photographer|musician|pharmacist|dentist|architect|scientist|"
    r"researcher|librarian|barista|waiter|waitress|cashier|mechanic|electrician|plumber|firefighter|planner|"
    r"police\s+officer|pilot|analyst|therapist|physiotherapist|counselor|counsellor|veterinarian|vet|"
    r"paramedic|carpenter|baker|farmer|salesperson|recruiter|freelancer|intern|professor|surgeon|translator)"
)
DIETS = r"(?:vegetarian|vegan|pescatarian|keto|paleo|gluten[- ]free|dairy[- ]free|plant[- ]based|carnivore)"
CARS = (
    r"(?:car|suv|truck|van|tesla|toyota|honda|ford|bmw|audi|volkswagen|vw|fiat|kia|hyundai|subaru|nissan|mazda|"
    r"volvo|jeep|chevy|chevrolet|mercedes|prius|civic|corolla|renault|peugeot|skoda|porsche|lexus|mini\s+cooper)"
)
MODES = (
    r"(?:bike|bikes|biking|cycle|cycles|cycling|drive|drives|driving|walk|walks|walking|ride|rides|riding|take|"
    r"takes|taking|run|runs|running)"
)
STATUS = r"(?:single|married|engaged|divorced|separated|widowed|in\s+a\s+relationship)"
# "taken up X", "really into X", "hooked on X": a workout when X is one of these, else a hobby
WORKOUTS = frozenset(
    """running swimming yoga cycling climbing pilates boxing rowing tennis gym crossfit weightlifting lifting
    jogging spinning zumba dance dancing martial karate judo squash badminton football soccer basketball hiking
    triathlon skating surfing""".split()
)

# A clause saying the value no longer holds: "I don't live in Lisbon anymore", "I stopped being vegetarian",
# "we broke up", "I left my job at Acme", "I used to work at Acme", "my cat died", "I sold my car".
NEGATION = re.compile(
    r"\b(?:not|no\s+longer|never|stopped|stop|quit|quitting|gave\s+up|give\s+up|anymore|any\s+more|used\s+to|"
    r"broke\s+up|split\s+up|divorced|separated|sold|left|leaving|lost|out\s+of|passed\s+away|died|ran\s+away|"
    r"former|ex|dropped)\b|n't\b",
    re.IGNORECASE,
)
# Words that carry no value: time, degree and filler words, and predicate words a value group can hold.
VALUE_STOP = frozenset(
    """now currently these days day since recently lately today yesterday week weeks month months year years last ago
    just really actually finally anymore longer again new still officially already soon next first time back few
    named called name pet being be become became full part permanently happily mostly instead big
    take taking ride riding commute commuting by via work office place house apartment flat home going go get
    trip travel fitness exercise workout hobby diet eating eat""".split()
)
# One word per value: modes of transport and habits said in several forms ("biking" = "bike").
VALUE_LEMMAS = {
    "bikes": "bike",
    "biking": "bike",
    "cycle": "bike",
    "cycles": "bike",
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
# Where a value ends.
CLAUSE_END = re.compile(
    r"[,;:.!?()]|\s[-–—]\s|\b(?:and|but|because|so|although|though|while|whereas|which|where|who|since|after|"
    r"before|when|until|for|with\s+my|as\s+an?|instead)\b",
    re.IGNORECASE,
)
KIN = re.compile(
    r"\bmy\s+(sister|brother|mom|mother|mum|dad|father|son|daughter|wife|husband|partner|boyfriend|girlfriend|"
    r"friend|cousin|aunt|uncle|grandma|grandmother|grandpa|grandfather|boss|roommate|neighbou?r|parents|kids)"
    r"(?:\s+((?-i:[A-Z])[a-z]+))?",
    re.IGNORECASE,
)
FIRST_PERSON = re.compile(r"\b(?:i|i'm|i've|i'd|i'll|me|my|mine|we|we're|we've|us|our)\b", re.IGNORECASE)
SECOND_PERSON = re.compile(r"\b(?:you|you're|you've|your|yours)\b", re.IGNORECASE)
NAME = re.compile(r"\b[A-Z][a-z]+\b")
NOT_NAMES = frozenset(
    """I I'm I've My We Our The A An So And But Now Today Yesterday Finally Well Yes No Oh Hey Also Actually Recently
    Last This That It After Before Since Just Then Anyway Guess Honestly Sadly Luckily Still Next When While Lately
    Currently These Those Since Plus Even Yeah Wow Sure Ok Okay Thanks Thank Mom Dad Big Quick News Update Change
    Nothing Relationship Going Being Sold Bought Got""".split()
)


def _words(*words: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(words) + r")\b", re.IGNORECASE)


# Which attribute a question asks about (slot_rank.py), first match wins: "get to work" is a commute, not a job.
QUESTION_WORDS: list[tuple[str, re.Pattern[str]]] = [
    ("commute", _words(r"get\s+to\s+work", r"go\s+to\s+work", "commute", "commutes", "commuting")),
    ("employer", _words("company", "employer", r"work\s+for", r"working\s+for", "firm")),
    ("job", _words(r"for\s+a\s+living", "job", "profession", "occupation", "career", r"work\s+as")),
    ("exercise", _words("exercise", "workout", "fitness", "sport")),
    ("hobby", _words("hobby", "hobbies", "pastime", r"free\s+time")),
    ("plan", _words("travel", "trip", "vacation", "holiday")),
    ("home", _words("live", "lives", "living", "home", "based", "moved", "move")),
    ("pet", _words("pet", "pets", "dog", "cat", "animal")),
    ("car", _words("car", "drive", "drives", "vehicle")),
    ("relationship", _words("relationship", "married", "dating", "partner", "single", "engaged")),
    ("diet", _words("diet", "vegetarian", "vegan", "eat", "eats")),
]
