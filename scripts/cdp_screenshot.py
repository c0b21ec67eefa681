"""Headless Chromium over the DevTools protocol: open a page, click MLflow's run-table expanders (so nested
child runs show under their parent), save a PNG. Uses aiohttp's websocket client (already a dependency).

    python scripts/cdp_screenshot.py --url http://127.0.0.1:5057/#/experiments/1/runs --out shot.png -- <flags>
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import subprocess
import tempfile
import time
from pathlib import Path

# Click the run-name cell's expander of each parent run (MLflow 3.17: a button whose data-component-id names
# runnamecellrenderer; leaf runs have none), and close the assistant side panel if it is open.
EXPAND_JS = """
(() => {
  const els = Array.from(document.querySelectorAll('button[data-component-id*="runnamecellrenderer"]'));
  els.forEach(e => e.click());
  document.querySelectorAll('button[aria-label="Close"]').forEach(b => b.click());
  return els.length;
})()
"""


async def shoot(port: int, url: str, out: Path, wait: float) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            try:
                async with session.get(f"http://127.0.0.1:{port}/json") as r:
                    pages = [p for p in await r.json() if p.get("type") == "page"]
                if pages:
                    break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        ws_url = pages[0]["webSocketDebuggerUrl"]
        async with session.ws_connect(ws_url, max_msg_size=0) as ws:
            counter = 0

            async def call(method: str, **params):
                nonlocal counter
                counter += 1
                await ws.send_str(json.dumps({"id": counter, "method": method, "params": params}))
                while True:
                    msg = json.loads((await ws.receive()).data)
                    if msg.get("id") == counter:
                        return msg.get("result", {})

            await call("Page.enable")
            await call("Emulation.setDeviceMetricsOverride", width=1600, height=1000, deviceScaleFactor=1, mobile=False)
            await call("Page.navigate", url=url)
            deadline = time.time() + wait
            clicked = 0
            while time.time() < deadline:  # wait for the table, then expand
                await asyncio.sleep(1.0)
                res = await call("Runtime.evaluate", expression=EXPAND_JS, returnByValue=True)
                clicked = res.get("result", {}).get("value", 0)
                if clicked:
                    break
            await asyncio.sleep(3.0)
            print(f"expanders clicked: {clicked}")
            shot = await call("Page.captureScreenshot", format="png")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(base64.b64decode(shot["data"]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chromium", default="chromium")
    parser.add_argument("--url", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--port", type=int, default=9333)
    parser.add_argument("--wait", type=float, default=30.0)
    parser.add_argument("flags", nargs="*")
    args = parser.parse_args()
    proc = subprocess.Popen(
        [
            args.chromium,
            *args.flags,
            f"--user-data-dir={tempfile.mkdtemp()}",
            f"--remote-debugging-port={args.port}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        asyncio.run(shoot(args.port, args.url, args.out, args.wait))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
