"""Recovery after a crash (policies/store/recover.py): the history is made to agree with the memories table when a
writer died between the two commits of a write; a store that never crashed needs nothing; and a writer killed with
SIGKILL in the middle of writing loses no acknowledged write and leaves nothing half-written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pyarrow as pa
from serve_support import ingest_fixture, make_memory

from memtune.policies.store.changes import Change, _now
from memtune.policies.store.lance import rows_to_arrow
from memtune.policies.store.recover import mismatches
from memtune.policies.store.store import MemoryStore
from memtune.policies.types import Scope

DIM, EMB = 8, "test-recover-8"
U1 = Scope("u1")


def vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def test_a_store_that_never_crashed_needs_no_recovery(tmp_path, embedder):
    memory = make_memory(tmp_path / "store", embedder)
    ingest_fixture(memory)  # ADD, UPDATE and NOOP decisions
    some = memory.get_all(user_id="conv-fixture")
    memory.update(some[0]["id"], "an edited memory", user_id="conv-fixture")
    memory.delete(some[1]["id"], user_id="conv-fixture")
    memory.add("I keep bees on the roof", user_id="u2", infer=False)
    first = memory.store.versions_list()[0]["version"]
    memory.delete_all(user_id="u2")
    memory.store.restore(first)  # rolled back: its own history rows
    assert mismatches(memory.store) == []
    memory.close()


def test_half_written_writes_are_reconciled_at_the_writers_open(tmp_path):
    uri = tmp_path / "store"
    store = MemoryStore(uri, dim=DIM, embedder_id=EMB)
    (_, kept, _), (_, edited, _) = store.apply(
        [Change("ADD", "kept", vec(0), scope=U1), Change("ADD", "before the edit", vec(1), scope=U1)]
    )
    # 1. a memory committed without its history row (killed before the history append)
    orphan = dict(store._rows_by_id([kept])[kept], id="no-history", text="committed alone", vector=vec(2))
    store._table.add(rows_to_arrow([orphan], store._schema, DIM))
    # 2. a history row of a memory the table never got (killed before the memories commit)
    ghost = {
        "memory_id": "ghost",
        "op": "ADD",
        "old_text": "",
        "new_text": "never committed",
        "time": _now(),
        "seq": time.time_ns(),
        "provenance": [],
        "old_provenance": [],
        "user_id": "u1",
        "agent_id": "",
        "run_id": "",
        "metadata": "{}",
        "policy_version": "",
    }
    # 3. an UPDATE recorded whose memories commit did not happen
    lost_update = {**ghost, "memory_id": edited, "op": "UPDATE", "old_text": "before the edit", "new_text": "lost"}
    store._history.add(pa.Table.from_pylist([ghost, lost_update], schema=store._history_schema))
    store.close()
    reader = MemoryStore(uri, dim=DIM, embedder_id=EMB, read_only=True)
    found = {m["memory_id"]: (m["history"], m["table"]) for m in mismatches(reader)}
    assert found == {
        "no-history": ({"live": False, "text": ""}, {"live": True, "text": "committed alone"}),
        "ghost": ({"live": True, "text": "never committed"}, {"live": False, "text": ""}),
        edited: ({"live": True, "text": "lost"}, {"live": True, "text": "before the edit"}),
    }
    reader.close()
    writer = MemoryStore(uri, dim=DIM, embedder_id=EMB, lease=True)  # the writer reconciles before writing
    assert writer.recovered == 3 and mismatches(writer) == []
    assert [(r["op"], r["metadata"]) for r in writer.history("ghost")][-1] == ("DELETE", {"reason": "recovery"})
    assert [r["op"] for r in writer.history("no-history")] == ["ADD"]
    assert writer.history(edited)[-1]["new_text"] == "before the edit"
    assert {m.text for m in writer.get_all(U1)} == {"kept", "before the edit", "committed alone"}  # the table rules
    writer.close()
    assert MemoryStore(uri, dim=DIM, embedder_id=EMB, lease=True).recovered == 0  # once is enough


WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from memtune.policies.store.changes import Change
    from memtune.policies.store.store import MemoryStore
    from memtune.policies.types import Scope
    store = MemoryStore(sys.argv[1], dim=8, embedder_id="test-recover-8", lease=True, compact_every=7)
    rng = np.random.default_rng(0)
    for i in range(100000):
        v = rng.normal(size=8).astype(np.float32)
        batch = [Change("ADD", f"memory {i}", v / np.linalg.norm(v), scope=Scope(user_id=f"u{i % 3}"))]
        ((op, mid, _),) = store.apply(batch)
        print(mid, flush=True)  # acknowledged
    """
)


def test_a_writer_killed_mid_write_loses_no_acknowledged_write(tmp_path):
    uri = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(uri)], stdout=subprocess.PIPE, text=True)
    acked: list[str] = []
    assert proc.stdout is not None
    deadline = time.time() + 120
    while len(acked) < 60 and time.time() < deadline:
        acked.append(proc.stdout.readline().strip())
    os.kill(proc.pid, signal.SIGKILL)  # somewhere inside a write (they run back to back)
    acked += [line.strip() for line in proc.stdout.read().splitlines() if line.strip()]
    proc.wait(timeout=30)
    assert len(acked) >= 60
    store = MemoryStore(uri, dim=DIM, embedder_id=EMB, lease=True)  # opens at its last committed version
    present = {m.id for m in store.get_all()}
    assert set(acked) <= present  # every acknowledged write survived
    assert len(present - set(acked)) <= 1  # at most the one in flight (committed, not yet acknowledged)
    assert mismatches(store) == [] and store.recovered <= 1
    assert all(store.history(mid) for mid in present)
    store.close()
    print(json.dumps({"acknowledged": len(acked), "present": len(present), "recovered": store.recovered}))


def test_history_lost_by_group_commit_is_rebuilt_from_the_table(tmp_path):
    uri = tmp_path / "store"
    store = MemoryStore(uri, dim=DIM, embedder_id=EMB, history_flush_every=5)
    ids = [store.apply([Change("ADD", f"fact {i}", vec(i), scope=U1)])[0][1] for i in range(3)]
    assert store._history.count_rows() == 0  # still held by group commit
    store._pending_history.clear()  # the process dies here: the held history rows are gone
    store._writer.shutdown(wait=True)
    writer = MemoryStore(uri, dim=DIM, embedder_id=EMB, lease=True)
    assert writer.recovered == 3 and mismatches(writer) == []
    assert [writer.history(i)[0]["new_text"] for i in ids] == ["fact 0", "fact 1", "fact 2"]
    writer.close()
