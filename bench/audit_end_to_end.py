"""Benchmark: the whole audit (extraction + SAE + features + statistics + labels), end to end,
as `spectrum audit` runs it, on 500 HH pairs and on all of them, each in a fresh workspace.

Run: `.venv/bin/python bench/audit_end_to_end.py [--only-small]`.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HH = ROOT / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"


def timed_audit(extra: list[str]) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as workspace:
        started = time.perf_counter()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "spectrum_core.cli",
                "--workspace",
                workspace,
                "audit",
                str(HH),
                "--top",
                "10",
                *extra,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return time.perf_counter() - started, result.stdout


def main() -> None:
    runs = [("500 HH pairs (target ≤ 3 min)", ["--max-pairs", "500"])]
    if "--only-small" not in sys.argv:
        runs.append(("all 2,303 HH pairs (target ≤ 10 min)", []))
    rows = []
    for name, extra in runs:
        seconds, output = timed_audit(extra)
        rows.append((name, seconds))
        print(f"=== {name}: {seconds:.0f} s\n{output}")
    print("| full audit, `spectrum audit` wall time | result |\n|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds / 60:.1f} min ({seconds:.0f} s) |")


if __name__ == "__main__":
    main()
