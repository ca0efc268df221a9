"""The detection score against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spectrum_core.audit.labelling.detection import detection_score


def test_balanced_accuracy_by_hand():
    # 3 of 4 active called yes (0.75), 4 of 5 inactive called no (0.8): (0.75 + 0.8) / 2.
    result = detection_score([True, True, True, False], [False, False, True, False, False], seed=0)
    assert result.score == pytest.approx(0.775)
    assert (result.n_active, result.n_inactive) == (4, 5)
    assert result.low <= result.score <= result.high


def test_a_label_that_says_yes_to_everything_scores_one_half():
    result = detection_score([True] * 6, [True] * 6)
    assert result.score == 0.5 and result.low == result.high == 0.5  # no variation to resample


def test_perfect_and_empty_cases():
    perfect = detection_score([True] * 5, [False] * 5)
    assert perfect.score == perfect.low == perfect.high == 1.0
    assert math.isnan(detection_score([], [False]).score)


def test_bootstrap_interval_matches_a_direct_computation():
    active = np.array([True, False, True, True, False, True, True, False, True, True])
    inactive = np.array([False, False, True, False, False, False, True, False, False, False])
    result = detection_score(active, inactive, seed=3, n_boot=500)
    rng = np.random.default_rng(3)
    a = active[rng.integers(0, 10, size=(500, 10))].mean(axis=1)
    b = (~inactive)[rng.integers(0, 10, size=(500, 10))].mean(axis=1)
    low, high = np.percentile((a + b) / 2, [2.5, 97.5])
    assert (result.low, result.high) == pytest.approx((low, high))
    assert result.score == pytest.approx((0.7 + 0.8) / 2)
