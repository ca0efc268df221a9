"""Benchmark: peak memory while extracting activations for 10,000 pairs.

The HH-RLHF pairs are repeated to 10,000 (extraction does not care that texts repeat). Shards
stream to disk, so memory should stay flat however many pairs there are. The extraction runs in
a child process so its peak RSS is measured alone.

Run: `.venv/bin/python bench/audit_memory.py [N_PAIRS]` (default 10000; takes tens of minutes).
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import sys, time
import pandas as pd
from spectrum_core.audit.extract.activations import extract_activations
from spectrum_core.data import load_preferences
from spectrum_core.models import load_model
n, folder = int(sys.argv[1]), sys.argv[2]
pairs = load_preferences(sys.argv[3]).pairs
pairs = pd.concat([pairs] * (n // len(pairs) + 1), ignore_index=True).head(n)
pairs["pair_id"] = [f"{i:016x}" for i in range(n)]
loaded = load_model("bundled")
started = time.perf_counter()
store = extract_activations(loaded, pairs, folder)
print(store.manifest["n_tokens_total"], time.perf_counter() - started)
"""


def main() -> None:
    n_pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                str(n_pairs),
                folder,
                str(ROOT / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        wall = time.perf_counter() - started
        disk = sum(p.stat().st_size for p in Path(folder).glob("*"))
    tokens, seconds = result.stdout.split()[-2:]
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 / 1024  # KiB -> GiB
    print("| measurement | result |\n|---|---|")
    print(
        f"| peak memory extracting {n_pairs:,} pairs ({int(tokens):,} tokens, "
        f"{float(seconds):.0f} s, {disk / 1e9:.1f} GB of shards) | {peak:.2f} GiB |"
    )
    print(f"(wall time including model load: {wall:.0f} s)")


if __name__ == "__main__":
    main()
