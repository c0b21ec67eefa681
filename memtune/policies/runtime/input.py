"""Checks on what callers hand the Memory API, done before anything is written.

Every failure is a ValueError that names the bad field (with its index in a list) and says what is accepted:
the REST and MCP servers pass these messages straight to the caller.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..types import Message, Scope

MAX_ID_CHARS = 256  # user/agent/run ids, memory and record ids, speakers, timestamps
MAX_MESSAGES = 1000  # per add() call; import_records() is the bulk path
MESSAGE_KEYS = ("role", "speaker", "name", "content", "text", "dia_id", "timestamp")
RECORD_KEYS = ("text", "id", "timestamp", "metadata")


@dataclass(frozen=True)
class Record:
    """One existing document or database row to import."""

    text: str
    id: str = ""
    timestamp: str = ""
    metadata: dict | None = None


def check_ident(value: Any, field: str, *, required: bool = False, strip: bool = False, ints: bool = False) -> str:
    """An id-like string: at most MAX_ID_CHARS, no control characters, no surrounding whitespace (ids: an error,
    since " u1" and "u1" would silently be two users; labels such as speakers and timestamps: `strip`ped)."""
    if isinstance(value, int) and not isinstance(value, bool) and ints:
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string, got {type(value).__name__}: {value!r}")
    if strip:
        value = value.strip()
    if required and not value:
        raise ValueError(f"{field} is required (a non-empty string)")
    if len(value) > MAX_ID_CHARS:
        raise ValueError(f"{field} is {len(value)} characters long; at most {MAX_ID_CHARS} are allowed")
    if value != value.strip():
        raise ValueError(f"{field} {value!r} has leading or trailing whitespace; strip it")
    bad = next((ch for ch in value if unicodedata.category(ch) == "Cc"), None)
    if bad is not None:
        raise ValueError(f"{field} contains control character U+{ord(bad):04X}: {value!r}")
    return value


def check_scope(user_id: Any, agent_id: Any, run_id: Any, *, write: bool) -> Scope:
    """The scope of a call. Reads treat empty fields as wildcards; writes need at least one field."""
    scope = Scope(check_ident(user_id, "user_id"), check_ident(agent_id, "agent_id"), check_ident(run_id, "run_id"))
    if write and not (scope.user_id or scope.agent_id or scope.run_id):
        raise ValueError(
            "a write needs at least one of user_id, agent_id, run_id: a memory that belongs to "
            "nobody could never be searched for or deleted by scope"
        )
    return scope


def check_cross_user(scope: Scope, cross_user: Any, allowed: bool, call: str) -> None:
    """A call without user_id reaches every user's memories (agent_id='planner' matches the planner's memories of
    all users): refused unless the caller opts in with cross_user=True, or the Memory (server) was set up with
    allow_cross_user=True for a deployment that has no users to keep apart."""
    if not isinstance(cross_user, bool):
        raise ValueError(f"cross_user must be true or false, got {cross_user!r}")
    if scope.user_id or cross_user or allowed:
        return
    named = ", ".join(f"{f}={getattr(scope, f)!r}" for f in ("agent_id", "run_id") if getattr(scope, f))
    reach = f"{named} without user_id matches" if named else "an empty scope matches"
    raise ValueError(
        f"{call}: {reach} the memories of every user. Pass the user's user_id, or cross_user=true to act across "
        "users on purpose (a single-tenant server can set allow_cross_user=true instead)"
    )


def check_id(memory_id: Any) -> str:
    return check_ident(memory_id, "memory_id", required=True)


def check_text(value: Any, field: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{field} is empty: pass some text")
    if len(value) > max_chars:
        raise ValueError(
            f"{field} is {len(value):,} characters long; at most {max_chars:,} are accepted "
            "(split it, or import it as several records with import_records)"
        )
    return value


def check_metadata(metadata: Any, field: str = "metadata") -> dict | None:
    """None, or a JSON object (string keys, finite numbers) of at most 32k characters; returned as a copy."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise ValueError(f"{field} must be an object (dict) or null, got {type(metadata).__name__}")
    if not all(isinstance(k, str) for k in metadata):
        raise ValueError(f"{field} keys must be strings, got {[k for k in metadata if not isinstance(k, str)]!r}")
    try:
        text = json.dumps(dict(metadata), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"{field} must be JSON-serialisable (strings, finite numbers, booleans, null, lists, objects): {e}"
        ) from None
    if len(text) > 32_000:
        raise ValueError(f"{field} is {len(text):,} characters as JSON; at most 32,000 are accepted")
    return json.loads(text)


def check_filters(filters: Any) -> dict:
    """Metadata equality filters: {key: string | number | boolean | null}."""
    if filters is None:
        return {}
    if not isinstance(filters, Mapping):
        raise ValueError(f"filters must be an object of metadata key -> value, got {type(filters).__name__}")
    for k, v in filters.items():
        if not isinstance(k, str) or not k:
            raise ValueError(f"filters keys must be non-empty strings, got {k!r}")
        if not (v is None or isinstance(v, (str, bool, int)) or (isinstance(v, float) and math.isfinite(v))):
            raise ValueError(
                f"filters[{k!r}] must be a string, number, boolean or null (equality on the memory's "
                f"metadata), got {type(v).__name__}: {v!r}"
            )
    return dict(filters)


def to_messages(messages: Any, max_chars: int) -> list[Message]:
    """A string (one user message), or a list of Message / {"role" | "speaker" | "name", "content" | "text",
    optional "dia_id", "timestamp"} (OpenAI-style chat messages work as they are). The speaker is "speaker", else
    "name", else "role" (a chat role or a person's name), else "user"."""
    if isinstance(messages, str):
        return [Message("user", check_text(messages, "messages", max_chars))]
    if not isinstance(messages, (list, tuple)):
        raise ValueError(f"messages must be a string or a list of messages, got {type(messages).__name__}")
    if not messages:
        raise ValueError("messages is empty: pass at least one message")
    if len(messages) > MAX_MESSAGES:
        raise ValueError(
            f"{len(messages)} messages in one call; at most {MAX_MESSAGES} (use import_records for bulk loads)"
        )
    return [_message(m, f"messages[{i}]", max_chars) for i, m in enumerate(messages)]


def _message(m: Any, where: str, max_chars: int) -> Message:
    if isinstance(m, Message):
        return Message(
            _label(m.speaker, f"{where}.speaker"),
            check_text(m.text, f"{where}.text", max_chars),
            _label(m.dia_id, f"{where}.dia_id"),
            _label(m.timestamp, f"{where}.timestamp"),
        )
    if not isinstance(m, Mapping):
        raise ValueError(f'{where} must be an object like {{"role": "user", "content": "..."}}, got {type(m).__name__}')
    unknown = [k for k in m if k not in MESSAGE_KEYS]
    if unknown:
        raise ValueError(f"{where} has unknown field(s) {unknown}; accepted: {list(MESSAGE_KEYS)}")
    who = {
        k: _label(m[k], f"{where}.{k}", required=True) for k in ("speaker", "name", "role") if m.get(k) is not None
    }  # who spoke: a chat role ("user") or a name ("Caroline")
    if "content" in m and "text" in m and m["content"] != m["text"]:
        raise ValueError(f'{where} has both "content" and "text" and they differ: pass one')
    text = m.get("content", m.get("text"))
    if text is None:
        raise ValueError(f'{where} has no "content" (or "text")')
    return Message(
        next(iter(who.values()), "user"),
        check_text(text, f"{where}.content", max_chars),
        _label(m.get("dia_id"), f"{where}.dia_id", ints=True),
        _label(m.get("timestamp"), f"{where}.timestamp"),
    )


def _label(value: Any, field: str, required: bool = False, ints: bool = False) -> str:
    """An optional speaker / dia_id / timestamp / record id (ids may be integers), stripped."""
    if value is None and not required:
        return ""
    return check_ident(value, field, required=required, strip=True, ints=ints)


def to_records(records: Any, max_chars: int) -> list[Record]:
    """Strings or {"text", optional "id" (string or integer), "timestamp", "metadata"}; at least one."""
    if isinstance(records, (str, Mapping)) or not isinstance(records, Iterable):
        raise ValueError(f"records must be a list of strings or objects, got {type(records).__name__}")
    out = []
    for i, r in enumerate(records):
        where = f"records[{i}]"
        if isinstance(r, str):
            out.append(Record(check_text(r, where, max_chars)))
            continue
        if not isinstance(r, Mapping):
            raise ValueError(f'{where} must be a string or an object with "text", got {type(r).__name__}')
        unknown = [k for k in r if k not in RECORD_KEYS]
        if unknown:
            raise ValueError(f"{where} has unknown field(s) {unknown}; accepted: {list(RECORD_KEYS)}")
        out.append(
            Record(
                check_text(r.get("text"), f"{where}.text", max_chars),
                _label(r.get("id"), f"{where}.id", ints=True),
                _label(r.get("timestamp"), f"{where}.timestamp"),
                check_metadata(r.get("metadata"), f"{where}.metadata"),
            )
        )
    if not out:
        raise ValueError("records is empty: pass at least one record")
    return out
