"""The predictor, the scatter's summary and the re-emergence flag on hand-made values with known
answers; the realised (standardised) shift on hand-made encodings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from spectrum_core.metrics.prediction import (
    SURPRISE_AGAINST,
    SURPRISE_UNSEEN,
    predicted_shift,
    predicted_shifts,
    reemerged,
    scatter_summary,
)
from spectrum_core.metrics.prevalence import Generations, compare_prevalence
from spectrum_core.reward.encoder import EncodedResponses


def test_predicted_shift_is_the_weighted_mean_of_signed_standardised_deltas():
    delta = np.array([2.0, 1.0, -1.0, 4.0])
    # weights 1, 3, 2, 0 (a dropped pair weighs nothing); the third pair flipped
    by_hand = (1 * 2.0 + 3 * 1.0 + 2 * 1.0 + 0) / (2.0 * 6)
    assert predicted_shift(delta, np.array([1, 3, 2, 0.0]), np.array([0, 0, 1, 0]), 2.0) == pytest.approx(by_hand)
    assert predicted_shift(delta, np.ones(4), np.zeros(4), 0.0) == 0.0  # never differs
    assert predicted_shift(delta[:0], np.ones(0), np.zeros(0), 1.0) == 0.0  # no training pair


def test_predicted_shifts_read_the_training_pairs_and_family_parts():
    pair_ids = pd.Index(["a", "b", "c", "d"])
    deltas = {"x": np.array([1.0, 1.0, -1.0, 3.0]), "y": np.array([0.0, 2.0, 0.0, -2.0])}
    training = pd.DataFrame(
        {"pair_id": ["b", "d", "zz"], "weight": [1.0, 1.0, 5.0], "flipped": [False, True, False]}
    )  # "zz" was not audited: left out
    concepts = [{"concept_id": "x"}, {"concept_id": "family:0", "parts": [("x", 1.0), ("y", 0.5)]}]
    out = predicted_shifts(concepts, deltas.__getitem__, pair_ids, training)
    sd_x = deltas["x"].std()
    assert out["x"] == pytest.approx((1.0 - 3.0) / 2 / sd_x)
    family = deltas["x"] + 0.5 * deltas["y"]  # [1, 2, -1, 2]
    assert out["family:0"] == pytest.approx((2.0 - 2.0) / 2 / family.std())


def _table(rows):
    return pd.DataFrame(
        rows, columns=["concept_id", "label", "predicted", "shift", "shift_low", "shift_high", "q_value"]
    )


def test_scatter_summary_counts_agreement_and_surprises():
    table = _table(
        [
            ("f1", "a", 0.4, 0.8, 0.5, 1.1, 0.001),  # moved up as predicted
            ("f2", "b", -0.2, -0.5, -0.7, -0.3, 0.01),  # moved down as predicted
            ("f3", "c", 0.1, -0.4, -0.6, -0.2, 0.02),  # moved against the prediction
            ("f4", "d", 0.01, 0.3, 0.1, 0.5, 0.6),  # moved while the audit saw nothing
            ("f5", "e", 0.05, 0.02, -0.2, 0.24, 0.3),  # did not move
        ]
    )
    summary = scatter_summary(table, alpha=0.05)
    assert summary["families"] == 5 and summary["moved"] == 4
    assert summary["sign_agreement"] == pytest.approx(3 / 4)  # f1, f2, f4 agree in sign; f3 does not
    r = np.corrcoef(table["predicted"], table["shift"])[0, 1]
    assert summary["r2"] == pytest.approx(r**2)
    assert summary["spearman"] == pytest.approx(pd.Series(table["predicted"]).corr(table["shift"], method="spearman"))
    assert {(s["concept_id"], s["why"]) for s in summary["surprises"]} == {
        ("f3", SURPRISE_AGAINST),
        ("f4", SURPRISE_UNSEEN),
    }


def test_scatter_summary_with_too_few_families_has_no_fit():
    summary = scatter_summary(_table([("f1", "a", 0.4, 0.8, 0.5, 1.1, 0.001)]), alpha=0.05)
    assert summary["r2"] is None and summary["spearman"] is None and summary["sign_agreement"] == 1.0


def test_reemerged_needs_a_held_point_before_a_risen_one():
    curve = pd.DataFrame(
        {
            "concept_id": ["back"] * 3 + ["always"] * 3 + ["held"] * 3 + ["early"] * 3,
            "position": [0, 1, 2] * 4,
            "rose": [False, False, True, True, True, True, False, False, False, True, False, False],
        }
    )
    assert reemerged(curve) == ["back"]  # "always" rose from the start: flagged elsewhere, not a return


def _generations(values: np.ndarray) -> Generations:
    n = len(values)
    features = sp.csr_matrix(np.column_stack([values, np.zeros(n)]))
    encoded = EncodedResponses(features=features, pooled=np.zeros((n, 4)), lengths=np.full(n, 10))
    return Generations([[{"role": "user", "content": f"q{i}"}] for i in range(n)], ["r"] * n, encoded)


def test_realised_shift_is_the_paired_change_in_pooled_standard_deviations():
    base = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    tuned = base + np.array([1.0, 2.0, 1.0, 2.0, 1.0, 2.0])
    table = compare_prevalence(_generations(base), _generations(tuned), [{"concept_id": "token:0"}], {})
    row = table.iloc[0]
    scale = np.sqrt((base.var(ddof=1) + tuned.var(ddof=1)) / 2)
    assert row["difference"] == pytest.approx(1.5)
    assert row["scale"] == pytest.approx(scale)
    assert row["shift"] == pytest.approx(1.5 / scale)
    assert row["shift_low"] == pytest.approx(row["difference_low"] / scale) and row["shift_low"] > 0
    assert row["rose"]
