"""The writer lease (policies/store/lease.py): a second writer process is refused with the holder named, a killed
holder keeps nothing, read-only opens work beside a writer, a lease record of another live host refuses the store
(a network filesystem whose locks do not reach this machine), a lost lease stops writes, and a rollback never
discards another writer's commit."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from memtune.policies.store.changes import Change
from memtune.policies.store.lease import RECORD_FILE, LeaseLost, StoreLease, StoreLocked
from memtune.policies.store.store import MemoryStore
from memtune.policies.types import Scope

DIM, EMB = 8, "test-lease-8"
U1 = Scope(user_id="u1")

HOLDER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from memtune.policies.store.changes import Change
    from memtune.policies.store.store import MemoryStore
    from memtune.policies.types import Scope
    store = MemoryStore(sys.argv[1], dim=8, embedder_id="test-lease-8", lease=True)
    v = np.ones(8, np.float32) / np.sqrt(8)
    store.apply([Change("ADD", "written by the holder", v, scope=Scope(user_id="u1"))])
    print("ready", flush=True)
    time.sleep(600)
    """
)


def vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def add(store: MemoryStore, text: str, seed: int = 0):
    return store.apply([Change("ADD", text, vec(seed), scope=U1)])


@pytest.fixture
def holder(tmp_path):
    """A second process holding the writer lease of tmp_path/'store' (killed at the end)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "store")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.stderr.read()
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def test_second_writer_process_is_refused_until_the_holder_is_killed(tmp_path, holder):
    uri = tmp_path / "store"
    with pytest.raises(StoreLocked) as refused:
        MemoryStore(uri, dim=DIM, embedder_id=EMB, lease=True)
    message = str(refused.value)
    record = json.loads((uri / RECORD_FILE).read_text())
    assert record["pid"] == holder.pid and record["host"] == socket.gethostname()
    # the holder is named (pid, host, since) and the fix is given
    assert f"pid {holder.pid}" in message and socket.gethostname() in message and record["since"] in message
    assert "stop that process" in message and "read_only=True" in message
    # a read-only open works beside the writer and sees its commit; it cannot write
    reader = MemoryStore(uri, dim=DIM, embedder_id=EMB, read_only=True)
    assert [m.text for m in reader.get_all(U1)] == ["written by the holder"]
    for write in (
        lambda: add(reader, "not allowed"),
        lambda: reader.delete_all(U1),
        reader.compact,
        reader.reset,
        lambda: reader.restore(reader.version),
    ):
        with pytest.raises(PermissionError, match="read-only"):
            write()
    reader.close()
    # kill -9: the OS drops the holder's lock; its record is stale and taken over
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    store = MemoryStore(uri, dim=DIM, embedder_id=EMB, lease=True)
    assert [m.text for m in store.get_all(U1)] == ["written by the holder"]  # the acknowledged write survived
    add(store, "written by the new holder", 1)
    record = json.loads((uri / RECORD_FILE).read_text())
    assert record["pid"] == os.getpid()
    store.close()
    assert not (uri / RECORD_FILE).exists()  # a clean close removes the record


def test_read_only_open_of_a_missing_store_is_refused(tmp_path):
    with pytest.raises(ValueError, match="read-only open needs an existing store"):
        MemoryStore(tmp_path / "nothing", dim=DIM, embedder_id=EMB, read_only=True)
    assert not (tmp_path / "nothing" / "memories.lance").exists()


def test_handles_in_one_process_share_the_lease(tmp_path):
    uri = tmp_path / "store"
    a = MemoryStore(uri, dim=DIM, embedder_id=EMB, lease=True)
    b = MemoryStore(uri, dim=DIM, embedder_id=EMB, lease=True)  # the same process: counted, not refused
    a.close()
    assert (uri / RECORD_FILE).exists()  # b still holds it
    add(b, "still writable")
    b.close()
    assert not (uri / RECORD_FILE).exists()


def test_a_failed_open_releases_the_lease(tmp_path):
    uri = tmp_path / "store"
    MemoryStore(uri, dim=DIM, embedder_id=EMB, lease=True).close()
    with pytest.raises(ValueError, match="embedder"):
        MemoryStore(uri, dim=DIM, embedder_id="another-embedder", lease=True)
    assert not (uri / RECORD_FILE).exists()
    MemoryStore(uri, dim=DIM, embedder_id=EMB, lease=True).close()


def test_a_live_lease_of_another_host_refuses_and_a_stale_one_is_taken_over(tmp_path):
    """A network filesystem whose locks do not reach other machines: only the record tells a writer there."""
    uri = tmp_path / "store"
    uri.mkdir()
    other = {"host": "other-host", "pid": 4242, "since": "2026-01-01T00:00:00+00:00", "lease_id": "x", "ttl_s": 60}
    (uri / RECORD_FILE).write_text(json.dumps(other | {"heartbeat": time.time() - 5}))
    with pytest.raises(StoreLocked, match="pid 4242 on host 'other-host'"):
        MemoryStore(uri, dim=DIM, embedder_id=EMB, lease=True)
    (uri / RECORD_FILE).write_text(json.dumps(other | {"heartbeat": time.time() - 61}))  # past the 60 s TTL
    store = MemoryStore(uri, dim=DIM, embedder_id=EMB, lease=True)
    assert json.loads((uri / RECORD_FILE).read_text())["pid"] == os.getpid()
    store.close()


def test_a_lost_lease_stops_writes(tmp_path):
    uri = tmp_path / "store"
    store = MemoryStore(uri, dim=DIM, embedder_id=EMB, lease=True)
    add(store, "before")
    version = store.version
    # another host took the lease over while this process stalled past the TTL
    theirs = {"host": "other-host", "pid": 7, "since": "now", "heartbeat": time.time(), "lease_id": "theirs"}
    (uri / RECORD_FILE).write_text(json.dumps(theirs))
    assert store._lease is not None
    store._lease.beat()  # what the heartbeat thread does every heartbeat_s
    with pytest.raises(LeaseLost, match="lost the writer lease"):
        add(store, "after", 1)
    with pytest.raises(LeaseLost):
        store.delete_all(U1)
    assert store.version == version and [m.text for m in store.get_all(U1)] == ["before"]
    store.close()
    assert json.loads((uri / RECORD_FILE).read_text())["lease_id"] == "theirs"  # not removed: not ours


def test_restore_never_discards_another_writers_commit(tmp_path):
    uri = tmp_path / "store"
    mine = MemoryStore(uri, dim=DIM, embedder_id=EMB)  # no lease: two writers can happen; restore must notice
    add(mine, "first")
    first = mine.version
    add(mine, "second", 1)
    other = MemoryStore(uri, dim=DIM, embedder_id=EMB)
    add(other, "the other writer's", 2)
    with pytest.raises(RuntimeError, match="another writer committed since"):
        mine.restore(first)
    assert "the other writer's" in {m.text for m in other.get_all(U1)}
    mine.refresh()  # now this handle has seen it: restoring over it is a decision, not an accident
    mine.restore(first)
    assert [m.text for m in mine.get_all(U1)] == ["first"]
    mine.close()
    other.close()


def test_lease_settings_are_checked(tmp_path):
    with pytest.raises(ValueError, match="heartbeat_s"):
        StoreLease(str(tmp_path), ttl_s=5, heartbeat_s=10)


def test_memtune_purge_is_refused_while_a_writer_holds_the_store(tmp_path, holder, capsys):
    from memtune.policies.store.purge import main as purge_main

    assert purge_main([str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("memtune-purge: ") and f"pid {holder.pid}" in err
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    assert purge_main([str(tmp_path / "store")]) == 0


def test_a_second_memtune_serve_over_a_held_store_exits_before_listening(tmp_path, holder, monkeypatch, capsys):
    from memtune.optimize.export.app import export_from_overrides
    from memtune.serve.cli import main as serve_main

    bundle = export_from_overrides(["policy=mem0_offline", "tracking=none", f"out={tmp_path / 'bundle'}"])["bundle"]
    monkeypatch.setenv("MEMTUNE_API_TOKEN", "lease-test-token-0123456789")
    argv = ["memtune-serve", f"bundle={bundle}", f"store_uri={tmp_path / 'store'}", "port=1"]  # never reached
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exited:
        serve_main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"memtune-serve: memory store {str(tmp_path / 'store')!r}" in err and f"pid {holder.pid}" in err
    assert [m.text for m in MemoryStore(tmp_path / "store", dim=DIM, embedder_id=EMB, read_only=True).get_all(U1)] == [
        "written by the holder"
    ]  # nothing touched
