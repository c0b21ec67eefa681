"""The checks of benchmarks/serve_load.py after a kill -9 of the server: what is on disk, and after the restart, that
every acknowledged add is there, nothing is half-written and the store opened at its latest good version."""

from __future__ import annotations

import json
from pathlib import Path

import httpx


def _store(store_uri: Path, bundle: Path):
    """The bundle's store over `store_uri`, read-only (beside the server, which holds the writer lease)."""
    from memtune.policies.store.store import MemoryStore

    info = json.loads((bundle / "bundle.json").read_text())
    return MemoryStore(store_uri, dim=int(info["embedder"]["dim"]), embedder_id=info["embedder"]["id"], read_only=True)


def on_disk(store_uri: Path, bundle: Path) -> dict:
    """The store as the killed server left it: its committed versions, rows, and writes half-done (recover.py)."""
    from memtune.policies.store.recover import mismatches

    store = _store(store_uri, bundle)
    try:
        half = mismatches(store)
        return {
            "version": store.version,
            "history_version": store._history.version,
            "rows": store.count(),
            "half_written": len(half),
            "half_written_ids": [m["memory_id"] for m in half][:5],
        }
    finally:
        store.close()


def expected_state(acked: dict[str, list[dict]]) -> dict[str, dict[str, str | None]]:
    """Per user: memory id -> its acknowledged text (None: acknowledged deleted), from the events in order (NOOP and
    INVALIDATE keep the memory and its text)."""
    out: dict[str, dict[str, str | None]] = {}
    for uid, events in acked.items():
        state = out.setdefault(uid, {})
        for e in events:
            if e["event"] in ("ADD", "UPDATE") and e.get("id"):
                state[e["id"]] = e["memory"]
            elif e["event"] == "DELETE" and e.get("id"):
                state[e["id"]] = None
    return out


def check_after_restart(base: str, token: str, store_uri: Path, bundle: Path, stats, before: dict) -> dict:
    from memtune.policies.store.recover import mismatches
    from memtune.policies.types import Scope

    store = _store(store_uri, bundle)
    lost, wrong, resurrected, explained, checked = [], [], [], 0, 0
    try:
        recovery_rows = store._history.count_rows('metadata = \'{"reason": "recovery"}\'')
        for uid, state in expected_state(stats.acked).items():
            live = {m.id: m.text for m in store.get_all(Scope(uid), include_invalid=True)}  # superseded ones too
            in_flight = stats.in_flight.get(uid, False)  # an add sent, never answered: it may have committed
            for mid, text in state.items():
                checked += 1
                problem = None
                if text is not None and mid not in live:
                    problem = lost
                elif text is not None and live[mid] != text:
                    problem = wrong
                elif text is None and mid in live:
                    problem = resurrected
                if problem is not None and in_flight:
                    explained += 1  # the unacknowledged add of this user changed it after its last ack
                elif problem is not None:
                    problem.append(mid)
        result = {
            "acknowledged_memories_checked": checked,
            "lost": len(lost),
            "wrong_text": len(wrong),
            "deleted_but_present": len(resurrected),
            "changed_by_an_unacknowledged_in_flight_add": explained,
            "version_before_restart": before["version"],
            "version_after_restart": store.version,
            "opened_at_latest_good_version": store.version >= before["version"],
            "half_written_before_restart": before["half_written"],
            "half_written_after_restart": len(mismatches(store)),
            "recovery_history_rows": recovery_rows,
            "rows_after_restart": store.count(),
        }
    finally:
        store.close()
    probe = httpx.post(
        f"{base}/v1/memories/search",
        json={"query": "what did my sister do last weekend?", "user_id": "load-user-0", "top_k": 5},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    result["search_after_restart"] = f"HTTP {probe.status_code}, {len(probe.json().get('results', []))} hits"
    return result
