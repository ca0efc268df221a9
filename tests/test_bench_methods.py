"""The method benchmarks' smoke presets run end to end (every condition, two seeds, tiny sizes)
and write results the report and the Tuning page read."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize(
    "script, conditions, metrics",
    [
        ("ia2", {"N=2 base", "N=2 ICL", "N=2 SFT only", "N=2 IA2 only", "N=2 IA2 → SFT"}, {"accuracy", "ECE"}),
        ("spectrum", {"base", "Spectrum Tuning"}, {"loss ≥ 1", "JS", "yield"}),
    ],
)
def test_smoke_preset_runs_every_condition(script, conditions, metrics, tmp_path, bundled_model):
    out = tmp_path / f"{script}.json"
    done = subprocess.run(
        [sys.executable, f"bench/methods/{script}.py", "--preset", "smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(out.read_text())
    results = record["results"]
    assert conditions <= set(results) and record["preset"] == "smoke"
    for condition in conditions:
        for metric in metrics:
            entry = results[condition][metric]
            assert entry["n"] == 2 and len(entry["values"]) == 2  # one value per seed
            assert math.isfinite(entry["mean"]) and entry["low"] <= entry["mean"] <= entry["high"]
    assert record["headline"] in done.stdout
    assert not (ROOT / "bench" / "methods" / "results" / "smoke.json").exists()
