"""The sweep on a real PostgreSQL server (MEMTUNE_TEST_PG_URL; skipped without it, run by .ci/run): the storage
rides out an outage of its database, and a sweep with sweep/storage=postgres runs and resumes. Each test module
gets its own database, dropped at the end."""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from sqlalchemy.engine import make_url

from memtune.optimize.sweep.app import CONF_DIR, run_sweep
from memtune.optimize.sweep.storage_retry import RetryingStorage
from memtune.optimize.sweep.workers import make_storage

pytestmark = pytest.mark.postgres
optuna.logging.set_verbosity(optuna.logging.ERROR)


def libpq(url) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def pg():
    """(admin URL, this module's database name, its SQLAlchemy URL)."""
    import psycopg

    base = make_url(os.environ["MEMTUNE_TEST_PG_URL"])
    name = f"memtune_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(libpq(base), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield libpq(base), name, base.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(libpq(base), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def outage(admin: str, db: str, seconds: float) -> None:
    """The database refuses connections and drops the open ones for `seconds` (what a restart looks like to a
    client), without touching the server other tests share."""
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (db,),
        )
        time.sleep(seconds)
        conn.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')


def test_a_study_on_postgres_rides_out_an_outage_of_its_database(pg):
    admin, db, url = pg
    cfg = OmegaConf.create(
        {"storage": url, "heartbeat": {"interval": 1, "grace_period": 30}, "storage_retry_seconds": 60}
    )
    storage = make_storage(cfg, on_stale=None)
    assert isinstance(storage, RetryingStorage)
    study = optuna.create_study(storage=storage, study_name="outage", sampler=optuna.samplers.RandomSampler(seed=0))
    started: list[threading.Thread] = []

    def objective(trial: optuna.Trial) -> float:
        if trial.number == 3 and not started:  # the database goes away while trial 3 runs
            started.append(threading.Thread(target=outage, args=(admin, db, 3.0)))
            started[0].start()
        time.sleep(0.3)
        return trial.suggest_float("x", 0, 1)

    study.optimize(objective, n_trials=12)
    started[0].join()
    trials = optuna.load_study(study_name="outage", storage=url).trials
    assert [t.number for t in trials] == list(range(12))
    assert {t.state.name for t in trials} == {"COMPLETE"}
    assert storage.retries > 0  # the outage was seen and ridden out, not missed


def sweep(tmp: Path, *overrides: str) -> dict:
    from hydra import compose, initialize_config_dir

    base = [
        f"cache_dir={tmp / 'cache'}",
        "dataset=fixture",
        "sweep/storage=postgres",
        "sweep.tune_conversations=null",
        "sweep.holdout_conversations=null",
        "sweep.heldout.baselines=[]",
        "sweep.study_name=pg-sweep",
        "tracking=none",
        *overrides,
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return run_sweep(compose(config_name="sweep", overrides=base), tmp / "run", base)


def test_a_sweep_runs_and_resumes_on_postgres(pg, tmp_path, monkeypatch):
    _, _, url = pg
    monkeypatch.setenv("MEMTUNE_OPTUNA_URL", url)  # what conf/sweep/storage/postgres.yaml reads
    first = sweep(tmp_path, "sweep.n_trials=2")
    assert first["finished"] == 2 and first["storage"] == url
    second = sweep(tmp_path, "sweep.n_trials=3")
    trials = optuna.load_study(study_name="pg-sweep", storage=url).trials
    assert second["finished"] == 3 and [t.state.name for t in trials] == ["COMPLETE"] * 3
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 3
