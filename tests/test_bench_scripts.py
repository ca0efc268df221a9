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


def test_the_recovery_benchmark_plants_what_it_says_and_scores_by_hand(hh_dataset):
    """Each plant sits on the side its indicator says (filler on both sides, indicator 0); the
    verbosity pairs are one answer short and long; a head that is a plant's indicator recovers it."""
    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(ROOT / "bench"))
    import recovery

    pairs = hh_dataset.pairs.head(200).reset_index(drop=True)
    planted, indicators = recovery.planted_pairs(pairs, seed=0)

    def holds(texts: pd.Series, phrase: str) -> pd.Series:
        return texts.map(lambda text: phrase in " ".join(str(text).split()))

    for plant in recovery.PLANTS:
        phrase = " ".join(plant.text.split())
        on = {side: holds(planted[side], phrase) & ~holds(pairs[side], phrase) for side in ("chosen", "rejected")}
        indicator = indicators[plant.name]
        if plant.both:
            assert (indicator == 0).all() and (on["chosen"] == on["rejected"]).all() and on["chosen"].any()
        else:
            np.testing.assert_array_equal(indicator == 1, on["chosen"].to_numpy())
            np.testing.assert_array_equal(indicator == -1, on["rejected"].to_numpy())
    rates = {
        p.name: (indicators[p.name] == 1).sum() / max(1, (indicators[p.name] != 0).sum())
        for p in recovery.PLANTS
        if not p.both
    }
    assert rates["list 0.8"] > 0.65 and rates["emoji, rejected 0.8"] < 0.35
    verbose = recovery.verbosity_pairs(pairs, seed=0)
    longer = verbose["chosen"].str.len() > verbose["rejected"].str.len()
    assert 0.8 < longer.mean() < 0.97
    assert all(a.startswith(b) or b.startswith(a) for a, b in zip(verbose["chosen"], verbose["rejected"]))
    lean = pd.Series(indicators["list 0.8"], index=planted["pair_id"])
    assert recovery._r(lean.to_numpy(), lean.to_numpy() * 2.0) == 1.0
