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
        (
            "reset",
            {"base", "multi-task", "multi-task, continued", "ReSet", "ReSet-S"},
            {"faithfulness", "answer accuracy", "constraints satisfied"},
        ),
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
    if script == "ia2":  # IA2's mechanism, measured for every model that answers without demonstrations
        assert "agrees with ICL" in results["N=2 IA2 only"] and "agrees with ICL" not in results["N=2 ICL"]
    assert record["headline"] in done.stdout
    assert not (ROOT / "bench" / "methods" / "results" / "smoke.json").exists()


def test_reset_baseline_targets_meet_their_constraints():
    """The multi-task baseline's instruction-following targets (real demo responses, cut and
    edited) satisfy every pair of constraints they are trained under, the 40-word limit included."""
    from itertools import combinations

    sys.path.insert(0, str(ROOT / "bench" / "methods"))
    try:
        from reset import constraint_prompts, satisfy
    finally:
        sys.path.pop(0)
    from spectrum_core.tasks.scorers import CONSTRAINTS, constraints_satisfied

    prompts = constraint_prompts(30, "train", seed=0, max_chars=400)
    assert len({p["messages"][0]["content"] for p in prompts}) == 30
    for prompt in prompts:
        for pair in combinations([c.name for c in CONSTRAINTS], 2):
            target = satisfy(prompt["chosen"], list(pair), max_words=60)
            assert constraints_satisfied(target, list(pair)) == 1.0, (pair, target)
        assert (
            prompt["chosen"].split()[0].strip(",").lower()
            in satisfy(prompt["chosen"], prompt["constraints"], 60).lower()
        )
