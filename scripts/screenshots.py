"""Take README screenshots of the running app in a real headless Chromium.

Starts the app on a fresh demo workspace, waits for each page to finish rendering (a plain
`chromium --screenshot` captures only Streamlit's loading skeleton), and saves PNGs to docs/.
Needs Debian's chromium (/usr/bin/chromium) and the playwright Python package.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    from playwright.sync_api import sync_playwright

    port = free_port()
    workspace = tempfile.mkdtemp(prefix="spectrum-shots-")
    env = dict(os.environ, SPECTRUM_WORKSPACE=workspace)
    server = subprocess.Popen([sys.executable, "-m", "spectrum_core.cli", "app", "--port", str(port)],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            deadline = time.time() + 60
            while True:
                try:
                    page.goto(f"http://127.0.0.1:{port}/", timeout=5000)
                    break
                except Exception:  # noqa: BLE001 - the server is still starting
                    if time.time() > deadline:
                        raise
                    time.sleep(1)
            page.get_by_text("Pairs kept").wait_for(timeout=90_000)
            page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
            page.wait_for_timeout(1500)
            target = ROOT / "docs" / "dataset-page.png"
            page.screenshot(path=str(target), full_page=False)
            print(f"saved {target}")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
