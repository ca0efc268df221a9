"""Benchmark scripts that must stay runnable: the GPU check runs its whole path on the CPU with a
tiny config (the machine with the GPU has no network and no second chance)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT


def test_the_gpu_check_runs_end_to_end_on_a_cpu_with_a_tiny_model(tmp_path, bundled_model):
    out = tmp_path / "gpu-check.json"
    done = subprocess.run(
        ["bash", "bench/gpu_check.sh", "--size", "tiny", "--pairs", "24", "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["pairs"] == 24 and results["device"] == "cpu"
    assert results["tokens_per_second"] > 0 and results["floor_tokens_per_second"] > 0
    assert 0 < results["ratio"] == results["tokens_per_second"] / results["floor_tokens_per_second"]
    assert {"activations", "sae", "statistics"} <= set(results["stage_seconds"])
    assert "| whole audit |" in done.stdout
