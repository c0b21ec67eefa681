"""Opt-in (`pytest -m llm`): the LLM policy end to end against a real local OpenAI-compatible server.

Needs the llama.cpp server venv and a GGUF: scripts/install_local_llm.sh installs both (outside the project
venv); $MEMTUNE_GGUF or the first /opt/models/*.gguf is served by scripts/local_llm_server.sh on a free port.
A 1.5B model on 2 CPU cores is slow: this takes several minutes. See experiments/local-llm-smoke/README.md.
"""

from __future__ import annotations

import glob
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "scripts" / "local_llm_server.sh"
LLM_VENV = Path(os.environ.get("LLM_VENV", "/opt/llm-venv"))

pytestmark = pytest.mark.llm


def _gguf() -> str | None:
    path = os.environ.get("MEMTUNE_GGUF")
    if path:
        return path if Path(path).is_file() else None
    found = sorted(glob.glob("/opt/models/*.gguf"))
    return found[0] if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def local_server(tmp_path_factory):
    gguf = _gguf()
    if gguf is None:
        pytest.skip("no GGUF model: set MEMTUNE_GGUF or run scripts/install_local_llm.sh (-> /opt/models/*.gguf)")
    server_python = LLM_VENV / "bin" / "python"
    if (
        not server_python.exists()
        or subprocess.run([str(server_python), "-c", "import llama_cpp.server"], capture_output=True).returncode != 0
    ):
        pytest.skip(f"no llama-cpp-python[server] venv at {LLM_VENV}: run scripts/install_local_llm.sh")
    tmp = tmp_path_factory.mktemp("llm-server")
    port = _free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "MEMTUNE_GGUF": gguf,
        "LLM_VENV": str(LLM_VENV),
        "PIDFILE": str(tmp / "server.pid"),
        "LOG": str(tmp / "server.log"),
        "WAIT_SECONDS": "300",
    }
    proc = subprocess.run(["bash", str(SERVER)], env=env, capture_output=True, text=True, timeout=360)
    assert proc.returncode == 0, f"server did not start: {proc.stdout}{proc.stderr}"
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        subprocess.run(["bash", str(SERVER), "stop"], env=env, capture_output=True, timeout=60)


def test_mem0_llm_policy_runs_against_a_real_local_server(local_server, tmp_path):
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "OPENAI_BASE_URL": local_server,
        "OPENAI_API_KEY": "local",
        "MEMTUNE_LM_MODEL": "local",
        "MEMTUNE_JUDGE_MODEL": "local",
        "MEMTUNE_CACHE_DIR": str(tmp_path / "cache"),
    }  # a fresh DSPy cache: every call reaches the server
    env.pop("MEMTUNE_JUDGE_BASE_URL", None)
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "memtune.optimize.evaluation.app",
            "policy=mem0_llm",
            "lm=openai",
            "judge=openai",
            "dataset=fixture",
            "dataset.max_questions=3",
            "progress=false",
            "lm.timeout=600",
            "judge.lm.timeout=600",
            "lm.max_concurrency=1",  # llama-cpp-python's server answers one request at a time
            "judge.lm.max_concurrency=1",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    cost = summary["cost"]
    ingest, answer = cost["ingest"]["phases"], cost["answer"]["phases"]
    for name, phase in (("extract", ingest["extract"]), ("decide", ingest["decide"]), ("answer", answer["answer"])):
        assert phase["calls"] > 0, f"no {name} LM calls: {phase}"
        assert phase["prompt_tokens"] > 0, f"{name} reported no prompt tokens: {phase}"
    assert cost["memories_stored"] > 0, cost
    assert summary["dataset"]["questions"] == 3
    assert summary["judge"]["model"] == "openai/local"
