"""Benchmark: the app server's own CPU while a page watches a running job (target: under 2% of a
core), with Streamlit's file watching as shipped (off) and as a developer runs it (`--dev`: on).

For each mode: a fresh workspace inside the project tree (where `make app` keeps `./workspace`,
so a watcher sees every file the job writes), an audit of HH pairs started as a job, the server
started with `spectrum app`, and a headless Chromium on the Audit page, which polls the job every
two seconds. Once the job is extracting (writing progress and activation shards), the server
process's CPU time (user + system, from /proc) is read over ``--seconds``. The job and the
browser use the other core(s); only the server's time is counted.

Run: `.venv/bin/python bench/app_cpu.py` (about 4 minutes on a 2-core CPU; needs Debian's
chromium, which `make test` installs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HH = ROOT / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
CHROMIUM = os.environ.get("SPECTRUM_CHROMIUM", "/usr/bin/chromium")
# Enough pairs that extraction (the stage that writes shards) outlasts the measurement.
AUDIT_PAIRS = 600


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure(dev: bool, seconds: float) -> tuple[float, int]:
    """(server CPU seconds over the window, progress records the job wrote in it)."""
    from playwright.sync_api import sync_playwright

    from spectrum_core import jobs
    from spectrum_core.progress import read_progress
    from spectrum_core.workspace import Workspace

    root = Path(tempfile.mkdtemp(prefix="workspace-bench-", dir=ROOT))
    server = None
    try:
        workspace = Workspace(root)
        record = workspace.add_dataset(HH, name="HH")
        args = ["audit", str(record["id"]), "--max-pairs", str(AUDIT_PAIRS), "--sae-seeds", "0", "--topics", "0"]
        job_id = jobs.start_job(workspace, "audit", args, {"bench": "app_cpu"}, dataset_id=record["id"])
        port = free_port()
        command = [sys.executable, "-m", "spectrum_core.cli", "--workspace", str(root), "app", "--port", str(port)]
        server = subprocess.Popen(
            command + (["--dev"] if dev else []),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            deadline = time.time() + 120
            while True:
                try:
                    page.goto(f"http://127.0.0.1:{port}/audit", timeout=10_000)
                    break
                except Exception:  # noqa: BLE001 - the server is still starting
                    if time.time() > deadline:
                        raise
                    time.sleep(1)
            page.get_by_text(f"Audit #{job_id}").first.wait_for(timeout=120_000)
            progress = root / workspace.job(job_id).progress_path
            while not any(r["stage"] == "activations" for r in read_progress(progress)):
                time.sleep(1)  # loading the model: wait for the stage that writes shards
            records_before = len(read_progress(progress))
            before = cpu_seconds(server.pid)
            time.sleep(seconds)
            used = cpu_seconds(server.pid) - before
            written = len(read_progress(progress)) - records_before
            browser.close()
        if jobs.refresh(workspace, job_id).status != "running":
            raise RuntimeError(f"the audit job ended before the window closed: {jobs.view(workspace, job_id).log_tail}")
        jobs.stop_job(workspace, job_id, grace_seconds=2)
        return used, written
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--shipped-only", action="store_true", help="skip the --dev measurement")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    rows = []
    modes = [("shipped (no file watching)", False), ("`--dev` (Streamlit's watcher on)", True)]
    for name, dev in modes[:1] if args.shipped_only else modes:
        used, written = measure(dev, args.seconds)
        rows.append((name, used, written))
    print(f"server CPU while the Audit page watches an audit job ({AUDIT_PAIRS} HH pairs), {args.seconds:.0f} s")
    print("| server | CPU seconds | share of a core (target < 2%) | progress records written meanwhile |")
    print("|---|---|---|---|")
    for name, used, written in rows:
        print(f"| {name} | {used:.2f} | {100 * used / args.seconds:.1f}% | {written} |")


if __name__ == "__main__":
    main()
