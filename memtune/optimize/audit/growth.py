"""How a store grew: memories per kept LanceDB version (each version read as it was, read-only), and memories over
time replayed from the history table (every change, also for stores whose compaction kept one version: an eval
run's). Plotted together in growth.png."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import lancedb

from ...policies.store.sql import sql_where, valid_where
from ...policies.types import Scope

MAX_VERSIONS = 200  # the newest versions read one by one (a production store keeps ~100 plus 7 days)


def history_growth(history: Sequence[dict]) -> list[dict]:
    """Replay the history (seq order): memories (valid) and stored rows after each change, with its time."""
    state: dict[str, bool] = {}  # memory id -> valid
    points = []
    for h in history:
        mid, op = h["memory_id"], h["op"]
        if op == "ADD":
            state[mid] = True
        elif op == "DELETE":
            state.pop(mid, None)
        elif op == "INVALIDATE" and mid in state:
            state[mid] = False
        else:
            continue
        points.append({"time": h["time"], "seq": h["seq"], "memories": sum(state.values()), "stored": len(state)})
    return points


def version_counts(path: str, table: str, versions: Sequence[dict], scope: Scope) -> list[dict]:
    """Memories (valid) and stored rows of `scope` at each of the newest MAX_VERSIONS kept versions."""
    out = []
    tbl = lancedb.connect(path).open_table(table)
    where = sql_where(scope)
    for v in versions[-MAX_VERSIONS:]:
        tbl.checkout(v["version"])
        columns = set(tbl.schema.names)
        out.append(
            {
                **v,
                "stored": tbl.count_rows(where),
                "memories": tbl.count_rows(valid_where(where, False, columns)),
            }
        )
    return out


def plot_growth(history: Sequence[dict], versions: Sequence[dict], out: Path, title: str) -> Path:
    """growth.png: memories and stored rows over time (history replay), kept versions as points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def when(text: str):
        return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    if history:
        times = [when(p["time"]) for p in history]
        ax.step(times, [p["memories"] for p in history], where="post", label="memories (valid), from the history")
        ax.step(times, [p["stored"] for p in history], where="post", linestyle="--", label="stored rows (+ superseded)")
    if versions:
        ax.plot([when(v["timestamp"]) for v in versions], [v["memories"] for v in versions], "o", label="kept versions")
    ax.set_xlabel("time")
    ax.set_ylabel("memories")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.autofmt_xdate()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
