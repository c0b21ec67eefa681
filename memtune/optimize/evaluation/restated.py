"""Restated facts stored once: on a generated knowledge-update set (data/updates) whose label file
(`<stem>.labels.json`, written by memtune-gen beside the conversations) lists, per person and slot, each value with
the turn that stated it and the turns that restated it in other words.

For every value that was restated and still holds at the end of the conversation (the last value of its timeline):
the valid memories of the conversation that cite one of the value's turns (stated or restated) and whose text holds
the value's content words. `restated_once` = share of such values held by exactly one memory: 0 memories means the
fact was lost, 2 or more that a restatement was stored again. Values superseded later are left out (a hard policy
overwrites them, a soft one keeps them invalid: either way they no longer say whether the restatement was a copy).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from ...policies.provenance import content_words
from ...policies.types import MemoryRecord


def load_timelines(dataset_path: str, dataset_sha256: str) -> dict[str, list[dict]] | None:
    """{conversation id: timelines} from the label file beside the dataset's file (None without one). A label file
    written for other conversations (its conversations_sha256 differs) is refused: regenerate both."""
    paths = [Path(p) for p in str(dataset_path).split(" + ")]
    found = [p.with_name(p.stem + ".labels.json") for p in paths]
    if len(paths) != 1 or not found[0].is_file():
        return None
    labels = json.loads(found[0].read_text(encoding="utf-8"))
    if labels.get("conversations_sha256") not in (None, dataset_sha256):
        raise ValueError(
            f"{found[0]} was written for other conversations than {paths[0]} (conversations_sha256 differs): "
            "regenerate both with memtune-gen, or move the stale label file away"
        )
    return labels.get("timelines") or None


def restated_counts(memories: Sequence[MemoryRecord], timelines: Sequence[Mapping]) -> tuple[int, int]:
    """(restated values that still hold, those held by exactly one valid memory); see the module docstring."""
    valid = [m for m in memories if m.valid]
    words = {m.id: content_words(m.text) for m in valid}
    values = once = 0
    for timeline in timelines:
        last = timeline["values"][-1] if timeline["values"] else None
        if last is None or not last.get("restated"):
            continue
        turns = {last["stated"], *last["restated"]}
        wanted = content_words(last["value"])
        holding = [m for m in valid if turns & set(m.provenance) and wanted <= words[m.id]]
        values += 1
        once += len(holding) == 1
    return values, once
