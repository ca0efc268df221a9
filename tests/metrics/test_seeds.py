"""A metric over seeds: mean and Student-t 95% interval, checked by hand."""

from __future__ import annotations

import math

import pytest

from spectrum_core.metrics.seeds import over_seeds


def test_interval_over_three_seeds_by_hand():
    # mean 2, sample SD 1, t(0.975, 2) = 4.302653 → half width 4.302653 / sqrt(3) = 2.484138
    summary = over_seeds([1.0, 2.0, 3.0])
    assert summary.n == 3 and summary.mean == pytest.approx(2.0)
    assert summary.low == pytest.approx(2.0 - 2.484138, abs=1e-5)
    assert summary.high == pytest.approx(2.0 + 2.484138, abs=1e-5)
    assert summary.text(2) == "2.00 [-0.48, 4.48]"


def test_one_seed_has_no_interval_and_missing_values_are_left_out():
    single = over_seeds([0.7, None, float("nan")])
    assert single.n == 1 and single.mean == pytest.approx(0.7) and math.isnan(single.low)
    assert single.text() == "0.700 (1 seed)"
    assert over_seeds([]).n == 0
