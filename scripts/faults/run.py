"""Distributed sweeps on this machine: N worker processes on one study (PostgreSQL storage, MLflow tracking server),
with or without a fault, then check.py's checks. Transcript on stdout; files in --work (default /tmp/memtune-dist-*).

    python scripts/faults/run.py scale --workers 4            # trials/hour of 4 workers, no fault
    python scripts/faults/run.py kill-worker                  # kill -9 a worker while its trial runs
    python scripts/faults/run.py kill-worker --separate-hosts # the same, each worker with its own host name
    python scripts/faults/run.py restart-postgres             # pg_ctl restart -m fast while trials run
    python scripts/faults/run.py stop-mlflow [--outage 30]    # stop the MLflow server for 30 s while trials run

Every worker runs the same command (retrieval-only knobs, tune on conv-26 + conv-30, no held-out step, its own
run dir); they are started together and left to finish on their own: nothing is re-run after a fault. Postgres
and the MLflow server are started first if needed (scripts/postgres.sh, scripts/mlflow_server.sh).

--separate-hosts starts each worker in its own UTS namespace (unshare --uts, root) named worker-<i>: as on
separate machines, no worker can tell that another one's pid is gone, so a killed worker's trial is left to the RDB
heartbeat (sweep.heartbeat.grace_period) instead of being reaped at once by a worker on the same host.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import check
import procs

REPO = Path(__file__).resolve().parents[2]
PY = str(REPO / ".venv" / "bin" / "python")  # not `uv run`: kill -9 must hit the worker itself


def sh(*args: str) -> str:
    return subprocess.run(["bash", *args], cwd=REPO, check=True, capture_output=True, text=True).stdout.strip()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class LoadSampler(threading.Thread):
    """The 1-minute load average every 5 s while the sweep runs (the machine is shared)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append(float(Path("/proc/loadavg").read_text().split()[0]))
            self.stop.wait(5)

    def summary(self) -> dict:
        s = self.samples or [float("nan")]
        return {"mean": round(sum(s) / len(s), 2), "min": min(s), "max": max(s), "n": len(self.samples)}


def poll(storage: str, study: str) -> list[dict] | None:
    try:
        return check.trial_rows(storage, study)
    except Exception:  # not created yet, or the database is restarting
        return None


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["scale", "kill-worker", "restart-postgres", "stop-mlflow"])
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--n-trials", type=int, default=30)
    p.add_argument("--outage", type=float, default=30.0)
    p.add_argument("--work", default=None)
    p.add_argument("--timeout", type=float, default=3600.0)
    p.add_argument("--separate-hosts", action="store_true", help="each worker its own host name (unshare --uts)")
    p.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides for every worker")
    a = p.parse_args()
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    work = Path(a.work or tempfile.mkdtemp(prefix=f"memtune-dist-{a.mode}-"))
    work.mkdir(parents=True, exist_ok=True)
    storage, mlflow = sh("scripts/postgres.sh", "start"), sh("scripts/mlflow_server.sh", "start")
    name = f"dist-{a.mode}-{a.workers}w-{time.strftime('%Y%m%d-%H%M%S')}"
    env = {**os.environ, "MEMTUNE_OPTUNA_URL": storage, "MEMTUNE_MLFLOW_URL": mlflow, "PYTHONUNBUFFERED": "1"}
    cmd = [
        PY, "-m", "memtune.optimize.sweep.app", "policy=mem0_offline_v0",  # the defaults the committed runs had
        "search_space=retrieval_only", f"sweep.study_name={name}",
        f"sweep.n_trials={a.n_trials}", "sweep.tune_conversations=[conv-26,conv-30]", "sweep.heldout.enabled=false",
        "sweep.heldout.baselines=[]", "sweep/storage=postgres", "tracking=server", f"tracking.experiment={name}",
        *a.extra,
    ]  # fmt: skip
    hosts = " (each worker its own host name)" if a.separate_hosts else ""
    log(f"mode {a.mode}{hosts}: {a.workers} workers, n_trials={a.n_trials}, study/experiment {name}")
    log(f"storage {storage}; MLflow {mlflow}; work dir {work}")
    log(f"worker command: {' '.join(cmd)} hydra.run.dir={work}/w<i>")
    log(f"load average before: {Path('/proc/loadavg').read_text().split()[:3]}")
    servers0 = procs.server_cpu()
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler = LoadSampler()
    sampler.start()
    t0 = time.time()

    def host(i: int) -> list[str]:  # the same pid: unshare and sh exec the worker
        named = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', f"worker-{i}"]
        return named if a.separate_hosts else []

    workers = [
        subprocess.Popen(
            [*host(i), *cmd, f"hydra.run.dir={work}/w{i}"], cwd=REPO, env=env,
            stdout=open(work / f"w{i}.log", "w"), stderr=subprocess.STDOUT,
        )
        for i in range(1, a.workers + 1)
    ]  # fmt: skip
    log("workers started: pids " + " ".join(str(w.pid) for w in workers))
    fault: dict = {"mode": a.mode}
    before: list[dict] | None = None
    while any(w.poll() is None for w in workers) and time.time() - t0 < a.timeout:
        rows = poll(storage, name) if a.mode != "scale" and "done" not in fault else None
        if rows is not None:
            done = sum(r["state"] in ("COMPLETE", "PRUNED") for r in rows)
            running = [r for r in rows if r["state"] == "RUNNING" and r["worker"]]
            if done >= a.n_trials // 3 and running:
                before = rows
                fault |= inject(a, rows, running, workers, done)
                fault["done"] = True
        time.sleep(0.5)
    for w in workers:
        if w.poll() is None:
            log(f"timeout: worker {w.pid} still running; killing it")
            w.kill()
        w.wait()
    wall = time.time() - t0
    sampler.stop.set()
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    servers1 = procs.server_cpu()
    exits = {w.pid: w.returncode for w in workers}
    log(f"workers exited: {exits} after {wall:.0f} s")
    logs = [str(work / f"w{i}.log") for i in range(1, a.workers + 1)]
    (work / "before.json").write_text(json.dumps(before or [], default=str))
    rows = check.trial_rows(storage, name)
    checks, facts = check.check(rows, check.mlflow_runs(mlflow, name), a.n_trials, logs, before)
    killed = fault.get("killed_pid")
    checks["workers exit 0 (the killed one aside)"] = all(c == 0 for pid, c in exits.items() if pid != killed)
    timing = procs.timing(optuna.load_study(study_name=name, storage=storage), a.n_trials)
    cpu_workers = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    cpu_servers = procs.cpu_delta(servers0, servers1)
    result = {
        "mode": a.mode, "separate_hosts": a.separate_hosts, "workers": a.workers, "n_trials": a.n_trials,
        "study": name, "wall_seconds": round(wall, 1),
        **timing, "load_average_1min": sampler.summary(), "cpu_seconds": {"workers": round(cpu_workers, 1),
        **cpu_servers}, "fault": fault, "exits": exits, "checks": checks, "facts": facts,
    }  # fmt: skip
    (work / "result.json").write_text(json.dumps(result, indent=2, default=str))
    log(
        f"timing: {timing}; wall {wall:.0f} s (incl. process start); load average 1-min during the run "
        f"{sampler.summary()}; CPU seconds: workers {cpu_workers:.0f}, servers {cpu_servers}"
    )
    for line in grep_worker_lines(logs):
        print("  " + line)
    ok = check.report(checks, facts)
    sys.exit(0 if ok else 1)


def inject(a, rows, running, workers, done) -> dict:
    """The fault, once a third of the trials are finished and a trial is running."""
    t = running[0]
    age = time.time() - t["started"].timestamp() if t.get("started") else None
    what = f"trial {t['number']} running{f' for {age:.1f} s' if age else ''}, {done} finished"
    if a.mode == "kill-worker":
        pid = int(t["worker"].split(":")[1])
        os.kill(pid, signal.SIGKILL)
        log(f"FAULT kill -9 {pid} (its {what})")
        return {"killed_pid": pid, "trial": t["number"], "finished_at_fault": done}
    if a.mode == "restart-postgres":
        t0 = time.time()
        log(f"FAULT pg_ctl restart -m fast ({what}; running: {[r['number'] for r in running]})")
        sh("scripts/postgres.sh", "restart")
        log(f"PostgreSQL back after {time.time() - t0:.1f} s")
        return {"running": [r["number"] for r in running], "restart_seconds": round(time.time() - t0, 1)}
    t0 = time.time()
    log(f"FAULT stopping the MLflow server ({what}; running: {[r['number'] for r in running]})")
    sh("scripts/mlflow_server.sh", "stop")
    t1 = time.time()
    log(f"MLflow server stopped (took {t1 - t0:.1f} s); it stays down {a.outage:.0f} s")
    time.sleep(a.outage)
    t2 = time.time()
    log("starting the MLflow server again")
    sh("scripts/mlflow_server.sh", "start")
    t3 = time.time()
    log(f"MLflow answers again: process down {t2 - t1:.0f} s, then {t3 - t2:.0f} s for the new server to answer")
    return {
        "running": [r["number"] for r in running], "stop_seconds": round(t1 - t0, 1),
        "down_seconds": round(t2 - t1, 1), "start_seconds": round(t3 - t2, 1),
        "unreachable_seconds": round(t3 - t0, 1),
    }  # fmt: skip


def grep_worker_lines(logs: list[str]) -> list[str]:
    keep = ("[storage]", "[tracking]", "FAILED", "re-queued", "stopped:", "this worker", "failed elsewhere")
    out = []
    for path in logs:
        for line in open(path):
            if any(k in line for k in keep):
                out.append(f"{Path(path).stem}: {line.rstrip()[:220]}")
    return out


if __name__ == "__main__":
    main()
