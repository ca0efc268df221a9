"""A length-controlled logistic regression of the preference on each concept's Δ, fitted for
all concepts at once by a vectorised Newton–Raphson (:func:`length_controlled_logit`): does the
concept predict the choice beyond what the length difference already does?"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats as sps

from .length_control import ETA_CLIP, LengthNull, length_null
from .pairs import (
    Matrix,
    block_layout,
    column_blocks,
    column_moments,
    delta_csr,
    length_difference,
    randomised_order,
    segment_sum,
)

# Newton–Raphson for the per-feature logits.
LOGIT_MAX_ITER = 25
LOGIT_TOL = 1e-7  # stop when |step| <= tol * (1 + |beta|); quadratic convergence does the rest


# At most this many logits of change in any pair's linear predictor per Newton step: damps the
# first steps of badly scaled features and keeps separated features from jumping to huge values.
MAX_ETA_STEP = 5.0
Z_95 = float(sps.norm.ppf(0.975))


def _newton_block(
    z: np.ndarray, a: np.ndarray, counts: np.ndarray, zmax: np.ndarray, max_iter: int, tol: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-parameter logits for the features of a block, all at once.

    ``z`` holds the nonzero standardised Δ of the block's features (feature after feature, each
    with ``counts`` entries, all > 0), ``a`` the matching per-pair term sign·offset. With
    u = a + β·z the per-pair log-likelihood is log σ(u) (see :func:`length_controlled_logit`), so
    gradient Σ σ(−u)·z and Hessian Σ σ(u)σ(−u)·z² are per-feature segment sums over the nonzeros.
    Converged features leave the working arrays, so late iterations touch only the stragglers.
    Returns (beta, hessian, converged); the Hessian is the one of the last step taken.
    """
    k = counts.size
    beta = np.zeros(k)
    hessian = np.zeros(k)
    converged = np.zeros(k, dtype=bool)
    active = np.arange(k)
    z2 = z * z
    for _ in range(max_iter):
        starts = np.zeros(active.size, dtype=np.int64)
        np.cumsum(counts[:-1], out=starts[1:])
        u = np.repeat(beta[active], counts)
        u *= z
        u += a
        np.clip(u, -ETA_CLIP, ETA_CLIP, out=u)
        np.exp(u, out=u)
        u += 1.0
        q = np.reciprocal(u, out=u)  # q = σ(−u)
        grad = segment_sum(q * z, starts)
        weight = 1.0 - q
        weight *= q  # q(1 − q) = σ(u)σ(−u), > 0 thanks to the clip
        weight *= z2
        hess = segment_sum(weight, starts)
        cap = MAX_ETA_STEP / zmax[active]
        step = np.clip(grad / hess, -cap, cap)
        beta[active] += step
        hessian[active] = hess
        done = np.abs(step) <= tol * (1.0 + np.abs(beta[active]))
        converged[active[done]] = True
        if done.all():
            break
        if done.any():
            keep = np.repeat(~done, counts)
            z, z2, a = z[keep], z2[keep], a[keep]
            counts = counts[~done]
            active = active[~done]
    return beta, hessian, converged


def feature_logits(csc: sp.csc_matrix, sd: np.ndarray, row_term: np.ndarray) -> dict[str, np.ndarray]:
    """Length-controlled logit of every feature with a nonzero Δ, block of columns by block."""
    n_features = csc.shape[1]
    indptr = csc.indptr.astype(np.int64)
    out = {
        "beta": np.full(n_features, np.nan),
        "hessian": np.full(n_features, np.nan),
        "converged": np.zeros(n_features, dtype=bool),
    }
    for c0, c1 in column_blocks(indptr):
        cols, counts, starts = block_layout(indptr, c0, c1)
        if cols.size == 0:
            continue
        z = csc.data[indptr[c0] : indptr[c1]].astype(np.float64)
        z /= np.repeat(sd[cols], counts)
        zmax = np.maximum.reduceat(np.abs(z), starts)
        beta, hessian, converged = _newton_block(
            z, row_term[csc.indices[indptr[c0] : indptr[c1]]], counts, zmax, LOGIT_MAX_ITER, LOGIT_TOL
        )
        out["beta"][cols] = beta
        out["hessian"][cols] = hessian
        out["converged"][cols] = converged
    return out


def logit_table(
    logits: dict[str, np.ndarray], n_pos: np.ndarray, n_neg: np.ndarray, null_converged: bool
) -> pd.DataFrame:
    beta = logits["beta"]
    with np.errstate(divide="ignore", invalid="ignore"):
        se = 1.0 / np.sqrt(logits["hessian"])
        z = beta / se
    # With all nonzero Δ of one sign the likelihood increases without bound (separation): the
    # maximum is at infinity whatever Newton reports, so such fits are never "converged"; nor is
    # any fit whose offset comes from a null model that length alone separates.
    two_sided = (n_pos > 0) & (n_neg > 0) & null_converged
    return pd.DataFrame(
        {
            "coef": beta,
            "ci_low": beta - Z_95 * se,
            "ci_high": beta + Z_95 * se,
            "se": se,
            "p_logit": 2.0 * sps.norm.sf(np.abs(z)),
            "converged": logits["converged"] & two_sided,
        }
    ).rename_axis("feature")


def null_row_term(null: LengthNull, signs: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """sign_i·o_i for the length-only model ``null`` (o = its linear predictor) and its summary."""
    info = {"null_intercept": float(null.beta[0]) if null.beta.size else 0.0, "null_converged": null.converged}
    return signs * null.offset, info


def length_controlled_logit(delta: Matrix, chosen_len: Any, rejected_len: Any, seed: int) -> pd.DataFrame:
    """Per-feature logistic regression of the randomised label on Δ_j, controlling for length.

    Design (fast enough for 100k pairs × 16k sparse features): the length-only model
    (``length_control.length_null``: an intercept and a spline of each side's log length, y from
    :func:`randomised_order`) is fitted once; its linear predictor is a fixed offset o_i. For each
    feature only β_j in

        logit P(y_i = 1) = o_i + β_j·x_ij,   x_ij = sign_i·Δ_ij / SD(Δ_j)

    is fitted, so ``coef`` is per standard deviation of Δ_j (SD over all pairs, ddof 0). Pairs with
    x_ij = 0 do not depend on β_j, so gradient Σ(y−μ)x and Hessian Σμ(1−μ)x² are sums over the
    nonzeros of column j only: one vectorised Newton–Raphson over all features at once costs
    O(nnz) per iteration (CSC arrays, per-column ``np.add.reduceat``, blocks of columns so the
    temporaries stay small). Writing u = sign·o + β·Δ/SD, a pair's log-likelihood is log σ(u),
    which takes the sign out of the inner loop.

    Equals ``sm.GLM(y, x_j, family=Binomial(), offset=o).fit()`` (no intercept in the per-feature
    fit). Wald 95 % interval and two-sided p from the Hessian. Iterations are capped at
    ``LOGIT_MAX_ITER`` with damped steps; features whose nonzero Δ all share one sign are
    separated (the MLE is infinite): they keep the finite capped estimate with ``converged=False``
    (and a huge standard error). Features without any nonzero Δ get NaN. ``result.attrs`` holds
    the null fit (null_intercept, null_converged).
    """
    d = delta_csr(delta)
    signs = randomised_order(d.shape[0], seed)
    length_difference(chosen_len, rejected_len, d.shape[0])  # checks there is one length per pair
    row_term, info = null_row_term(length_null(chosen_len, rejected_len, signs), signs)
    csc = d.tocsc()
    moments = column_moments(csc)
    table = logit_table(
        feature_logits(csc, moments["sd"], row_term), moments["n_pos"], moments["n_neg"], info["null_converged"]
    )
    table.attrs.update(info)
    return table
