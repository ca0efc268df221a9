"""A flexible length control for paired preferences: a spline of each side's log length.

The preference between two responses is modelled Bradley–Terry style, P(first preferred) =
σ(f(first) − f(second)), so a flexible length term is f(log length) expanded in a cubic B-spline
basis B and entered as B(log l_first) − B(log l_second). That is "a spline of each side's log
length" in the only form a paired model can use (a term common to both sides cancels), and it
lets length matter more between 20 and 80 tokens than between 400 and 460, which the linear
offset on Δtokens cannot. Lengths are whole responses (not the audit's truncated view), so a
response cut at 512 tokens does not look as long as one of 513.
"""

from __future__ import annotations

import numpy as np
from sklearn.preprocessing import SplineTransformer

# Knots at quantiles of log length (duplicates, from ties in short answers, merged), so every
# basis function is nonzero in a good share of the pairs: with uniform knots the boundary function
# was nonzero in a handful of the shortest pairs, and where those happened to be separable the
# length-only fit diverged. Five knots and degree 3 give six basis functions, enough to bend where
# length stops mattering, few enough to stay stable at a hundred pairs.
N_KNOTS = 5
DEGREE = 3
MIN_SUPPORT = 10  # a basis difference nonzero in fewer pairs than this is dropped (the same failure)


def log_length(lengths: np.ndarray) -> np.ndarray:
    return np.log1p(np.maximum(np.asarray(lengths, dtype=np.float64), 0.0))


def length_basis(chosen_len: np.ndarray, rejected_len: np.ndarray) -> np.ndarray:
    """(n_pairs, b): B(log chosen length) − B(log rejected length), the basis fitted on both
    sides' lengths together. No columns when every response has the same length."""
    chosen, rejected = log_length(chosen_len), log_length(rejected_len)
    both = np.concatenate([chosen, rejected])[:, None]
    if both.size == 0 or np.ptp(both) == 0:
        return np.zeros((len(chosen), 0))
    knots = np.unique(np.quantile(both, np.linspace(0.0, 1.0, N_KNOTS)))
    if len(knots) < 3:  # nearly every response one length: knots over the range instead
        knots = np.linspace(both.min(), both.max(), N_KNOTS)
    # include_bias=False drops one basis function: the B-splines sum to one, so their differences
    # sum to zero and a full basis would be collinear.
    spline = SplineTransformer(knots=knots[:, None], degree=DEGREE, include_bias=False).fit(both)
    basis = spline.transform(chosen[:, None]) - spline.transform(rejected[:, None])
    keep = (np.std(basis, axis=0) > 0) & ((np.abs(basis) > 1e-12).sum(axis=0) >= MIN_SUPPORT)
    return basis[:, keep]
