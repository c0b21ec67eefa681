"""`memtune-gen`: write conversations in which facts change (LOCOMO layout) and their label file.

    memtune-gen --out data/updates/updates.json                  # the shipped set: seed 0, 10 x 8 sessions
    memtune-gen --out /tmp/u.json --seed 7 --conversations 3 --sessions 5 --people 3 --slots home,job,diet
    memtune-gen --out data/updates/updates.json --check          # exit 1 unless the files are what the code writes

Writes OUT (load it with `dataset=updates` or `load_locomo(OUT)`) and, next to it, OUT's stem + ".labels.json"
(or --labels): the expected memory operation (ADD / UPDATE / NOOP) of every fact-bearing turn, and each person's
values per slot with the turns that state them (updates_gen.py). Prints the counts per question kind.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from collections import Counter
from pathlib import Path

from .types import CATEGORY_NAMES
from .updates_gen import GENERATOR_VERSION, GeneratorInputError, Params, generate


def dumps(obj: object) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def render_files(params: Params) -> tuple[str, str]:
    """(the conversations file's text, the label file's text): byte-identical for the same params and version."""
    conversations, labels = generate(params)
    text = dumps(conversations)
    labels = {**labels, "conversations_sha256": hashlib.sha256(text.encode()).hexdigest()}
    return text, dumps(labels)


def labels_path(out: Path) -> Path:
    return out.with_name(out.stem + ".labels.json")


def counts(text: str) -> str:
    data = json.loads(text)
    kinds = Counter(q["category"] for conv in data for q in conv["qa"])
    turns = sum(len(v) for conv in data for k, v in conv["conversation"].items() if re.fullmatch(r"session_\d+", k))
    per = ", ".join(f"{c} {CATEGORY_NAMES[c]}: {n}" for c, n in sorted(kinds.items()))
    return f"{len(data)} conversations, {turns} turns, {sum(kinds.values())} questions ({per})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="memtune-gen",
        description=f"Write LOCOMO-layout conversations in which facts change, and their labels "
        f"(generator version {GENERATOR_VERSION}).",
    )
    parser.add_argument("--out", required=True, metavar="PATH", help="the conversations file to write")
    parser.add_argument("--labels", metavar="PATH", help="the label file (default: <out stem>.labels.json)")
    parser.add_argument("--seed", type=int, default=0, help="non-negative integer (default 0)")
    parser.add_argument("--conversations", type=int, default=10, help="number of conversations (default 10)")
    parser.add_argument("--sessions", type=int, default=8, help="sessions per conversation, >= 2 (default 8)")
    parser.add_argument("--people", type=int, default=2, help="people with facts, 1-4 (default 2: both speakers)")
    parser.add_argument("--slots", default=",".join(Params.slots), help="comma-separated slots (default: all)")
    parser.add_argument("--slots-per-person", type=int, default=None, help="slots each person has (default 7)")
    parser.add_argument("--check", action="store_true", help="compare with the files on disk instead of writing")
    args = parser.parse_args(argv)
    slots = tuple(s.strip() for s in args.slots.split(",") if s.strip())
    params = Params(args.seed, args.conversations, args.sessions, args.people, slots, args.slots_per_person)
    try:
        text, labels = render_files(params)
    except GeneratorInputError as err:
        parser.exit(2, f"memtune-gen: error: {err}\n")
    out = Path(args.out)
    label_file = Path(args.labels) if args.labels else labels_path(out)
    if args.check:
        stale = [str(p) for p, t in ((out, text), (label_file, labels)) if not p.is_file() or p.read_text() != t]
        if stale:
            parser.exit(1, f"memtune-gen: {', '.join(stale)} differ from what version {GENERATOR_VERSION} writes\n")
        print(f"up to date: {out}, {label_file}: {counts(text)}")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    label_file.write_text(labels, encoding="utf-8")
    print(f"{out}: {counts(text)}\n{label_file}: labels")


if __name__ == "__main__":
    main()
