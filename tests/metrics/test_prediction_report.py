"""The Prediction tab's tables from evaluation reports: every predictor's row with its interval,
and the spread between runs that differ only in seed."""

from __future__ import annotations

import pandas as pd
import pytest

from spectrum_core.metrics.prediction import GROUP_HEAD
from spectrum_core.metrics.prediction_report import agreement_rows, interval_text, seed_spread


def _report(target: str, seed: int, r2: float, control: str = "none", steps: int = 48) -> dict:
    figures = {"r2": r2, "r2_low": r2 - 0.1, "r2_high": r2 + 0.1, "spearman": 0.5, "sign_agreement": 0.9}
    return {
        "target": target,
        "plan_hash": "abc",
        "run_config": {"method": "dpo", "seed": seed, "max_steps": steps, "plan_id": 1 + seed},
        "prediction": {
            **figures,
            "concepts": 3,
            "training_pairs": 192,
            "prompts": 64,
            "control": control,
            "baselines": {"length": {"r2": 0.1}, "words": {"r2": 0.2, "r2_low": 0.0, "r2_high": 0.4}},
            "without_length": {"r2": 0.3},
            "by_group": {GROUP_HEAD: {"concepts": 2, "sign_agreement": 1.0}},
        },
    }


def test_interval_text():
    assert interval_text({"r2": 0.481, "r2_low": 0.3, "r2_high": 0.62}, "r2") == "0.48 [0.30, 0.62]"
    assert interval_text({"r2": 0.481}, "r2") == "0.48" and interval_text({"r2": None}, "r2") == "–"


def test_agreement_rows_put_every_predictor_of_every_run_side_by_side():
    rows = agreement_rows([_report("run 2", 0, 0.5), _report("run 3", 0, 0.05, control="shuffle"), {"target": "base"}])
    assert len(rows) == 10 and rows["model"].tolist() == ["run 2"] * 5 + ["run 3"] * 5
    assert rows.loc[0, "R² [95% CI]"] == "0.50 [0.40, 0.60]" and rows.loc[1, "R² [95% CI]"] == "0.10"
    assert rows.loc[5, "control"] == "shuffled labels (control)" and rows.loc[0, "control"] == ""
    # a group's row counts that group's concepts; groups a run does not have get no row
    heads = rows.loc[4]
    assert heads["predictor"] == "the audit, its heads only" and heads["concepts"] == 2
    assert heads["sign agreement"] == "1.00" and rows.loc[0, "concepts"] == 3


def test_seed_spread_pairs_only_runs_that_differ_in_seed_alone():
    other_plan = {**_report("run 5", 1, 0.2), "plan_hash": "def"}
    reports = [_report("run 2", 0, 0.5), _report("run 3", 1, 0.4), _report("run 4", 0, 0.3, steps=96), other_plan]
    shifts = {
        "run 2": pd.DataFrame({"concept_id": ["a", "b", "c", "d"], "shift": [0.1, 0.4, -0.2, 0.0]}),
        "run 3": pd.DataFrame({"concept_id": ["a", "b", "c", "e"], "shift": [0.2, 0.8, -0.4, 1.0]}),
        "run 4": pd.DataFrame({"concept_id": ["a", "b", "c"], "shift": [0.0, 0.0, 0.1]}),
        "run 5": pd.DataFrame({"concept_id": ["a", "b", "c"], "shift": [0.0, 0.0, 0.1]}),
    }
    spread = seed_spread(reports, shifts)
    # the same plan under two ids pairs; run 4 trained for longer and run 5 on another plan: no twins
    assert spread["runs"].tolist() == ["run 2 / run 3"]
    row = spread.iloc[0]
    assert row["R² difference"] == pytest.approx(0.1) and row["concepts"] == 3
    assert row["R² of one seed's shifts on the other's"] == pytest.approx(1.0)  # a, b, c: one is twice the other
