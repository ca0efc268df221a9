"""The exact two-sided sign test per concept on the pairs where it differs, and the
Benjamini–Hochberg (or Bonferroni) adjustment across concepts."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats as sps

from .pairs import (
    Matrix,
    delta_csr,
)


def sign_pvalues(n_pos: np.ndarray, n_neg: np.ndarray) -> np.ndarray:
    """Exact two-sided binomial test of n_pos successes in n_pos + n_neg trials at p = 1/2.

    Under p = 1/2 the distribution is symmetric, so the two-sided p-value of
    ``scipy.stats.binomtest`` reduces to 2·P(X <= min(k, n − k)), and 1 when k = n/2 or n = 0.
    """
    n_pos = np.asarray(n_pos, dtype=np.int64)
    n_neg = np.asarray(n_neg, dtype=np.int64)
    n = n_pos + n_neg
    p = np.minimum(1.0, 2.0 * sps.binom.cdf(np.minimum(n_pos, n_neg), n, 0.5))
    p[(n_pos == n_neg) | (n == 0)] = 1.0
    return p


def sign_test(delta: Matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-feature exact sign test on the pairs where the feature differs (Δ ≠ 0).

    Returns ``(n_pos, n_neg, p_values)``: counts of Δ > 0 and Δ < 0 and the two-sided exact
    binomial p-value at p = 0.5 (equal to ``scipy.stats.binomtest(n_pos, n_pos + n_neg).pvalue``;
    1 for features that never differ).
    """
    d = delta_csr(delta)
    n_features = d.shape[1]
    n_pos = np.bincount(d.indices[d.data > 0], minlength=n_features)
    n_neg = np.bincount(d.indices[d.data < 0], minlength=n_features)
    return n_pos, n_neg, sign_pvalues(n_pos, n_neg)


def adjust_pvalues(p: Any, method: str = "bh") -> np.ndarray:
    """Benjamini–Hochberg q-values (``"bh"``) or Bonferroni-adjusted p-values (``"bonferroni"``).

    NaN p-values stay NaN and do not count towards the number of tests m. The BH arithmetic is
    that of ``statsmodels.stats.multitest.multipletests(p, method="fdr_bh")``.
    """
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    valid = ~np.isnan(p)
    values = p[valid]
    m = values.size
    if m == 0:
        return out
    if method == "bonferroni":
        adjusted = np.minimum(values * m, 1.0)
    elif method in ("bh", "fdr_bh"):
        order = np.argsort(values)
        ranked = values[order] / (np.arange(1, m + 1) / m)
        monotone = np.minimum.accumulate(ranked[::-1])[::-1]
        np.minimum(monotone, 1.0, out=monotone)
        adjusted = np.empty(m)
        adjusted[order] = monotone
    else:
        raise ValueError(f"unknown correction {method!r}; use 'bh' or 'bonferroni'")
    out[valid] = adjusted
    return out
