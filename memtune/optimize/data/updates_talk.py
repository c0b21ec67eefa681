"""The small talk of `memtune-gen` around the facts: names, greetings, openers, reactions and filler exchanges.
None of these lines states a slot value (tests/test_updates_gen.py checks every generated turn that carries no
labelled fact against every value of updates_slots.SLOTS), so the only fact-bearing turns are the labelled ones.
``{a}`` / ``{b}`` are speaker A's / speaker B's names."""

from __future__ import annotations

NAMES = (
    "Alice", "Bruno", "Chloe", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Keiko", "Luca",
    "Maya", "Nikhil", "Olga", "Pavel", "Quinn", "Rosa", "Samir", "Tessa", "Umar", "Vera", "Wes", "Ximena",
    "Yusuf", "Zoe", "Amara", "Boris", "Carmen", "Diego", "Esther", "Felix", "Hana", "Ivan", "Julia", "Kofi",
)  # fmt: skip
RELATIONS = ("sister", "brother", "cousin", "best friend", "neighbour", "flatmate")

GREETINGS = (
    ("Hi {b}! How have you been?", "Hey {a}! Busy as always, but good."),
    ("Hey {b}, long time no talk!", "I know, {a}! Great to hear from you."),
    ("Good to hear from you, {b}.", "Likewise, {a}. It has been too long."),
    ("{b}! It's been a while.", "It really has, {a}. How are you?"),
    ("Hello {b}, do you have a minute to catch up?", "Of course, {a}, I was hoping you'd call."),
    ("Morning {b}! Coffee and a chat?", "Always, {a}. Let's catch up."),
)
CLOSINGS = (
    ("I should get going, talk soon!", "Bye {a}, take care!"),
    ("Let's do this again next month.", "Definitely, {a}. Talk soon."),
    ("It was great catching up, {b}.", "Same here. Say hi to everyone for me."),
    ("I have a meeting now, but this was nice.", "Good luck with it, {a}!"),
)
OPENERS = (  # speaker A invites speaker B's news
    "What's new with you?",
    "Any news on your side?",
    "How are things going with you?",
    "Tell me what has been happening with you.",
    "Anything exciting going on?",
    "And you? Any updates?",
)
LEADS = ("", "", "", "Guess what? ", "Quick update: ", "Oh, one more thing. ", "So, news from me: ")
NEWS_REACTIONS = (
    "Wow, that's a big change!",
    "Good for you!",
    "That sounds lovely.",
    "Oh, nice to hear.",
    "I didn't see that coming!",
    "Happy to hear it.",
    "Interesting, tell me more some time.",
    "That makes sense.",
)
STEADY_REACTIONS = (  # after a restatement: nothing new
    "Good to hear things are steady.",
    "Some things never change!",
    "Glad that is still working out.",
    "Nice, consistency is underrated.",
    "Sounds like a good routine.",
)
FOLLOW_UPS = (  # speaker B answers speaker A's reaction
    "Thanks!",
    "Yes, we'll see how it goes.",
    "Anyway, enough about that.",
    "It's been a lot, honestly.",
    "Thanks, I appreciate it.",
)
SMALL_TALK = (
    ("The weather has been strange lately.", "Tell me about it, sunshine one day and storms the next."),
    ("Did you watch anything good recently?", "I finished a documentary about deep-sea creatures. Fascinating."),
    ("Work has been hectic this week.", "Same here, I can't wait for the weekend."),
    ("I tried a new recipe for dinner yesterday.", "Oh? How did it turn out?"),
    ("Have you read any good books lately?", "A mystery novel, I couldn't put it down."),
    ("My phone screen cracked again.", "Oh no, time for a sturdier case."),
    ("I finally cleaned out the garage.", "That must feel great. Mine is a disaster."),
    ("There's a new bakery near my place.", "Lucky you, fresh croissants every morning."),
    ("I've been sleeping badly this week.", "Try less screen time before bed, it helps me."),
    ("Did you hear about the power cut downtown?", "Yes, half the street was dark for hours."),
    ("I started a podcast about history.", "Listening to one or making one?"),
    ("My neighbours are renovating again.", "The drilling must be driving you mad."),
    ("I lost my umbrella on the bus.", "Third one this year, right?"),
    ("We had a fun board game night on Friday.", "Sounds fun, invite me next time."),
)
