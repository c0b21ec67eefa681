"""After a crash: make the history agree with the memories table again.

Why it can disagree: a write is two LanceDB commits, one to the memories table and one to the history table, made
in parallel (MemoryStore._write). Each commit is atomic (a killed process leaves the table at its last committed
version), but the pair is not: a process killed between the two leaves a memory without its history row, or a
history row for a change the memories table never got. That write was never acknowledged (the API answers after
both commits), so neither side is wrong; the history just has to say what the table holds. With group commit
(`history_flush_every` > 1) the history of the last batches is lost the same way.

`mismatches(store)` replays the history (per memory id, in `seq` order: ADD / UPDATE set the text, DELETE removes
the memory, other ops change neither) and compares it with the table: memories live in one and not the other, or
with another text. `reconcile(store)` appends one history row per mismatch that moves the history to the table's
state (ADD / UPDATE / DELETE with metadata {"reason": "recovery"}), the way a rollback is recorded (versions.py):
appended, never rewritten. A store opened with the writer lease runs it once, before its first write (store.py).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from .changes import _now

if TYPE_CHECKING:
    from .store import MemoryStore

RECOVERY = json.dumps({"reason": "recovery"})
_SETS_TEXT, _REMOVES = ("ADD", "UPDATE"), ("DELETE",)


def history_state(history) -> dict[str, dict]:
    """Replay of a history table: memory_id -> {"live", "text", "row" (its last text-setting or deleting row)}."""
    cols = ["memory_id", "op", "new_text", "old_text", "seq", "user_id", "agent_id", "run_id"]
    data = history.search().select(cols).to_arrow()
    if not data.num_rows:
        return {}
    data = data.take(pc.sort_indices(data, sort_keys=[("seq", "ascending")]))
    state: dict[str, dict] = {}
    for row in data.to_pylist():
        op = row["op"]
        if op in _SETS_TEXT:
            state[row["memory_id"]] = {"live": True, "text": row["new_text"] or "", "row": row}
        elif op in _REMOVES:
            state[row["memory_id"]] = {"live": False, "text": "", "row": row}
        elif row["memory_id"] not in state:  # a NOOP (or an op this module does not know) first: it existed
            state[row["memory_id"]] = {"live": True, "text": "", "row": row}
    return state


def mismatches(store: MemoryStore) -> list[dict]:
    """Memories where the replayed history and the table disagree: {"memory_id", "history", "table"} with each side
    {"live", "text"} (text "" when the history blanked it: delete_all)."""
    store.flush()
    replay = history_state(store._history)
    cols: list[str] = [c for c in ("id", "text", "user_id", "agent_id", "run_id", "provenance") if c in store._columns]
    table = {r["id"]: r for r in store._table.search().select(cols).to_arrow().to_pylist()}
    out = []
    for mid in sorted(set(replay) | set(table)):
        h, t = replay.get(mid), table.get(mid)
        h_live, t_live = bool(h and h["live"]), t is not None
        text_differs = h_live and t_live and h["text"] and h["text"] != t["text"]  # type: ignore[index]
        if h_live != t_live or text_differs:
            out.append(
                {
                    "memory_id": mid,
                    "history": {"live": h_live, "text": h["text"] if h else ""},
                    "table": {"live": t_live, "text": t["text"] if t else ""},
                    "_h": h,
                    "_t": t,
                }
            )
    return out


def reconcile(store: MemoryStore) -> int:
    """Append the history rows that make the history agree with the table; returns how many (0: it agreed)."""
    found = mismatches(store)
    if not found:
        return 0
    seqs = store._history.search().select(["seq"]).to_arrow()["seq"]
    store._last_seq = max(store._last_seq, int(pc.max(seqs).as_py() or 0))  # recovery rows come after every row
    now, rows = _now(), []
    for m in found:
        h, t = m["_h"], m["_t"]
        owner = t if t is not None else h["row"]
        rows.append(
            {
                "memory_id": m["memory_id"],
                "op": "DELETE" if t is None else ("UPDATE" if h and h["live"] else "ADD"),
                "old_text": m["history"]["text"],
                "new_text": t["text"] if t is not None else "",
                "time": now,
                "seq": store._next_seq(),
                "provenance": list((t or {}).get("provenance") or []),
                "old_provenance": [],
                "user_id": owner["user_id"] or "",
                "agent_id": owner["agent_id"] or "",
                "run_id": owner["run_id"] or "",
                "metadata": RECOVERY,
                "policy_version": store.policy_version,
            }
        )
    store._hversion = store._history.add(pa.Table.from_pylist(rows, schema=store._history_schema)).version
    return len(rows)
