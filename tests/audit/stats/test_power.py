"""The power statement of an audit, against exact binomial arithmetic worked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from spectrum_core.audit.stats import power
from spectrum_core.audit.stats.concept_statistics import rank_concepts


def test_critical_count_by_hand():
    # 10 pairs: 9 of 10 gives p = 2·11/1024 = 0.0215 ≤ 0.05; 8 of 10 gives 2·56/1024 = 0.109.
    assert power.critical_count(10, 0.05) == 9
    # 5 pairs: even 5 of 5 gives p = 2/32 = 0.0625 > 0.05, so nothing can be found.
    assert power.critical_count(5, 0.05) is None
    assert power.critical_count(6, 0.05) == 6  # 2/64 = 0.031
    assert power.critical_count(0, 0.05) is None


def test_power_and_detectable_share_by_hand():
    # 10 pairs at α = 0.05 reject at ≥ 9 of one sign: power at share s = P(X ≥ 9) + P(X ≤ 1).
    s = 0.9
    expected = sps.binom.pmf(9, 10, s) + sps.binom.pmf(10, 10, s) + sps.binom.pmf(0, 10, s) + sps.binom.pmf(1, 10, s)
    assert power.sign_test_power(10, s, 0.05) == pytest.approx(expected)
    assert power.sign_test_power(10, 0.5, 0.05) == pytest.approx(2 * 11 / 1024)  # the test's own size
    share = power.detectable_share(10, 0.05)
    assert power.sign_test_power(10, share, 0.05) == pytest.approx(power.POWER, abs=1e-6)
    assert power.detectable_share(5, 0.05) is None
    # More pairs detect smaller effects; a stricter bar needs larger ones.
    assert power.detectable_share(1000, 0.05) < power.detectable_share(100, 0.05) < share
    assert power.detectable_share(100, 0.05 / 500) > power.detectable_share(100, 0.05)


def test_pairs_needed_is_the_first_size_with_enough_power():
    n = power.pairs_needed(0.7, 0.05)
    assert power.sign_test_power(n, 0.7, 0.05) >= power.POWER > power.sign_test_power(n - 1, 0.7, 0.05)
    assert power.pairs_needed(0.3, 0.05) == n  # either direction
    assert power.pairs_needed(0.5, 0.05) is None
    assert power.pairs_needed(0.5001, 0.05) is None  # beyond MAX_PAIRS


def table(rows):
    return pd.DataFrame(rows, columns=["concept_id", "p_sign", "q_value", "n_differ", "share_chosen_more"])


def test_verdict_when_nothing_passes_names_the_numbers():
    concepts = table([("token:1", 0.02, 0.4, 40, 0.7), ("token:2", 0.5, 0.9, 20, 0.6), ("probe:x", 1.0, 1.0, 0, 0.5)])
    summary = power.power_summary(concepts, n_pairs=120, alpha=0.05)
    assert summary.n_significant == 0 and summary.n_tested == 3 and summary.per_test_alpha == pytest.approx(0.05 / 3)
    assert summary.strongest == "token:1" and summary.median_differing == 30
    differing = power.pairs_needed(0.7, 0.05 / 3)
    assert summary.strongest_pairs_needed == int(np.ceil(differing * 120 / 40))
    sentence = power.verdict(summary)
    assert sentence.startswith("No concept passes the FDR threshold (q < 0.05) in these 120 pairs")
    assert f"{summary.detectable_share_all_pairs:.0%}" in sentence and "token:1" in sentence
    assert f"roughly {summary.strongest_pairs_needed:,} pairs" in sentence and sentence.count(".") >= 1


def test_verdict_when_concepts_pass():
    concepts = table([("token:1", 1e-6, 1e-4, 400, 0.8), ("token:2", 0.5, 0.9, 20, 0.6)])
    summary = power.power_summary(concepts, n_pairs=1000, alpha=0.05)
    assert (
        power.verdict(summary)
        == "1 of 2 concepts pass the FDR threshold (q < 0.05) in these 1,000 pairs; they rank first."
    )


@pytest.mark.parametrize("alpha", [0.05, 0.01, 0.2])
def test_no_concept_over_the_threshold_ranks_above_one_under_it(alpha):
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 40))
        q = rng.choice([rng.uniform(0, 1), 0.0, alpha, 1.0], size=n) * rng.uniform(0.5, 1.5, size=n)
        frame = pd.DataFrame(
            {
                "q_value": np.clip(q, 0, 1),
                "p_logit": rng.uniform(0, 0.2, size=n),
                "coef": rng.normal(size=n),
                "ci_low": rng.normal(-0.5, 1, size=n),
                "ci_high": rng.normal(0.5, 1, size=n),
                "converged": rng.random(n) > 0.1,
            }
        )
        ranked = rank_concepts(frame, alpha=alpha)
        passes = (ranked["q_value"] < alpha).to_numpy()
        assert not np.any(~passes[:-1] & passes[1:]), "a concept over the threshold ranks above one under it"


def test_length_baseline_and_agreement_strength_by_hand():
    from sklearn.metrics import roc_auc_score

    from spectrum_core.audit.stats.baselines import agreement_strength, length_baseline
    from spectrum_core.audit.stats.length_control import length_design, length_null
    from spectrum_core.audit.stats.pairs import randomised_order

    chosen = np.array([10, 20, 5, 7, 9, 30, 12, 8])
    rejected = np.array([5, 10, 5, 9, 3, 10, 6, 8])
    baseline = length_baseline(chosen, rejected, np.ones(8, dtype=bool), seed=0)
    assert baseline.pairs_with_length_difference == 6 and baseline.longer_chosen_share == pytest.approx(5 / 6)
    assert np.isnan(baseline.length_only_auc_held_out)  # no held-out pairs
    # Held out: the AUC of the fitted length-only logit, with the labels of the randomised order.
    rng = np.random.default_rng(1)
    rejected = rng.integers(5, 50, size=60)
    chosen = rejected + rng.integers(-10, 30, size=60)
    train = np.arange(60) < 40
    signs = randomised_order(60, 3)
    null = length_null(chosen, rejected, signs, rows=train)  # the length-only model, on train pairs
    scores = length_design(chosen, rejected, signs)[~train] @ null.beta
    baseline = length_baseline(chosen, rejected, train, seed=3)
    assert baseline.length_only_auc_held_out == pytest.approx(roc_auc_score(signs[~train] > 0, scores))
    assert baseline.length_only_auc_held_out > 0.6
    concepts = pd.DataFrame({"n_differ": [50, 0, 10], "share_chosen_more": [0.8, np.nan, 0.3]})
    scored = agreement_strength(concepts, n_pairs=100)
    np.testing.assert_allclose(scored["relevance"], [0.5, 0.0, 0.1])
    np.testing.assert_allclose(scored["kappa"], [0.6, 0.0, -0.4])
    np.testing.assert_allclose(scored["agreement_strength"], [0.3, 0.0, -0.04])
