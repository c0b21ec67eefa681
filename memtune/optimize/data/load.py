"""One entry point for every dataset config: the file format (LOCOMO layout or LongMemEval, named by the config's
`format:` key or detected), and several files as one dataset (`path: [a.json, b.json]`).

Several files: each is loaded whole with its own format and rules, then the conversations are put together in
file order. Conversation ids must be unique across the files (LOCOMO's are conv-*, the generated set's upd-*,
LongMemEval's its question_ids): a clash is refused, naming the id and both files. `conversations` then selects
across all files. The merged dataset's path lists the files; its sha256 is the sha256 of their sha256s (in order),
so a cached ingestion or a resumed study sees any change to any file."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .locomo import load_locomo, resolve_path
from .longmemeval import load_longmemeval
from .types import Dataset, LoadReport

FORMATS = ("auto", "locomo", "longmemeval")


def detect_format(raw: Any, path: str | Path) -> str:
    """ "locomo" or "longmemeval" from a parsed file's first entry; ValueError when neither fits."""
    first = raw[0] if isinstance(raw, list) and raw else None
    if isinstance(first, dict) and ("haystack_sessions" in first or "question_id" in first):
        return "longmemeval"
    if isinstance(first, dict) and ("conversation" in first or "sample_id" in first):
        return "locomo"
    raise ValueError(
        f"{path}: cannot tell the format (neither a list of LOCOMO conversations with 'sample_id'/'conversation' "
        "nor of LongMemEval entries with 'question_id'/'haystack_sessions'). Fix: dataset.format=locomo or "
        "dataset.format=longmemeval, or point dataset.path at such a file."
    )


def load_one(
    path: str | Path,
    format: str = "auto",
    conversations: Sequence[str] | None = None,
    max_sessions: int | None = None,
    max_questions: int | None = None,
    question_types: Sequence[str] | None = None,
    question_date: bool = True,
) -> Dataset:
    if format not in FORMATS:
        raise ValueError(f"dataset.format={format!r}: must be one of {', '.join(FORMATS)} (fix: dataset.format=auto)")
    raw = None
    if format == "auto":
        resolved = resolve_path(path)
        if not resolved.is_file():  # the LOCOMO loader's error names the path and the fix
            return load_locomo(path)
        try:
            raw = json.loads(resolved.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return load_locomo(path)  # its error says what is wrong with the file
        format = detect_format(raw, resolved)
    if format == "longmemeval":
        return load_longmemeval(path, conversations, max_sessions, max_questions, question_types, question_date, raw)
    if question_types is not None:
        raise ValueError(f"{path}: dataset.question_types applies to LongMemEval files only (fix: null)")
    return load_locomo(path, conversations, max_sessions, max_questions)


def load_dataset(
    path: str | Path | Sequence[str | Path],
    format: str = "auto",
    conversations: Sequence[str] | None = None,
    max_sessions: int | None = None,
    max_questions: int | None = None,
    question_types: Sequence[str] | None = None,
    question_date: bool = True,
) -> Dataset:
    """One file, or several as one dataset (module docstring)."""
    if isinstance(path, (str, Path)):
        return load_one(path, format, conversations, max_sessions, max_questions, question_types, question_date)
    paths = list(path)
    if not paths:
        raise ValueError("dataset.path is an empty list (fix: name at least one file)")
    if isinstance(conversations, str):
        conversations = [conversations]
    parts = [load_one(p, format, None, max_sessions, max_questions, question_types, question_date) for p in paths]
    if len(parts) == 1:
        return _select(parts[0], conversations)
    owner: dict[str, str] = {}
    for part in parts:
        for conv in part.conversations:
            if conv.sample_id in owner:
                raise ValueError(
                    f"conversation id {conv.sample_id!r} is in both {owner[conv.sample_id]} and {part.path}: ids "
                    "must be unique across dataset.path's files (fix: load them one at a time, or rename one)"
                )
            owner[conv.sample_id] = part.path
    report = LoadReport([entry for part in parts for entry in part.report.entries])
    merged = Dataset(
        conversations=[conv for part in parts for conv in part.conversations],
        report=report,
        path=" + ".join(part.path for part in parts),
        sha256=hashlib.sha256("".join(part.sha256 for part in parts).encode()).hexdigest(),
    )
    return _select(merged, conversations)


def _select(dataset: Dataset, conversations: Sequence[str] | None) -> Dataset:
    if conversations is None:
        return dataset
    known = [c.sample_id for c in dataset.conversations]
    unknown = [c for c in conversations if c not in known]
    if unknown:
        raise ValueError(
            f"unknown conversation id(s) {unknown} in {dataset.path}. Available: {', '.join(known[:20])}"
            f"{' ...' if len(known) > 20 else ''}. Fix: dataset.conversations=[...] with available ids, or null."
        )
    wanted = set(conversations)
    kept = [c for c in dataset.conversations if c.sample_id in wanted]
    return Dataset(conversations=kept, report=dataset.report, path=dataset.path, sha256=dataset.sha256)


def load_from_config(ds: Mapping[str, Any]) -> Dataset:
    """The dataset a `conf/dataset/*.yaml` names: path (one file or a list), format (default auto),
    conversations, max_sessions, max_questions, and LongMemEval's question_types and question_date."""
    path = ds["path"]
    paths = path if isinstance(path, (str, Path)) else [str(p) for p in path]
    types = ds.get("question_types")
    selected = ds.get("conversations")
    if isinstance(selected, str):
        selected = [selected]
    return load_dataset(
        paths,
        format=str(ds.get("format") or "auto"),
        conversations=None if selected is None else [str(c) for c in selected],
        max_sessions=ds.get("max_sessions"),
        max_questions=ds.get("max_questions"),
        question_types=None if types is None else [str(t) for t in types],
        question_date=bool(ds.get("question_date", True)),
    )
