"""The REST side of benchmarks/search_latency.py: memtune's REST app over a store in a separate process (the script
itself with --serve), and a keep-alive client."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

TOKEN = "bench-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RestServer:
    """memtune's REST app over the store in a separate process (uvicorn on loopback), and a keep-alive client."""

    def __init__(self, store_uri: Path, arm: str = "dense"):
        import httpx

        port = free_port()
        env = dict(os.environ, MEMTUNE_API_TOKEN=TOKEN)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("search_latency.py")),
                "--serve",
                str(store_uri),
                "--port",
                str(port),
                "--arm",
                arm,
            ],
            env=env,
        )
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
        )
        deadline = time.time() + 300
        while True:
            try:
                if self.client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                self.close()
                raise RuntimeError(f"the REST server on port {port} did not come up")
            time.sleep(0.2)

    def post(self, path: str, payload: dict):
        r = self.client.post(path, json=payload)
        r.raise_for_status()
        return r.json()

    def close(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(timeout=60)
