"""Study plumbing of memtune-sweep: who a worker is (and whether it still runs), and the Optuna storage.

A RUNNING trial whose worker (host, pid, start time) is provably dead is re-queued at once by the sweep; an RDB
storage's heartbeat catches the rest.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import optuna
from omegaconf import DictConfig
from optuna.trial import TrialState

from .storage_retry import RetryingStorage
from .tracking import absolute_sqlite

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _start_ticks(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 (starttime), counted after the command name


def worker_id() -> str:
    """host:pid:starttime: names this process uniquely on this host (a reused pid has another start time)."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or '?'}"


def worker_alive(worker: str) -> bool | None:
    """True/False for a worker on this host; None when that cannot be known (another host, no /proc)."""
    try:
        host, pid, ticks = worker.rsplit(":", 2)
        pid_n = int(pid)
    except ValueError:
        return None
    if host != socket.gethostname() or ticks == "?":
        return None
    if not Path("/proc").is_dir():
        return None
    return _start_ticks(pid_n) == ticks


def make_storage(cfg: DictConfig, on_stale) -> optuna.storages.BaseStorage:
    """An RDB storage (any SQLAlchemy URL; relative sqlite paths made absolute) with a heartbeat, or a journal
    file (a path ending in .journal/.log, no heartbeat: dead local workers are still detected by pid)."""
    url = str(cfg.storage)
    if url.endswith((".journal", ".log")) and "://" not in url:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    url = absolute_sqlite(url)
    hb = cfg.heartbeat
    sqlite = url.startswith("sqlite")
    storage = optuna.storages.RDBStorage(
        url,
        # a server's connections die when it restarts: test each one before use (storage_retry.py)
        engine_kwargs={"connect_args": {"timeout": 120}} if sqlite else {"pool_pre_ping": True},
        heartbeat_interval=hb.interval,
        grace_period=hb.grace_period,
        heartbeat_stale_trial_callback=on_stale,
    )
    if sqlite:
        return storage
    return RetryingStorage(storage, budget=float(cfg.get("storage_retry_seconds", 120)))


def storage_label(cfg: DictConfig) -> str:
    """The storage as logged and printed: a journal's absolute path, or the URL without its password."""
    url = str(cfg.sweep.storage)
    if url.endswith((".journal", ".log")) and "://" not in url:
        return str(Path(url).resolve())
    return _PASSWORD.sub(r"\1***@", absolute_sqlite(url))


_PASSWORD = re.compile(r"(://[^/:@\s]+:)[^/@\s]+@")  # user:password@ -> user:***@
