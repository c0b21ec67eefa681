"""The distributed-sweep configuration fits together: storage and tracking options, the URLs the scripts print,
the compose file's worker command, and no password in what the sweep prints or logs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from memtune.optimize.sweep.app import CONF_DIR
from memtune.optimize.sweep.workers import storage_label

ROOT = Path(__file__).resolve().parents[1]


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="sweep", overrides=list(overrides))


def test_storage_options_and_the_old_url_override(monkeypatch):
    monkeypatch.delenv("MEMTUNE_OPTUNA_URL", raising=False)
    assert composed().sweep.storage.startswith("sqlite:///")  # the default is unchanged
    assert composed("sweep/storage=journal").sweep.storage.endswith("optuna.journal")
    assert composed("sweep=f1", "sweep/storage=postgres").sweep.storage == "postgresql://memtune@127.0.0.1:55432/optuna"
    assert composed("sweep.storage=sqlite:////tmp/x.db").sweep.storage == "sqlite:////tmp/x.db"
    monkeypatch.setenv("MEMTUNE_OPTUNA_URL", "postgresql://u:pw@db:5432/optuna")
    assert composed("sweep/storage=postgres").sweep.storage == "postgresql://u:pw@db:5432/optuna"


def test_the_default_urls_are_the_ones_the_scripts_serve(monkeypatch):
    monkeypatch.delenv("MEMTUNE_OPTUNA_URL", raising=False)
    monkeypatch.delenv("MEMTUNE_MLFLOW_URL", raising=False)
    pg, mlflow = (ROOT / "scripts" / "postgres.sh").read_text(), (ROOT / "scripts" / "mlflow_server.sh").read_text()
    port = re.search(r"MEMTUNE_PG_PORT:-(\d+)", pg).group(1)
    role = re.search(r"^ROLE=(\w+)", pg, re.M).group(1)
    assert composed("sweep/storage=postgres").sweep.storage == f"postgresql://{role}@127.0.0.1:{port}/optuna"
    tracking = composed("tracking=server").tracking
    mlflow_port = re.search(r"MEMTUNE_MLFLOW_PORT:-(\d+)", mlflow).group(1)
    assert tracking.tracking_uri == f"http://127.0.0.1:{mlflow_port}"
    assert tracking.artifact_location is None  # the server stores the artifacts, not a path on the worker


def test_the_compose_worker_command_composes_a_shared_sweep(monkeypatch):
    spec = yaml.safe_load((ROOT / "compose.distributed.yaml").read_text())
    worker = spec["services"]["worker"]
    command = worker["entrypoint"][-1].split()
    assert command[:2] == ["exec", "memtune-sweep"]
    default_args = re.fullmatch(r"\$\{MEMTUNE_SWEEP_ARGS:-(.*)\}", worker["environment"]["MEMTUNE_SWEEP_ARGS"])
    overrides = [a for a in command[2:] if "$" not in a] + default_args.group(1).split()
    env = worker["environment"]
    optuna_url = env["MEMTUNE_OPTUNA_URL"].replace("${MEMTUNE_PG_PASSWORD:?set MEMTUNE_PG_PASSWORD}", "pw")
    optuna_url = optuna_url.replace("${MEMTUNE_SERVER:-postgres}", "postgres")
    monkeypatch.setenv("MEMTUNE_OPTUNA_URL", optuna_url)
    monkeypatch.setenv("MEMTUNE_MLFLOW_URL", env["MEMTUNE_MLFLOW_URL"].replace("${MEMTUNE_SERVER:-mlflow}", "mlflow"))
    cfg = composed(*overrides)
    assert cfg.sweep.storage == "postgresql://memtune:pw@postgres:5432/optuna"
    assert cfg.tracking.tracking_uri == "http://mlflow:5000" and cfg.search_space.name == "retrieval_only"
    targets = set(re.findall(r"^FROM \S+ AS (\w+)", (ROOT / "Dockerfile").read_text(), re.M))
    assert {s["build"]["target"] for s in spec["services"].values() if "build" in s} <= targets


@pytest.mark.parametrize(
    "url, shown",
    [
        ("postgresql://memtune:s3cret@db:5432/optuna", "postgresql://memtune:***@db:5432/optuna"),
        ("postgresql://memtune@127.0.0.1:55432/optuna", "postgresql://memtune@127.0.0.1:55432/optuna"),
    ],
)
def test_the_storage_label_hides_the_password(url, shown):
    assert storage_label(OmegaConf.create({"sweep": {"storage": url}})) == shown
