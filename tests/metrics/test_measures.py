"""Each metric against a value computed by hand on a small case."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from spectrum_core.embeddings import embed
from spectrum_core.metrics.calibration import expected_calibration_error
from spectrum_core.metrics.coverage import coverage_metrics, normalise_output
from spectrum_core.metrics.divergence import compare_distributions, js_divergence, kl_divergence
from spectrum_core.metrics.diversity import distinct_n, embedding_diversity
from spectrum_core.metrics.preference import reward_comparison
from spectrum_core.metrics.prevalence import Generations, compare_prevalence, wilson_interval
from spectrum_core.reward.encoder import EncodedResponses


def test_jensen_shannon_of_known_distributions():
    assert js_divergence([1, 0], [0, 1]) == pytest.approx(1.0)  # disjoint: 1 bit
    assert js_divergence([0.3, 0.7], [3, 7]) == pytest.approx(0.0, abs=1e-12)  # counts are normalised
    # M = (0.75, 0.25): H(M) − (H(p) + H(q)) / 2 = 0.811278 − (1 + 0) / 2
    assert js_divergence([0.5, 0.5], [1, 0]) == pytest.approx(0.311278, abs=1e-6)


def test_kl_both_ways_and_mode_match():
    # 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75)
    assert kl_divergence([0.5, 0.5], [0.25, 0.75], smoothing=0.0) == pytest.approx(0.143841, abs=1e-6)
    # 0.25 ln(0.25/0.5) + 0.75 ln(0.75/0.5)
    assert kl_divergence([0.25, 0.75], [0.5, 0.5], smoothing=0.0) == pytest.approx(0.130812, abs=1e-6)
    assert math.isfinite(kl_divergence([0.5, 0.5], [1.0, 0.0]))  # smoothed: a zero does not make it infinite
    result = compare_distributions([0.2, 0.5, 0.3], [1, 8, 1])
    assert result["mode_match"] == 1.0
    assert compare_distributions([0.6, 0.3, 0.1], [1, 8, 1])["mode_match"] == 0.0
    with pytest.raises(ValueError):
        js_divergence([0, 0], [1, 1])


def test_expected_calibration_error_by_hand():
    # Bin 9: confidence 0.95, accuracy 0.5 → 0.45; bin 1: confidence 0.15, accuracy 0 → 0.15; each half the tokens.
    assert expected_calibration_error([0.95, 0.95, 0.15, 0.15], [1, 0, 0, 0]) == pytest.approx(0.30)
    assert expected_calibration_error([1.0, 1.0], [1, 1]) == pytest.approx(0.0)


def test_coverage_yield_and_uniqueness_of_a_fixed_list():
    days = ["{Monday}", "{Tuesday}", "{Wednesday}", "{Thursday}", "{Friday}", "{Saturday}", "{Sunday}"]
    samples = ["{Monday}", "Sure! {monday}", " {Tuesday}.", "Funday", "{Monday}", "I cannot pick a day"]
    result = coverage_metrics(samples, days)
    assert result["valid_share"] == pytest.approx(4 / 6)
    assert result["yield"] == 2
    assert result["coverage"] == pytest.approx(2 / 7)
    assert result["uniqueness"] == pytest.approx(2 / 4)
    assert normalise_output("  The answer: {New  York}. ") == "{new york}"


def test_distinct_n_and_embedding_diversity():
    assert distinct_n(["a b a b"], 1) == pytest.approx(0.5)
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert distinct_n(["one"], 2) == 0.0
    assert embedding_diversity(np.eye(3)) == pytest.approx(1.0)
    assert embedding_diversity(np.tile([[0.6, 0.8]], (4, 1))) == pytest.approx(0.0)


def test_local_sentence_embedder_separates_paraphrases_from_unrelated_text():
    vectors = embed(["The cat sat on the mat.", "A cat was sitting on the mat.", "Quarterly tax filing deadlines"])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > 0.7 > 0.2 > vectors[0] @ vectors[2]


def test_win_rate_counts_ties_as_half():
    result = reward_comparison([0.0, 1.0, 2.0, 0.0], [1.0, 1.0, 1.0, 3.0])
    assert result["win_rate"] == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert result["base_mean"] == pytest.approx(0.75) and result["tuned_mean"] == pytest.approx(1.5)


def test_wilson_interval_known_value():
    low, high = wilson_interval(5, 10)
    assert (low, high) == pytest.approx((0.236593, 0.763407), abs=1e-5)


def _generations(column: np.ndarray, texts: list[str]) -> Generations:
    features = sp.csr_matrix(np.stack([column, np.zeros_like(column)], axis=1))
    prompts = [[{"role": "user", "content": f"q{i}"}] for i in range(len(texts))]
    return Generations(
        prompts,
        texts,
        EncodedResponses(features=features, pooled=np.zeros((len(texts), 4)), lengths=np.full(len(texts), 5)),
    )


def test_prevalence_flags_a_suppressed_concept_that_rose_and_only_that():
    n = 20
    base = _generations(np.r_[np.zeros(15), np.ones(5)], ["plain answer."] * n)  # fires on 5 of 20
    tuned = _generations(np.r_[np.ones(15), np.zeros(5)] * 2.0, ["plain answer."] * n)  # fires on 15, mean 1.5
    concepts = [
        {"concept_id": "token:0", "label": "planted", "action": "suppress"},
        {"concept_id": "token:1", "label": "silent", "action": "suppress"},
        {"concept_id": "probe:exclamation", "label": "exclamations", "action": "amplify"},
        # A family: the weighted sum of its members, firing where any token-mode member fires.
        {
            "concept_id": "family:0",
            "label": "both",
            "action": "suppress",
            "parts": [("token:0", 2.0), ("token:1", 1.0)],
        },
    ]
    table = compare_prevalence(base, tuned, concepts, saes={}).set_index("concept_id")
    family = table.loc["family:0"]
    assert family["base_mean"] == pytest.approx(0.5) and family["tuned_mean"] == pytest.approx(3.0)
    assert family["tuned_rate"] == pytest.approx(0.75) and family["threshold"] == 0 and family["flagged"]
    planted = table.loc["token:0"]
    assert planted["base_rate"] == pytest.approx(0.25) and planted["tuned_rate"] == pytest.approx(0.75)
    assert planted["base_mean"] == pytest.approx(0.25) and planted["tuned_mean"] == pytest.approx(1.5)
    # paired differences: 15 × (+2) and 5 × (−1): mean 1.25
    assert planted["difference"] == pytest.approx(1.25)
    assert planted["difference_low"] > 0 and planted["flagged"]
    assert not table.loc["token:1", "flagged"] and table.loc["token:1", "tuned_rate"] == 0
    assert not table.loc["probe:exclamation", "flagged"]  # amplified concepts are never flagged
    one_sided = compare_prevalence(base, None, concepts[:1], saes={})
    assert "tuned_rate" not in one_sided and one_sided["base_rate"].iloc[0] == pytest.approx(0.25)
    shuffled = Generations(base.prompts[::-1], base.responses, base.encoded)
    with pytest.raises(ValueError, match="different prompts"):
        compare_prevalence(base, shuffled, concepts, saes={})


def test_equal_mass_ece_by_hand():
    from spectrum_core.metrics.calibration import equal_mass_ece

    # 6 predictions, 3 bins of 2 after sorting by confidence:
    # (0.2, 0.3) right 0 of 2: |0 - 0.25| = 0.25; (0.6, 0.7) right 1: |0.5 - 0.65| = 0.15;
    # (0.9, 1.0) right 2: |1 - 0.95| = 0.05 → (0.25 + 0.15 + 0.05) / 3 = 0.15
    confidence = [0.9, 0.2, 0.6, 1.0, 0.3, 0.7]
    correct = [1, 0, 1, 1, 0, 0]
    assert equal_mass_ece(confidence, correct, n_bins=3) == pytest.approx(0.15)
    assert equal_mass_ece([0.8] * 10, [1] * 8 + [0] * 2, n_bins=1) == pytest.approx(0.0)  # calibrated overall
    # one item per bin: each bin's error is |right - 0.8|, so 8 x 0.2 + 2 x 0.8 over 10
    assert equal_mass_ece([0.8] * 10, [1] * 8 + [0] * 2, n_bins=10) == pytest.approx(0.32)
    assert equal_mass_ece([0.5, 0.5], [1, 1], n_bins=15) == pytest.approx(0.5)  # fewer items than bins
