"""CPU seconds of the servers (PostgreSQL, the MLflow server) and the study's trials/hour, for scripts/faults/run.py."""

from __future__ import annotations

import os
import statistics
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _cpu(fields: list[str]) -> float:
    # utime, stime, cutime, cstime (fields 14-17; counted here after the command name)
    return sum(int(x) for x in fields[11:15]) / TICK


def _all() -> dict[int, list[str]]:
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            out[int(entry.name)] = fields
    return out


def server_cpu() -> dict[str, float]:
    """CPU seconds so far of the PostgreSQL postmaster and its backends, and of the MLflow server's process group,
    with their pids under "<name>_pid" (a server restarted in between has a new pid: see cpu_delta)."""
    table = _all()
    out: dict[str, float] = {}
    pg_data = Path(os.environ.get("MEMTUNE_PG_DIR", REPO / ".cache" / "pg")) / "data" / "postmaster.pid"
    try:
        postmaster = int(pg_data.read_text().split()[0])
        out["postgres"] = sum(_cpu(f) for pid, f in table.items() if pid == postmaster or int(f[1]) == postmaster)
        out["postgres_pid"] = postmaster
    except (OSError, ValueError, IndexError):
        pass
    mlflow_pid = REPO / ".cache" / "mlflow-server" / "server.pid"
    try:
        group = int(mlflow_pid.read_text())
        out["mlflow_server"] = sum(_cpu(f) for f in table.values() if int(f[2]) == group)
        out["mlflow_server_pid"] = group
    except (OSError, ValueError):
        pass
    return out


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float | str]:
    """CPU seconds each server used in between; a server restarted in between (the faults) is not measured: the
    CPU of the process that ended is gone with it."""
    out: dict[str, float | str] = {}
    for name in ("postgres", "mlflow_server"):
        if name not in after:
            continue
        same = before.get(f"{name}_pid") == after[f"{name}_pid"]
        out[name] = round(after[name] - before[name], 1) if same else "restarted: not measured"
    return out


def timing(study, n_trials: int) -> dict:
    """Trials/hour from the first trial's start to the n-th finished trial's end (process start-up excluded)."""
    trials = study.get_trials(deepcopy=False)
    finished = sorted(
        (t for t in trials if t.state.name in ("COMPLETE", "PRUNED") and t.datetime_complete),
        key=lambda t: t.datetime_complete,
    )
    starts = [t.datetime_start for t in trials if t.datetime_start]
    if not finished or not starts:
        return {}
    span = (finished[-1].datetime_complete - min(starts)).total_seconds()
    seconds = [t.user_attrs["seconds"] for t in finished if "seconds" in t.user_attrs]
    # the window in which every worker was running trials: from the last worker's first start to the first
    # worker's last end (workers start minutes apart on a loaded machine; the span above includes that ramp)
    by_worker: dict[str, list] = {}
    for t in trials:
        if t.datetime_start and t.user_attrs.get("worker"):
            by_worker.setdefault(t.user_attrs["worker"], []).append(t)
    lo = max(min(t.datetime_start for t in ts) for ts in by_worker.values())
    hi = min(max(t.datetime_complete or t.datetime_start for t in ts) for ts in by_worker.values())
    window = (hi - lo).total_seconds()
    inside = [t for t in finished if lo <= t.datetime_complete <= hi]
    return {
        "finished": len(finished),
        "span_seconds": round(span, 1),
        "trials_per_hour": round(len(finished) / span * 3600, 1) if span else None,
        "trial_seconds_median": round(statistics.median(seconds), 2) if seconds else None,
        "all_workers_window_seconds": round(window, 1),
        "all_workers_trials": len(inside),
        "all_workers_trials_per_hour": round(len(inside) / window * 3600, 1) if window > 0 else None,
    }
