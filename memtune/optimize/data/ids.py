"""LOCOMO dia_ids ("D<session>:<turn>"): normalisation of the spellings found in the wild, and validation of id
lists against the turns of a conversation, every repair and drop recorded in the `LoadReport`."""

from __future__ import annotations

import re
from typing import Any

from .types import DROPPED_ID, REPAIRED, LoadReport

_ID_RE = re.compile(r"^D:?(\d+):(\d+)$", re.IGNORECASE)
_SPLIT_RE = re.compile(r"[;,\s]+")


def normalize_dia_id(raw: str) -> str | None:
    """``"D:11:26"`` -> ``"D11:26"``, ``"D30:05"`` -> ``"D30:5"``; None when it is not an id at all."""
    match = _ID_RE.match(raw.strip())
    if not match:
        return None
    return f"D{int(match.group(1))}:{int(match.group(2))}"


def normalize_ids(raw: Any, valid: set[str], item: str, what: str, report: LoadReport) -> tuple[tuple[str, ...], bool]:
    """Normalise a list (or string) of dia_ids. Returns (ids, had_any_input)."""
    if raw is None:
        raw = []
    if isinstance(raw, str):
        raw = [raw]
    out: list[str] = []
    seen_any = False
    for entry in raw:
        if not isinstance(entry, str):
            report.add(item, f"{what} id {entry!r} is not a string", DROPPED_ID)
            continue
        parts = [part for part in _SPLIT_RE.split(entry.strip()) if part]
        if len(parts) > 1:
            report.add(item, f"{what} {entry!r} holds {len(parts)} ids: split into {parts}", REPAIRED)
        for part in parts:
            seen_any = True
            norm = normalize_dia_id(part)
            if norm is None:
                report.add(item, f"malformed {what} id {part!r} (not D<session>:<turn>)", DROPPED_ID)
                continue
            if norm != part:
                report.add(item, f"malformed {what} id {part!r} -> {norm!r}", REPAIRED)
            if norm not in valid:
                report.add(item, f"{what} id {norm!r} is not a turn of this conversation", DROPPED_ID)
                continue
            if norm not in out:
                out.append(norm)
    return tuple(out), seen_any
