"""The audit statistics against direct computations on small seeded inputs.

Reference implementations: scipy.stats.binomtest, statsmodels (multipletests, Logit, GLM with an
offset), scikit-learn's liblinear on the fully materialised design, roc_auc_score per zeroed
column, and plain numpy on dense arrays.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats as sps

from spectrum_core.audit.review import describe_concept
from spectrum_core.audit.stats.concept_statistics import feature_statistics, rank_concepts
from spectrum_core.audit.stats.joint import _sklearn_l1_kwargs, joint_model
from spectrum_core.audit.stats.length_basis import length_basis
from spectrum_core.audit.stats.length_control import length_null, score_pvalues
from spectrum_core.audit.stats.length_logit import length_controlled_logit
from spectrum_core.audit.stats.pairs import randomised_order
from spectrum_core.audit.stats.sign_test import adjust_pvalues, sign_test


def random_pairs(
    n_pairs: int, n_features: int, density: float, seed: int
) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray, np.ndarray]:
    """Noise activations (nonnegative, float32) and response lengths."""
    rng = np.random.default_rng(seed)
    chosen = sp.random(n_pairs, n_features, density=density, random_state=rng, format="csr", dtype=np.float32)
    rejected = sp.random(n_pairs, n_features, density=density, random_state=rng, format="csr", dtype=np.float32)
    chosen_len = rng.integers(20, 400, n_pairs).astype(float)
    rejected_len = rng.integers(20, 400, n_pairs).astype(float)
    return chosen, rejected, chosen_len, rejected_len


def with_columns(matrix: sp.csr_matrix, columns: dict[int, np.ndarray]) -> sp.csr_matrix:
    """``matrix`` with the given columns replaced by dense vectors."""
    dense = matrix.toarray()
    for j, values in columns.items():
        dense[:, j] = values
    return sp.csr_matrix(dense.astype(np.float32))


def design(delta: np.ndarray, chosen_len: np.ndarray, rejected_len: np.ndarray, seed: int):
    """The randomised-order design, computed directly: signs, y, length covariate, x = sign·Δ/SD."""
    signs = randomised_order(delta.shape[0], seed).astype(float)
    y = (signs > 0).astype(float)
    length = signs * (chosen_len - rejected_len)
    sd = delta.std(axis=0)
    x = signs[:, None] * delta / np.where(sd > 0, sd, 1.0)
    return signs, y, length, x


def longer_chosen(chosen_len: np.ndarray, rejected_len: np.ndarray, share: float, seed: int):
    """The same lengths, the longer one chosen in about ``share`` of the pairs. (Shifting every
    chosen length up instead leaves the longest lengths all chosen: a range that separates the
    labels, where no length model has a finite fit.)"""
    longer = np.random.default_rng(seed).random(len(chosen_len)) < share
    high, low = np.maximum(chosen_len, rejected_len), np.minimum(chosen_len, rejected_len)
    return np.where(longer, high, low), np.where(longer, low, high)


# --- sign test and multiple testing --------------------------------------------------------


def test_sign_test_equals_binomtest_per_feature():
    rng = np.random.default_rng(0)
    n_pairs, n_features = 80, 40
    p_pos = rng.uniform(0, 0.5, n_features)
    p_neg = rng.uniform(0, 0.5, n_features)
    u = rng.random((n_pairs, n_features))
    delta = np.where(u < p_pos, rng.exponential(1, u.shape), 0.0)
    delta = np.where((u >= p_pos) & (u < p_pos + p_neg), -rng.exponential(1, u.shape), delta)
    delta[:, 0] = 0.0  # never differs
    delta[:, 1] = np.repeat([1.0, -1.0, 0.0, 0.0], n_pairs // 4)  # as many up as down
    delta[:3, 2], delta[3:, 2] = 2.0, 0.0  # three pairs, all one way

    n_pos, n_neg, p = sign_test(sp.csr_matrix(delta.astype(np.float32)))

    np.testing.assert_array_equal(n_pos, (delta > 0).sum(axis=0))
    np.testing.assert_array_equal(n_neg, (delta < 0).sum(axis=0))
    expected = [1.0 if k + m == 0 else sps.binomtest(int(k), int(k + m), 0.5).pvalue for k, m in zip(n_pos, n_neg)]
    np.testing.assert_allclose(p, expected, rtol=1e-10, atol=0)
    assert p[0] == 1.0 and p[1] == 1.0
    assert p[2] == pytest.approx(0.25)


def test_sign_test_dense_and_sparse_agree():
    chosen, rejected, _, _ = random_pairs(50, 12, 0.3, seed=1)
    delta = (chosen - rejected).toarray()
    for a, b in zip(sign_test(delta), sign_test(sp.csc_matrix(delta))):
        np.testing.assert_array_equal(a, b)


def test_benjamini_hochberg_matches_statsmodels_and_ignores_nan():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    rng = np.random.default_rng(2)
    p = np.concatenate([rng.uniform(0, 1, 300), rng.uniform(0, 1e-4, 20), [0.5, 0.5, 0.5, 1.0, 0.0]])
    rng.shuffle(p)
    np.testing.assert_allclose(
        adjust_pvalues(p, "bh"), multitest.multipletests(p, method="fdr_bh")[1], rtol=1e-12, atol=0
    )
    np.testing.assert_allclose(
        adjust_pvalues(p, "bonferroni"), multitest.multipletests(p, method="bonferroni")[1], rtol=1e-12
    )

    with_nan = p.copy()
    with_nan[::7] = np.nan
    q = adjust_pvalues(with_nan, "bh")
    valid = ~np.isnan(with_nan)
    assert np.isnan(q[~valid]).all()
    np.testing.assert_allclose(q[valid], multitest.multipletests(with_nan[valid], method="fdr_bh")[1], rtol=1e-12)
    order = np.argsort(with_nan[valid])
    assert np.all(np.diff(q[valid][order]) >= 0) and q[valid].max() <= 1.0
    with pytest.raises(ValueError):
        adjust_pvalues(p, "holm")


def test_randomised_order_is_seeded_plus_minus_one():
    signs = randomised_order(10_000, seed=7)
    assert set(np.unique(signs)) == {-1, 1}
    np.testing.assert_array_equal(signs, randomised_order(10_000, seed=7))
    assert not np.array_equal(signs, randomised_order(10_000, seed=8))
    assert abs((signs > 0).mean() - 0.5) < 0.02


# --- length-controlled logit ---------------------------------------------------------------


def test_logit_matches_statsmodels_glm_with_null_offset():
    sm = pytest.importorskip("statsmodels.api")
    chosen, rejected, chosen_len, rejected_len = random_pairs(400, 25, 0.2, seed=3)
    # A real effect, and length that matters, so neither the offset nor β is trivial.
    rng = np.random.default_rng(3)
    chosen = with_columns(chosen, {0: (rng.random(400) < 0.5) * rng.exponential(1, 400)})
    chosen_len, rejected_len = longer_chosen(chosen_len, rejected_len, 0.7, seed=3)
    delta = (chosen - rejected).toarray().astype(np.float64)
    seed = 11
    table = length_controlled_logit(chosen - rejected, chosen_len, rejected_len, seed)
    signs, y, length, x = design(delta, chosen_len, rejected_len, seed)

    # The length-only model: an intercept, the length difference and the spline of each side's log
    # length, by statsmodels.
    null_design = np.column_stack([np.ones(len(y)), length, signs[:, None] * length_basis(chosen_len, rejected_len)])
    null = sm.Logit(y, null_design).fit(disp=0, method="newton", maxiter=200)
    assert table.attrs["null_converged"]
    np.testing.assert_allclose(table.attrs["null_intercept"], null.params[0], rtol=1e-5, atol=1e-8)
    offset = null_design @ null.params
    np.testing.assert_allclose(length_null(chosen_len, rejected_len, signs).offset, offset, rtol=1e-5, atol=1e-6)

    assert table["converged"].all()
    for j in range(delta.shape[1]):
        fit = sm.GLM(y, x[:, [j]], family=sm.families.Binomial(), offset=offset).fit(method="newton")
        row = table.loc[j]
        low, high = fit.conf_int()[0]
        np.testing.assert_allclose(
            [row["coef"], row["se"], row["ci_low"], row["ci_high"], row["p_logit"]],
            [fit.params[0], fit.bse[0], low, high, fit.pvalues[0]],
            rtol=1e-5,
            atol=1e-5,
            err_msg=f"feature {j}",
        )
    assert table.loc[0, "coef"] > 0.5 and table.loc[0, "p_logit"] < 1e-4


def test_the_primary_test_is_statsmodels_score_test_beyond_the_length_spline():
    """p_value: the efficient score test of each Δ against the length-only model (length terms
    estimated), equal to statsmodels' GLM score test; it stays finite under separation."""
    sm = pytest.importorskip("statsmodels.api")
    chosen, rejected, chosen_len, rejected_len = random_pairs(300, 8, 0.3, seed=21)
    rng = np.random.default_rng(21)
    chosen_len, rejected_len = longer_chosen(chosen_len, rejected_len, 0.65, seed=21)
    chosen = with_columns(chosen, {0: (rng.random(300) < 0.4) * rng.exponential(1, 300), 1: chosen_len / 100})
    rejected = with_columns(rejected, {0: np.zeros(300), 1: rejected_len / 100})  # 0 separates; 1 is length
    delta = (chosen - rejected).toarray().astype(np.float64)
    signs = randomised_order(300, 5)
    null = length_null(chosen_len, rejected_len, signs)
    _, p = score_pvalues(sp.csc_matrix(delta), signs, null)
    fit = sm.GLM((signs > 0).astype(float), null.design, family=sm.families.Binomial()).fit()
    assert p[1] == 1.0  # the length difference itself: nothing beyond length
    for j in [0, *range(2, delta.shape[1])]:
        expected = fit.score_test(exog_extra=(signs * delta[:, j])[:, None])[1]
        np.testing.assert_allclose(p[j], expected, rtol=1e-4, atol=1e-12, err_msg=f"feature {j}")
    assert p[0] < 1e-10  # separated, yet finite and significant


def test_length_feature_is_explained_by_length():
    """Activation = response length: a huge raw sign-test effect, ~0 once length is controlled."""
    chosen, rejected, chosen_len, rejected_len = random_pairs(500, 6, 0.2, seed=4)
    chosen_len, rejected_len = longer_chosen(chosen_len, rejected_len, 0.75, seed=4)  # chosen are longer
    rng = np.random.default_rng(4)
    chosen = with_columns(chosen, {0: chosen_len * rng.uniform(0.98, 1.02, 500)})
    rejected = with_columns(rejected, {0: rejected_len * rng.uniform(0.98, 1.02, 500)})
    delta = chosen - rejected

    n_pos, n_neg, p_sign = sign_test(delta)
    assert p_sign[0] < 1e-10 and n_pos[0] > 2 * n_neg[0]
    controlled = length_controlled_logit(delta, chosen_len, rejected_len, seed=0)
    zeros = np.zeros(500)
    uncontrolled = length_controlled_logit(delta, zeros, zeros, seed=0)  # null = intercept only
    assert uncontrolled.loc[0, "coef"] > 0.5 and uncontrolled.loc[0, "p_logit"] < 1e-10
    assert abs(controlled.loc[0, "coef"]) < 0.15 * uncontrolled.loc[0, "coef"]
    assert controlled.loc[0, "p_logit"] > 1e-3
    # The primary test agrees: length in disguise is not a finding.
    signs = randomised_order(500, 0)
    _, p_value = score_pvalues(sp.csc_matrix(delta), signs, length_null(chosen_len, rejected_len, signs))
    assert p_value[0] > 1e-3


def test_direction_is_the_length_aware_tests_when_length_tips_the_raw_count():
    """Preferences for the longer answer and for less of a concept whose activation grows with
    length: raw, chosen responses have more of it; for their length, rejected ones do. The
    direction (and the sentence) follow the primary test, which is what q says."""
    rng = np.random.default_rng(3)
    n = 600
    length_a, length_b = rng.integers(20, 400, n).astype(float), rng.integers(20, 400, n).astype(float)
    concept_a, concept_b = rng.normal(size=n), rng.normal(size=n)
    a_chosen = rng.random(n) < 1 / (1 + np.exp(-(3 * (length_a - length_b) / 100 - 1.5 * (concept_a - concept_b))))
    chosen_len, rejected_len = np.where(a_chosen, length_a, length_b), np.where(a_chosen, length_b, length_a)
    activation_a, activation_b = length_a / 100 + concept_a + 3, length_b / 100 + concept_b + 3
    chosen = np.where(a_chosen, activation_a, activation_b)[:, None]
    rejected = np.where(a_chosen, activation_b, activation_a)[:, None]
    table, _ = feature_statistics(chosen, rejected, chosen_len, rejected_len, np.ones(n, dtype=bool), seed=0)
    row = table.loc[0]
    assert row["share_chosen_more"] > 0.55 and row["p_value"] < 1e-6 and row["coef"] < 0
    assert row["direction"] == "rejected"
    sentence = describe_concept({**row.to_dict(), "label": "x"})
    assert sentence.startswith("Rejected responses have more of “x” for their length")


def test_separation_stays_finite_and_is_flagged():
    chosen, rejected, chosen_len, rejected_len = random_pairs(300, 5, 0.2, seed=5)
    rng = np.random.default_rng(5)
    chosen = with_columns(chosen, {0: (rng.random(300) < 0.3) * rng.exponential(1, 300) + 0.0, 2: np.zeros(300)})
    rejected = with_columns(rejected, {0: np.zeros(300), 2: np.zeros(300)})
    table = length_controlled_logit(chosen - rejected, chosen_len, rejected_len, seed=1)

    separated = table.loc[0]
    assert not separated["converged"]
    assert np.isfinite(separated[["coef", "ci_low", "ci_high", "se", "p_logit"]].to_numpy(float)).all()
    assert separated["coef"] > 0
    assert table.loc[2, ["coef", "se", "p_logit"]].isna().all()  # never differs
    assert not table.loc[2, "converged"]
    others = table.drop(index=[0, 2])
    assert others["converged"].all() and np.isfinite(others.to_numpy(float)).all()


def test_length_that_separates_the_labels_is_flagged_not_fatal():
    """Chosen always longer: length alone predicts the randomised label perfectly."""
    chosen, rejected, chosen_len, _ = random_pairs(200, 6, 0.2, seed=15)
    rejected_len = chosen_len - np.random.default_rng(15).integers(1, 50, 200)
    table = length_controlled_logit(chosen - rejected, chosen_len, rejected_len, seed=0)
    assert not table.attrs["null_converged"] and not table["converged"].any()
    assert np.isfinite(table.drop(columns="converged").to_numpy(float)).all()


# --- joint model ---------------------------------------------------------------------------


def planted_problem(n_pairs: int, n_features: int, seed: int, strength: float):
    """Features 0-2 chosen-side with decreasing strength (0 = no effect), the rest noise."""
    chosen, rejected, chosen_len, rejected_len = random_pairs(n_pairs, n_features, 0.1, seed)
    rng = np.random.default_rng(seed + 100)
    planted_c, planted_r = {}, {}
    for j, (p_c, p_r) in enumerate([(0.8, 0.1), (0.4, 0.2), (0.3, 0.2)]):
        p_c = p_r + strength * (p_c - p_r)
        planted_c[j] = (rng.random(n_pairs) < p_c) * rng.exponential(1, n_pairs)
        planted_r[j] = (rng.random(n_pairs) < p_r) * rng.exponential(1, n_pairs)
    train = rng.random(n_pairs) < 0.7
    return (with_columns(chosen, planted_c), with_columns(rejected, planted_r), chosen_len, rejected_len, train)


def test_joint_model_finds_signal_and_not_noise():
    chosen, rejected, chosen_len, rejected_len, train = planted_problem(2000, 60, 6, strength=1.0)
    signal = joint_model(chosen - rejected, chosen_len, rejected_len, train, seed=0)
    assert signal["auc_held_out"] > 0.7
    assert signal["coef"][0] > 0 and signal["auc_contribution"][0] > 0.05
    assert np.all(signal["auc_contribution"][signal["coef"] == 0] == 0)
    assert 1 <= signal["n_selected"] == np.count_nonzero(signal["coef"])

    chosen, rejected, chosen_len, rejected_len, train = planted_problem(2000, 60, 7, strength=0.0)
    noise = joint_model(chosen - rejected, chosen_len, rejected_len, train, seed=0)
    assert 0.4 < noise["auc_held_out"] < 0.6


def test_joint_model_equals_full_liblinear_fit_and_exact_auc_contributions():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    chosen, rejected, chosen_len, rejected_len, train = planted_problem(1500, 80, 8, strength=0.6)
    delta = (chosen - rejected).toarray().astype(np.float64)
    seed = 3
    signs, y, _, x = design(delta, chosen_len, rejected_len, seed)
    dlen = chosen_len - rejected_len
    X = np.column_stack([x, signs * dlen / dlen.std()])
    y = y.astype(bool)
    for C in (None, 0.05):
        result = joint_model(chosen - rejected, chosen_len, rejected_len, train, seed=seed, C=C)
        full = LogisticRegression(
            C=result["C"], solver="liblinear", tol=1e-4, random_state=seed, **_sklearn_l1_kwargs()
        )
        full.fit(X[train].astype(np.float32), y[train])
        ours = np.append(result["coef"], result["length_coef"])
        np.testing.assert_allclose(ours, full.coef_.ravel(), atol=2e-3)
        assert np.array_equal(result["coef"] != 0, full.coef_.ravel()[:-1] != 0)

        held = ~train
        scores = X[held] @ ours  # AUC ignores the intercept
        assert result["auc_held_out"] == pytest.approx(roc_auc_score(y[held], scores), abs=1e-9)
        for j in np.flatnonzero(result["coef"]):
            zeroed = X[held].copy()
            zeroed[:, j] = 0.0
            expected = result["auc_held_out"] - roc_auc_score(y[held], zeroed @ ours)
            assert result["auc_contribution"][j] == pytest.approx(expected, abs=1e-9)
        assert result["auc_train"] == pytest.approx(roc_auc_score(y[train], X[train] @ ours), abs=1e-6)


def test_joint_model_degenerate_splits():
    chosen, rejected, chosen_len, rejected_len = random_pairs(40, 8, 0.3, seed=9)
    everything = joint_model(chosen - rejected, chosen_len, rejected_len, np.ones(40, bool), seed=0)
    assert np.isnan(everything["auc_held_out"]) and np.isfinite(everything["auc_train"])
    nothing = joint_model(chosen - rejected, chosen_len, rejected_len, np.zeros(40, bool), seed=0)
    assert np.isnan(nothing["auc_held_out"]) and nothing["n_selected"] == 0
    assert np.all(nothing["coef"] == 0)


# --- everything together -------------------------------------------------------------------


def test_planted_feature_ranks_first_and_noise_is_not_significant():
    n_pairs, n_features = 600, 40
    chosen, rejected, chosen_len, rejected_len = random_pairs(n_pairs, n_features, 0.1, seed=10)
    rng = np.random.default_rng(10)
    chosen = with_columns(chosen, {0: (rng.random(n_pairs) < 0.8) * rng.uniform(0.5, 2.0, n_pairs)})
    rejected = with_columns(rejected, {0: (rng.random(n_pairs) < 0.1) * rng.uniform(0.5, 2.0, n_pairs)})
    train = rng.random(n_pairs) < 0.7
    table, summary = feature_statistics(chosen, rejected, chosen_len, rejected_len, train, seed=0)

    ranked = rank_concepts(table)
    assert ranked.index[0] == 0 and ranked["rank"].iloc[0] == 1
    assert list(ranked["rank"]) == list(range(1, n_features + 1))
    top = ranked.iloc[0]
    assert top["q_value"] < 1e-6 and top["direction"] == "chosen" and top["share_chosen_more"] > 0.8
    assert top["coef"] > 0 and top["ci_low"] > 0 and top["joint_coef"] > 0
    noise = table.drop(index=0)
    assert (noise["q_value"] > 0.05).all()
    assert summary["auc_held_out"] > 0.7
    assert set(summary) >= {
        "auc_held_out",
        "auc_train",
        "C",
        "length_coef",
        "n_selected",
        "null_intercept",
        "null_converged",
    }
    assert not any(isinstance(v, np.ndarray) for v in summary.values())


def test_descriptive_columns_match_numpy():
    chosen, rejected, chosen_len, rejected_len = random_pairs(200, 15, 0.2, seed=12)
    c, r = chosen.toarray().astype(np.float64), rejected.toarray().astype(np.float64)
    c[:, 3] = r[:, 3] = c[:, 4] = r[:, 4] = 0.0  # 3 never fires
    c[:50, 4] = r[:50, 4] = 1.5  # 4 fires on both sides of 50 pairs with no difference
    train = np.arange(200) < 140
    table, _ = feature_statistics(
        c.astype(np.float32), r.astype(np.float32), chosen_len, rejected_len, train, seed=1, correction="bonferroni"
    )
    delta = c - r
    np.testing.assert_allclose(table["prevalence"], ((c != 0) | (r != 0)).mean(axis=0))
    np.testing.assert_array_equal(table["n_differ"], (delta != 0).sum(axis=0))
    np.testing.assert_array_equal(table["n_chosen_more"], (delta > 0).sum(axis=0))
    np.testing.assert_array_equal(table["n_rejected_more"], (delta < 0).sum(axis=0))
    np.testing.assert_allclose(table["mean_delta"], delta.mean(axis=0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(table["mean_chosen"], c.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(table["mean_rejected"], r.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(table["q_value"], np.minimum(table["p_sign"] * 15, 1.0))
    share = table["share_chosen_more"]
    # direction is the length-aware test's: the sign of its score, which is the sign of the
    # length-controlled coefficient (the log-likelihood is concave in it)
    tested = (table["p_value"] < 1.0) & table["converged"].astype(bool) & (table["coef"].abs() > 1e-9)
    assert tested.sum() >= 10
    np.testing.assert_array_equal(
        table.loc[tested, "direction"], np.where(table.loc[tested, "coef"] > 0, "chosen", "rejected")
    )
    for j in (3, 4):
        assert np.isnan(share[j]) and table.loc[j, "direction"] == "none"
        assert table.loc[j, "p_sign"] == 1.0 and np.isnan(table.loc[j, "coef"])
    assert table.loc[4, "prevalence"] == 0.25
    assert table.index.name == "feature" and list(table.index) == list(range(15))
    expected_columns = [
        "prevalence",
        "n_differ",
        "n_chosen_more",
        "n_rejected_more",
        "share_chosen_more",
        "direction",
        "mean_delta",
        "mean_chosen",
        "mean_rejected",
        "p_sign",
        "q_value",
        "coef",
        "ci_low",
        "ci_high",
        "p_logit",
        "joint_coef",
        "auc_contribution",
    ]
    assert set(expected_columns) <= set(table.columns)


def test_dense_and_sparse_inputs_give_identical_results():
    chosen, rejected, chosen_len, rejected_len, train = planted_problem(800, 30, 13, strength=1.0)
    sparse_table, sparse_summary = feature_statistics(chosen, rejected, chosen_len, rejected_len, train, seed=4)
    dense_table, dense_summary = feature_statistics(
        chosen.toarray(), rejected.toarray(), chosen_len, rejected_len, train, seed=4
    )
    pd.testing.assert_frame_equal(sparse_table, dense_table)
    assert sparse_summary == dense_summary

    # Non-canonical sparse input (duplicates summing to the values, explicit zeros) and CSC.
    coo = chosen.tocoo()
    halves = sp.coo_matrix(
        (
            np.concatenate([coo.data / 2, coo.data / 2, np.zeros(5, np.float32)]),
            (np.concatenate([coo.row, coo.row, np.arange(5)]), np.concatenate([coo.col, coo.col, np.arange(5)])),
        ),
        shape=coo.shape,
    )
    odd_table, odd_summary = feature_statistics(halves, rejected.tocsc(), chosen_len, rejected_len, train, seed=4)
    pd.testing.assert_frame_equal(sparse_table, odd_table, check_exact=False, rtol=1e-5)
    assert odd_summary["auc_held_out"] == pytest.approx(sparse_summary["auc_held_out"], abs=1e-6)


def test_tiny_audit_does_not_fail():
    chosen, rejected, chosen_len, rejected_len = random_pairs(10, 4, 0.5, seed=14)
    train = np.arange(10) < 8
    table, summary = feature_statistics(chosen, rejected, chosen_len, rejected_len, train, seed=0)
    assert len(table) == 4 and summary["C"] > 0
    ranked = rank_concepts(table)
    assert list(ranked["rank"]) == [1, 2, 3, 4]


def test_rank_concepts_puts_strong_significant_effects_first():
    table = pd.DataFrame(
        {
            "q_value": [0.5, 0.01, 0.01, np.nan, 0.2, 1e-12, 1e-3],
            "coef": [3.0, -0.2, 0.9, 5.0, np.nan, 0.1, 2.0],
            "converged": [True, True, True, True, True, True, False],
        },
        index=[10, 11, 12, 13, 14, 15, 16],
    )
    ranked = rank_concepts(table)
    # Significant: by |coef| (12, 11, 15), the unconverged 16 after them; then the rest by q.
    assert list(ranked.index) == [12, 11, 15, 16, 14, 10, 13]
    assert list(ranked["rank"]) == list(range(1, 8))
    assert "rank" not in table.columns
    # Nothing significant, equal q: the better-evidenced effect leads, not the biggest coefficient.
    loose = pd.DataFrame(
        {"q_value": [1.0, 1.0], "coef": [29.0, 0.5], "p_logit": [0.6, 0.01], "converged": [True, True]}
    )
    assert list(rank_concepts(loose).index) == [1, 0]
    # A sign-test hit whose length-controlled interval includes zero goes after confirmed ones.
    mixed = pd.DataFrame(
        {"q_value": [0.003, 1e-9], "coef": [-0.53, 0.3], "p_logit": [0.1, 1e-8], "converged": [True, True]}
    )
    assert list(rank_concepts(mixed).index) == [1, 0]
    # With intervals, a precise effect beats a larger but uncertain one.
    intervals = pd.DataFrame(
        {
            "q_value": [1e-9, 1e-9],
            "coef": [4.0, 2.0],
            "ci_low": [0.2, 1.5],
            "ci_high": [7.8, 2.5],
            "p_logit": [0.04, 1e-9],
            "converged": [True, True],
        }
    )
    assert list(rank_concepts(intervals).index) == [1, 0]


def test_the_joint_model_reads_a_csc_delta_without_copying_it_and_fits_as_from_csr():
    """A canonical CSC Δ (the families' every-concept Δ) is read in place; stored zeros and a
    dense or CSR input give the same fit."""
    from spectrum_core.audit.stats.pairs import delta_csc

    rng = np.random.default_rng(3)
    n_pairs = 400
    delta = rng.normal(size=(n_pairs, 6)) * (rng.random((n_pairs, 6)) < 0.4)
    signs = randomised_order(n_pairs, 0)
    delta[:, 0] += 0.8 * (signs > 0)  # a column that predicts the label
    csc = sp.csc_matrix(delta)
    assert np.shares_memory(delta_csc(csc).data, csc.data)
    with_zeros = csc.copy()
    with_zeros.data[:3] = 0.0
    cleaned = delta_csc(with_zeros)
    assert cleaned.nnz == csc.nnz - 3 and with_zeros.nnz == csc.nnz  # the caller's matrix is left as it was
    lengths = (np.full(n_pairs, 10.0), np.full(n_pairs, 10.0))
    train = np.arange(n_pairs) < 300
    fits = [joint_model(m, *lengths, train, seed=0) for m in (csc, sp.csr_matrix(delta), delta)]
    for fit in fits[1:]:
        np.testing.assert_array_equal(fit["coef"], fits[0]["coef"])
        assert fit["auc_held_out"] == fits[0]["auc_held_out"]
    assert fits[0]["coef"][0] != 0 and fits[0]["auc_held_out"] > 0.6
