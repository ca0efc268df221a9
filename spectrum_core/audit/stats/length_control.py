"""The length control every label-reading statistic shares, and the audit's primary test.

The length-only model: logit P(first preferred) = θ₀ + θ₁·(l_first − l_second) +
θ·[B(log l_first) − B(log l_second)]: the length difference in tokens and a cubic spline of each
side's whole log length (``length_basis.py``), in the audit's randomised pair order
(``pairs.randomised_order``), fitted once by Newton–Raphson (maximum likelihood; a light ridge only
where that diverges). The linear term keeps what the audit's earlier offset caught (a concept
that is the token count itself); the spline bends where length stops mattering.

The primary test of a concept is the **efficient score test** of β = 0 in
logit P = θ₀ + θ·B + β·x, x = sign·Δ: does the concept's Δ predict the choice beyond length?
U = Σ (y − μ)·x at the length-only fit μ, its variance the efficient information
I_ββ − I_βθ I_θθ⁻¹ I_θβ (the length terms estimated, not taken as known), U²/I ~ χ²₁. Unlike the
Wald test of the fitted β it needs no fit per concept and stays valid when a concept's Δ all
lean one way (separation: the fitted β is infinite, the score test is not); unlike the raw sign
test it does not call a concept significant for riding on length. Computed for 16k sparse columns
at once: every sum runs over a column's nonzeros only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy import stats as sps

from .length_basis import length_basis
from .pairs import block_layout, column_blocks, segment_sum

LENGTH_PROBE = "probe:length_tokens"  # the probe that is the length itself (whole responses, in tokens)
NULL_MAX_ITER = 100
# When length separates the labels (or one range of lengths holds only chosen responses: the
# longest answers all preferred) the unpenalised fit runs off to infinity; it is then refitted with
# this light ridge on the length terms (per standardised column; the intercept free) and flagged.
NULL_RIDGE = 1.0
# Linear predictors are clipped here: σ(35) = 1 - 6e-16, so finite fits are unchanged, while
# separated features keep a tiny positive Hessian (finite standard errors) and exp never overflows.
ETA_CLIP = 35.0


@dataclass
class LengthNull:
    design: np.ndarray  # (n_pairs, k): intercept, then sign · the length basis
    beta: np.ndarray  # (k,)
    converged: bool  # False when length alone separates the labels

    @property
    def offset(self) -> np.ndarray:
        """The fitted linear predictor per pair, in the randomised order."""
        return self.design @ self.beta

    @property
    def probability(self) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.clip(self.offset, -ETA_CLIP, ETA_CLIP)))


def fit_logit(
    y: np.ndarray, design: np.ndarray, ridge: float = NULL_RIDGE, max_iter: int = NULL_MAX_ITER
) -> tuple[np.ndarray, bool]:
    """Logit of ``y`` on ``design`` by Newton–Raphson with step halving, maximising the
    log-likelihood less ``ridge``/2 · |β|² over the standardised non-constant columns (a constant
    column, the intercept, is not penalised). Returns (coefficients per unscaled column, converged)."""
    y = y.astype(np.float64)
    scale = np.std(design, axis=0)
    constant = scale == 0
    scale[constant] = 1.0  # the intercept column keeps its unit scale
    X = design / scale
    penalty = np.where(constant, 0.0, ridge)
    beta = np.zeros(X.shape[1])

    def loglik(b: np.ndarray) -> float:
        eta = X @ b
        return float(np.sum(y * eta - np.logaddexp(0.0, eta)) - 0.5 * np.sum(penalty * b * b))

    current, converged = loglik(beta), False
    for _ in range(max_iter):
        mu = 1.0 / (1.0 + np.exp(-np.clip(X @ beta, -ETA_CLIP, ETA_CLIP)))
        hess = (X * (mu * (1.0 - mu))[:, None]).T @ X + np.diag(penalty)
        step = np.linalg.lstsq(hess + 1e-12 * np.eye(beta.size), X.T @ (y - mu) - penalty * beta, rcond=None)[0]
        for _ in range(30):  # step halving keeps every iteration an ascent step
            candidate = loglik(beta + step)
            if candidate >= current - 1e-12 * abs(current):
                break
            step = step / 2.0
        beta, current = beta + step, candidate
        if np.max(np.abs(step)) <= 1e-10 * (1.0 + np.max(np.abs(beta))):
            converged = True
            break
    return beta / scale, converged


def length_terms(chosen_len: np.ndarray, rejected_len: np.ndarray) -> np.ndarray:
    """(n_pairs, k): the length difference and the length basis (chosen − rejected), columns that
    never vary left out. The basis's knots come from the lengths alone (no label), so one set of
    terms serves every subset of the pairs."""
    chosen, rejected = np.asarray(chosen_len, dtype=np.float64), np.asarray(rejected_len, dtype=np.float64)
    terms = np.column_stack([chosen - rejected, length_basis(chosen, rejected)])
    return terms[:, np.std(terms, axis=0) > 0]


def length_design(chosen_len: np.ndarray, rejected_len: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """(n_pairs, 1 + k): an intercept, then sign · the length terms (the randomised order)."""
    return np.column_stack([np.ones(len(signs)), signs[:, None] * length_terms(chosen_len, rejected_len)])


def length_null(
    chosen_len: np.ndarray, rejected_len: np.ndarray, signs: np.ndarray, rows: np.ndarray | None = None
) -> LengthNull:
    """The length-only model fitted on ``rows`` (a mask; default all) of these pairs (``signs``:
    their randomised order), its design over those rows."""
    design = length_design(chosen_len, rejected_len, signs)
    rows = np.ones(len(signs), dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
    design, y = design[rows], signs[rows] > 0
    if not len(y) or y.all() or not y.any():
        return LengthNull(design, np.zeros(design.shape[1]), False)  # one class: nothing to fit
    return LengthNull(design, *fit_or_ridge(y, design))


def length_lr_pvalue(chosen_len: np.ndarray, rejected_len: np.ndarray, signs: np.ndarray) -> float:
    """Does length predict the choice at all? The likelihood ratio test of the length-only model
    against "no preference" (P = ½ for every pair); 1 when there is nothing to fit."""
    design = length_design(chosen_len, rejected_len, signs)
    y = signs > 0
    if design.shape[1] < 2 or y.all() or not y.any():
        return 1.0
    eta = design @ fit_or_ridge(y, design)[0]
    loglik = float(np.sum(y * eta - np.logaddexp(0.0, eta)))
    statistic = max(0.0, 2.0 * (loglik - len(y) * np.log(0.5)))
    return float(sps.chi2.sf(statistic, df=design.shape[1]))


def fit_or_ridge(y: np.ndarray, design: np.ndarray) -> tuple[np.ndarray, bool]:
    """The maximum-likelihood logit; where it diverges (length separates the labels), the
    NULL_RIDGE fit instead, flagged as not converged."""
    beta, converged = fit_logit(y, design, ridge=0.0)
    if not converged:
        beta, _ = fit_logit(y, design, ridge=NULL_RIDGE)
    return beta, converged


def score_pvalues(delta: sp.csc_matrix, signs: np.ndarray, null: LengthNull) -> tuple[np.ndarray, np.ndarray]:
    """The efficient score test of each column of Δ (pairs × concepts) beyond the length-only
    model: (score U, two-sided p). p is 1 for a column that never differs (no information)."""
    y = (signs > 0).astype(np.float64)
    mu = null.probability
    weight = mu * (1.0 - mu)
    weighted_design = null.design * weight[:, None]
    u_beta, info_beta, cross = _score_sums(
        sp.csc_matrix(delta), signs.astype(np.float64), y - mu, weight, weighted_design
    )
    info_theta = weighted_design.T @ null.design
    projection = cross @ np.linalg.pinv(info_theta)
    # The efficient score: U_β − I_βθ I_θθ⁻¹ U_θ (U_θ is zero at the maximum-likelihood fit, and
    # not quite where the ridge fallback stopped short of it).
    score = u_beta - projection @ (null.design.T @ (y - mu))
    adjust = np.einsum("jk,jk->j", projection, cross)
    efficient = info_beta - adjust
    # A column that length fully explains (the token count itself) keeps only rounding noise of
    # its information: under a millionth of its own, it is treated as carrying none.
    informative = efficient > 1e-6 * np.maximum(info_beta, 1e-300)
    statistic = np.divide(score**2, efficient, out=np.zeros_like(score), where=informative)
    return score, np.where(informative, sps.chi2.sf(statistic, df=1), 1.0)


def _score_sums(
    delta: sp.csc_matrix, signs: np.ndarray, residual: np.ndarray, weight: np.ndarray, weighted_design: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of x = sign·Δ: Σ x·residual, Σ x²·weight and Σ x·weighted_design (one row per
    design column), column block by column block: a float64 copy of the whole of x (and of x²)
    took 1.3 GB at 100k pairs."""
    indptr = delta.indptr.astype(np.int64)
    n_cols = delta.shape[1]
    u_beta, info_beta = np.zeros(n_cols), np.zeros(n_cols)
    cross = np.zeros((n_cols, weighted_design.shape[1]))
    for c0, c1 in column_blocks(indptr):
        cols, _, starts = block_layout(indptr, c0, c1)
        if cols.size == 0:
            continue
        rows = delta.indices[indptr[c0] : indptr[c1]]
        x = delta.data[indptr[c0] : indptr[c1]].astype(np.float64) * signs[rows]
        u_beta[cols] = segment_sum(x * residual[rows], starts)
        info_beta[cols] = segment_sum(x * x * weight[rows], starts)
        cross[cols] = np.add.reduceat(x[:, None] * weighted_design[rows], starts, axis=0)
    return u_beta, info_beta, cross


def _side(lean: np.ndarray) -> np.ndarray:
    return np.select([lean > 0, lean < 0], ["chosen", "rejected"], "none").astype(object)


def share_side(share) -> np.ndarray:
    """ "chosen" / "rejected" / "none" per concept: the side that has more of it in most pairs
    where it differs (the raw lean; none at exactly half, or where it never differs)."""
    return _side(np.nan_to_num(np.asarray(share, dtype=np.float64) - 0.5))


def lean_direction(score: np.ndarray, p_value: np.ndarray, share: np.ndarray) -> np.ndarray:
    """ "chosen" / "rejected" / "none" per concept: the sign of the length-aware score, the primary
    test's direction (a concept can lean towards the chosen side raw only because chosen answers
    are longer, and away from it for their length); where that test has no information (p = 1:
    never differs, or length explains it all) the raw lean (``share_side``)."""
    score, p_value = np.asarray(score, dtype=np.float64), np.asarray(p_value, dtype=np.float64)
    return np.where(p_value < 1.0, _side(score), share_side(share)).astype(object)
