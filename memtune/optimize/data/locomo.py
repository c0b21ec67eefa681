"""LOCOMO loader with a validation report.

`load_locomo(path)` reads a file in the upstream ``locomo10.json`` layout (a JSON list of conversation
objects; see ``data/locomo/SOURCE.md``), repairs what can be repaired, skips what cannot, and records every
decision in a `LoadReport` as ``(item, problem, action)`` rows, where ``item`` names the thing in the file:
``conv-26`` (a conversation), ``conv-26:q37`` (the 38th entry of its ``qa`` list, 0-based), ``conv-26:D3:4``
(a turn), ``conv-26:session_20_date_time`` (a key), ``conv-44:obs:session_26`` (an observation block).

Rules (the same for the dev split, the full upstream file and the fixtures):

- Sessions are enumerated by their ``session_N`` keys, in numeric order. ``session_N_date_time`` keys with no
  ``session_N`` list (conv-26 has ``session_20_date_time`` ... ``session_35_date_time``) are ignored and reported.
- Evidence ids are normalised: ``"D8:6; D9:17"`` -> ``D8:6``, ``D9:17``; ``"D:11:26"`` -> ``D11:26``;
  ``"D30:05"`` -> ``D30:5``. Ids that are not turns of the conversation are dropped and reported. The same
  normalisation applies to observation provenance (``"D26:14, D26:34"`` is split too).
- Questions with empty evidence (in the file, or after dropping bad ids) are kept and reported: evidence recall
  is undefined for them (`memtune.optimize.evaluation.metrics.evidence_recall` returns None), so they are left out of
  recall averages rather than counted as 0.
- Int answers become strings (reported). Category-5 items without ``answer`` get ``answer=""`` and keep
  ``adversarial_answer`` (reported as info and counted).
- Exact duplicates (same question text, answer, adversarial answer and category in one conversation): the first
  is kept, the others are dropped and reported.
- Items with an unknown category, or without ``question``, ``category``, ``evidence`` or an answer, are skipped
  and reported with the fix.
- A missing file, a file that is not JSON or not a list, or an unknown conversation id in ``conversations``
  raise FileNotFoundError / ValueError naming the item and the fix.

Measured on ``data/locomo/locomo_dev.json`` (sha256 8143faac7a64..., 7 conversations, 187 sessions, 4,124 turns,
867 with an image caption, 1,755 observation facts; no selection or caps), asserted by ``tests/test_data.py``::

    questions kept: 1,347 = category 1: 192, 2: 214, 3: 66, 4: 563, 5: 312 -- the SOURCE.md numbers. Nothing
        is skipped and no exact duplicate exists in these 7 conversations (the only repeated question text,
        conv-30 "What did Gina receive from a dance contest?", is once category 4 and once category 5).
    1,033 questions of categories 1-4 have evidence (the denominator of the DESIGN baselines).
    report (340 entries):
        6   int answers converted to str (conv-26: q1 q26 q40 q49 q72 q75)
        310 category-5 items without `answer` (answer "", adversarial_answer kept); 2 have both keys
        2   questions with empty evidence kept, excluded from recall (conv-26:q30, conv-26:q46)
        3   evidence entries repaired (conv-26:q37 "D8:6; D9:17" split, conv-43:q18 "D:11:26" -> "D11:26";
            observation conv-44 session 26 "D26:14, D26:34, D26:42" split)
        3   evidence ids dropped (conv-42:q58 D10:19 and conv-47:q38 D4:36 do not exist, conv-42:q88 "D")
        16  orphan session_20..35_date_time keys in conv-26 ignored

The full upstream ``locomo10.json`` (sha256 79fa87e9..., checked once from a local copy, not shipped) loads
unchanged: 10 conversations, 272 sessions, 5,882 turns, 1,986 qa items -> 1,975 questions (category 1: 282,
2: 321, 3: 96, 4: 830, 5: 446). The other quirks SOURCE.md lists are in the 3 held-back conversations: 11 exact
duplicates in conv-48 (all category 4, so 841 -> 830), 2 more empty-evidence questions and "D30:05" in conv-50,
space-separated evidence ("D9:1 D4:4 D4:6") in conv-49; 444 category-5 items without `answer`.
data/fixture/quirks.json reproduces each kind of quirk for the tests.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from .parse import parse_conversation
from .types import SKIPPED, Conversation, Dataset, LoadReport

# --------------------------------------------------------------------------------------------- paths


def project_root() -> Path:
    """The repository root (where data/ and conf/ live) for an editable install, else the working directory."""
    root = Path(__file__).resolve().parents[3]  # <root>/memtune/optimize/data/locomo.py
    if (root / "data").is_dir():
        return root
    return Path.cwd()


def data_dir() -> Path:
    """The project's data/ folder: next to the memtune package (editable install), else ./data."""
    return project_root() / "data"


def fixture_path() -> Path:
    """The tiny hand-written conversation (data/fixture/fixture.json)."""
    return data_dir() / "fixture" / "fixture.json"


def dev_path() -> Path:
    """The LOCOMO dev split (data/locomo/locomo_dev.json, CC BY-NC 4.0)."""
    return data_dir() / "locomo" / "locomo_dev.json"


def _candidates(p: str | Path) -> list[Path]:
    path = Path(p).expanduser()
    if path.is_absolute():
        return [path]
    return [Path.cwd() / path, project_root() / path]


def resolve_path(p: str | Path) -> Path:
    """Absolute paths as given; relative ones against the working directory, then against the project root.

    Returns the first candidate that exists; when none does, the working-directory one (so the caller's
    "not found" error names the path the user typed).
    """
    candidates = _candidates(p)
    for candidate in candidates:
        if candidate.exists():
            return candidate if len(candidates) == 1 else candidate.resolve()
    return candidates[0]


# --------------------------------------------------------------------------------------------- loader


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_locomo(
    path: str | Path,
    conversations: Sequence[str] | None = None,
    max_sessions: int | None = None,
    max_questions: int | None = None,
) -> Dataset:
    """Load a LOCOMO-layout file (the dev split, the fixture, or the full upstream locomo10.json).

    conversations: sample_ids to keep (file order is kept); None = all.
    max_sessions: keep the first N sessions of each conversation; questions whose evidence is not all inside
        them (or that have no evidence to tell) are dropped and reported.
    max_questions: keep at most N questions per conversation (the first ones, after the other rules).
    """
    if isinstance(conversations, str):
        conversations = [conversations]
    if max_sessions is not None and max_sessions < 1:
        raise ValueError(f"max_sessions={max_sessions}: must be >= 1 or None (fix: dataset.max_sessions=null)")
    if max_questions is not None and max_questions < 0:
        raise ValueError(f"max_questions={max_questions}: must be >= 0 or None (fix: dataset.max_questions=null)")

    resolved = resolve_path(path)
    if not resolved.is_file():
        raise FileNotFoundError(
            f"LOCOMO file not found: {str(path)!r} (looked at "
            + " and ".join(dict.fromkeys(str(c) for c in _candidates(path)))
            + "). Fix: point dataset.path at an existing file, e.g. data/locomo/locomo_dev.json, or the full "
            "upstream locomo10.json (see data/README.md)."
        )
    try:
        raw = json.loads(resolved.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{resolved} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}). "
            "Fix: use the upstream locomo10.json unchanged (see data/README.md for its sha256)."
        ) from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{resolved} is not UTF-8 text ({exc}). Fix: point dataset.path at a JSON file.") from exc
    if not isinstance(raw, list):
        raise ValueError(
            f"{resolved}: top level is a JSON {type(raw).__name__}, expected a list of conversation objects "
            "(the upstream locomo10.json layout; see data/locomo/SOURCE.md). Fix: wrap a single conversation "
            "in [ ... ] or use the upstream file unchanged."
        )

    report = LoadReport()
    available: list[str] = []
    for obj in raw:
        if isinstance(obj, dict) and isinstance(obj.get("sample_id"), str):
            available.append(obj["sample_id"])
    if conversations is not None:
        wanted = list(dict.fromkeys(conversations))
        unknown = [cid for cid in wanted if cid not in available]
        if unknown:
            raise ValueError(
                f"unknown conversation id(s) {unknown} in {resolved}. Available: {', '.join(available)}. "
                f"Fix: dataset.conversations=[{','.join(available[:2])}] (any of the available ids) or null for all."
            )
        selected = set(wanted)
    else:
        selected = None

    loaded: list[Conversation] = []
    seen_ids: set[str] = set()
    for position, obj in enumerate(raw):
        sample_id = obj.get("sample_id") if isinstance(obj, dict) else None
        item = sample_id if isinstance(sample_id, str) else f"#{position}"
        if selected is not None and item not in selected:
            continue
        if not isinstance(obj, dict):
            report.add(item, f"conversation entry is a {type(obj).__name__}, not an object (fix: remove it)", SKIPPED)
            continue
        if not isinstance(sample_id, str):
            report.add(item, "conversation has no string 'sample_id' (fix: add one, e.g. \"conv-99\")", SKIPPED)
            continue
        if sample_id in seen_ids:
            report.add(item, f"sample_id {sample_id!r} appears again at position {position} (fix: rename it)", SKIPPED)
            continue
        conv = parse_conversation(obj, report, max_sessions, max_questions)
        if conv is not None:
            seen_ids.add(sample_id)
            loaded.append(conv)

    if not loaded:
        raise ValueError(
            f"{resolved}: no usable conversation (file has {len(raw)} entries).\n{report.summary()}\n"
            "Fix: use a file in the upstream locomo10.json layout (see data/locomo/SOURCE.md)."
        )
    return Dataset(conversations=loaded, report=report, path=str(resolved), sha256=_sha256(resolved))
