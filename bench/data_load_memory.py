"""Benchmark: time and peak memory of loading a large file of tiny rows, the loader's worst case
(per-row overhead dominates, not text).

Writes a JSONL file of ``--rows`` distinct tiny pairs (default one million, about 60 MB), then in a
fresh process for each measurement: ``load_preferences`` alone, and ``spectrum data add`` (load,
then save into a new workspace). Peak memory is the child process's maximum resident set size,
interpreter and libraries included; the baseline line is that of a process that only imports the
loader, so the difference is what the rows cost. Run: `.venv/bin/python bench/data_load_memory.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMPORT_ONLY = "import spectrum_core.data"
LOAD_ONLY = (
    "import sys; from spectrum_core.data import load_preferences; "
    "d = load_preferences(sys.argv[1]); print(d.report.rows_read, len(d))"
)


def write_rows(path: Path, rows: int) -> None:
    with open(path, "w") as handle:
        for i in range(rows):
            handle.write(json.dumps({"prompt": f"q{i}", "chosen": f"yes {i}", "rejected": f"no {i}"}) + "\n")


def measured(command: list[str]) -> tuple[float, float, str]:
    """(seconds, peak resident MB, stdout) of a fresh child process."""
    started = time.perf_counter()
    # A child of a child: getrusage(RUSAGE_CHILDREN) reports the largest child waited for so far,
    # so each measurement runs in its own short-lived wrapper process to keep the peaks apart.
    wrapper = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "sys.stderr.write(r.stderr); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); print(r.stdout)"
    )
    done = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    peak_kb, _, output = done.stdout.partition("\n")
    return seconds, int(peak_kb) / 1024, output.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tiny-rows.jsonl"
        write_rows(path, args.rows)
        size_mb = path.stat().st_size / 1e6
        _, base_mb, _ = measured([sys.executable, "-c", IMPORT_ONLY])
        load_s, load_mb, output = measured([sys.executable, "-c", LOAD_ONLY, str(path)])
        add_s, add_mb, _ = measured(
            [sys.executable, "-m", "spectrum_core.cli", "--workspace", str(Path(tmp) / "ws"), "data", "add", str(path)]
        )
    print(f"file: {args.rows:,} rows, {size_mb:.0f} MB; loaded: {output}; cores: {os.cpu_count()}")
    print("| measurement | time | peak memory | above an import-only process | per MB of file |")
    print("|---|---|---|---|---|")
    for name, seconds, peak in (("load_preferences", load_s, load_mb), ("spectrum data add", add_s, add_mb)):
        extra = peak - base_mb
        print(f"| {name} | {seconds:.0f} s | {peak:,.0f} MB | {extra:,.0f} MB | {extra / size_mb:.1f} |")


if __name__ == "__main__":
    main()
