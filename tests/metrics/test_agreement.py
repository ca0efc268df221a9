"""Agreement of predicted and realised shifts, its bootstrap over prompts and length partialling,
on small tables computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from spectrum_core.metrics.agreement import (
    agreement,
    bootstrap,
    difference_interval,
    realised_shifts,
    resamples,
    summarise,
    without_length,
)


def test_realised_shift_by_hand():
    base = np.array([[0.0, 5.0], [1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])
    tuned = np.array([[1.0, 5.0], [3.0, 5.0], [2.0, 5.0], [4.0, 5.0]])
    # concept 0: changes 1, 2, 0, 1 (mean 1); both variances 5/3; concept 1 never varies: 0
    np.testing.assert_allclose(realised_shifts(base, tuned), [1 / np.sqrt(5 / 3), 0.0])


def test_agreement_counts_every_concept_with_a_predicted_sign():
    predicted = np.array([1.0, -1.0, 2.0, 0.0])
    realised = np.array([0.5, 0.5, 1.0, -3.0])
    out = agreement(predicted, realised)
    assert out["sign_agreement"] == pytest.approx(2 / 3)  # the 0 prediction has no sign; -1 vs +0.5 disagrees
    assert out["r2"] == pytest.approx(np.corrcoef(predicted, realised)[0, 1] ** 2) and out["slope"] > 0
    # ranks (3, 1, 4, 2) against (2.5, 2.5, 4, 1): centred dot 3 over √5·√4.5
    assert out["spearman"] == pytest.approx(3 / np.sqrt(5 * 4.5))
    assert agreement(predicted[:2], realised[:2])["r2"] is None  # two points: no fit
    # A prediction of the opposite direction scores the same share of variance with a minus sign.
    opposite = agreement(-predicted, realised)
    assert opposite["r2"] == pytest.approx(-out["r2"]) and opposite["slope"] < 0


def test_bootstrap_recomputes_the_shifts_on_each_resample_of_prompts():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(6, 4))
    tuned = base + np.array([1.0, -0.5, 0.2, 0.0]) + 0.3 * rng.normal(size=(6, 4))
    predicted = np.array([2.0, -1.0, 0.5, 0.1])
    draws = np.array([[0, 1, 2, 3, 4, 5], [0, 0, 1, 1, 2, 2], [5, 4, 5, 4, 3, 3]])
    samples = bootstrap(predicted, base, tuned, draws)
    for i, rows in enumerate(draws):
        b, t = base[rows], tuned[rows]
        shift = (t - b).mean(0) / np.sqrt((b.var(0, ddof=1) + t.var(0, ddof=1)) / 2)
        r = np.corrcoef(predicted, shift)[0, 1]
        assert samples["r2"][i] == pytest.approx(r * abs(r))
        assert samples["sign_agreement"][i] == pytest.approx(np.mean(np.sign(predicted) == np.sign(shift)))
    # the first draw is the sample itself
    assert samples["r2"][0] == pytest.approx(agreement(predicted, realised_shifts(base, tuned))["r2"])


def test_percentile_intervals_and_paired_differences():
    out = summarise({"r2": 0.5}, {"r2": np.arange(101.0), "spearman": np.full(5, np.nan)})
    assert (out["r2"], out["r2_low"], out["r2_high"]) == (0.5, 2.5, 97.5)
    assert out["spearman_low"] is None and out["spearman_high"] is None
    a, b = np.arange(101.0), np.arange(101.0) - 1.0
    assert difference_interval(a, b) == (1.0, 1.0)


def test_a_clear_prediction_has_a_tight_interval_and_resamples_are_seeded():
    rng = np.random.default_rng(1)
    predicted = np.concatenate([np.linspace(-1, -0.5, 6), np.linspace(0.5, 1, 6)])
    base = rng.normal(size=(40, 12))
    tuned = base + predicted + 0.2 * rng.normal(size=(40, 12))
    draws = resamples(40, seed=3)
    np.testing.assert_array_equal(draws, resamples(40, seed=3))
    out = summarise(agreement(predicted, realised_shifts(base, tuned)), bootstrap(predicted, base, tuned, draws))
    assert out["sign_agreement_low"] == 1.0 and out["r2_low"] > 0.8


def test_length_partialled_out_keeps_the_level_and_removes_the_line():
    lengths = np.array([10.0, 20.0, 30.0, 40.0])
    other = np.array([1.0, -1.0, -1.0, 1.0])  # uncorrelated with length
    values = np.column_stack([3 + 2 * lengths + other, other])
    out = without_length(values, lengths)
    np.testing.assert_allclose(out[:, 0], 3 + other + 2 * 0)  # the line on length gone, the level 3 kept
    np.testing.assert_allclose(out[:, 1], other)
