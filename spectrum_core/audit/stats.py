"""Statistics that say which features separate chosen from rejected responses.

Inputs are per-pair feature activations of the chosen and the rejected response, as
``(n_pairs, n_features)`` sparse matrices (or dense arrays); everything works on the pair
difference Δ = chosen − rejected, kept sparse throughout (a 100k × 16k matrix at 1 % density is
never densified). Per feature we report

* an exact two-sided **sign test** on the pairs where the feature differs, with
  Benjamini–Hochberg (or Bonferroni) adjustment across features;
* a **length-controlled logistic regression** of the preference label on Δ_j, fitted for all
  features at once by a vectorised Newton–Raphson (see :func:`length_controlled_logit`);
* its weight and held-out AUC contribution in a **joint L1 logistic model** over all features
  (see :func:`joint_model`).

The logistic models need a label. Δ is defined as chosen − rejected, so every pair would have the
label "chosen first"; we therefore randomise the pair order with a seeded coin per pair
(:func:`randomised_order`): sign +1 keeps (first = chosen, second = rejected, y = 1), sign −1 swaps
them (y = 0). The design of a pair is then x = sign·Δ with length covariate
l = sign·(chosen_len − rejected_len). Every function that takes a ``seed`` draws the same signs
for it, so the per-feature and joint models see one and the same randomisation.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats as sps

__all__ = [
    "sign_test",
    "adjust_pvalues",
    "randomised_order",
    "length_controlled_logit",
    "joint_model",
    "feature_statistics",
    "rank_concepts",
]

Matrix = Any  # scipy.sparse matrix/array or numpy ndarray, shape (n_pairs, n_features)

# Newton–Raphson for the per-feature logits.
LOGIT_MAX_ITER = 25
LOGIT_TOL = 1e-7  # stop when |step| <= tol * (1 + |beta|); quadratic convergence does the rest
# Linear predictors are clipped here: sigma(35) = 1 - 6e-16, so finite fits are unchanged, while
# separated features keep a tiny positive Hessian (finite standard errors) and exp never overflows.
ETA_CLIP = 35.0
# At most this many logits of change in any pair's linear predictor per Newton step: damps the
# first steps of badly scaled features and keeps separated features from jumping to huge values.
MAX_ETA_STEP = 5.0
# Work on blocks of columns of about this many nonzeros, so the per-nonzero temporaries of the
# Newton loop stay in cache and converged features can be dropped from a block cheaply.
BLOCK_NNZ = 1 << 20
Z_95 = float(sps.norm.ppf(0.975))

# Joint model. C is a multiple of C_min (the smallest C that selects any column), the multiple
# chosen by K-fold CV on a subsample of the training split.
CV_MULTIPLIERS = (1.25, 2.0, 3.5, 6.0, 10.0)
DEFAULT_MULTIPLIER = 2.0  # when the training split is too small for cross-validation
CV_FOLDS = 3
CV_MAX_PAIRS = 20_000
CV_PATIENCE = 2  # stop walking up the C grid after this many points without improvement
CV_TOL = 1e-3  # liblinear tolerance while choosing C
FINAL_TOL = 1e-4  # liblinear tolerance of the reported fit (scikit-learn's default)
# Working-set L1 fits: start with the columns whose C·|gradient at zero| exceeds START_NEAR; a
# zero column violates optimality when C·|gradient| > 1 + KKT_SLACK; when any does, every column
# above ENTER_NEAR joins. After MAX_WORKING_SET_ROUNDS rounds the last fit uses every column.
START_NEAR = 0.5
KKT_SLACK = 1e-3
ENTER_NEAR = 0.9
MAX_WORKING_SET_ROUNDS = 8


def _sklearn_l1_kwargs() -> dict[str, Any]:
    """scikit-learn 1.8 deprecated ``penalty=`` in favour of ``l1_ratio=``; support both."""
    import sklearn

    version = tuple(int(part) for part in re.findall(r"\d+", sklearn.__version__)[:2])
    return {"l1_ratio": 1.0} if version >= (1, 8) else {"penalty": "l1"}


# --------------------------------------------------------------------------------------------
# Input handling


def _to_csr(matrix: Matrix) -> sp.csr_matrix:
    """Canonical float CSR (sorted, no duplicates); shares memory with a canonical CSR input."""
    if sp.issparse(matrix):
        out = sp.csr_matrix(matrix)
        if not out.has_canonical_format:
            out = out.copy()
            out.sum_duplicates()
    else:
        dense = np.asarray(matrix)
        if dense.ndim != 2:
            raise ValueError(f"expected a 2-D (n_pairs, n_features) array, got shape {dense.shape}")
        out = sp.csr_matrix(dense)
    if not np.issubdtype(out.dtype, np.floating):
        out = out.astype(np.float64)
    return out


def _delta_csr(delta: Matrix) -> sp.csr_matrix:
    """Δ as canonical CSR without stored zeros (copying only when zeros must be removed)."""
    out = _to_csr(delta)
    if out.nnz and not np.all(out.data != 0):
        out = out.copy()
        out.eliminate_zeros()
    return out


def _lengths(chosen_len: Any, rejected_len: Any, n_pairs: int) -> np.ndarray:
    c = np.asarray(chosen_len, dtype=np.float64).ravel()
    r = np.asarray(rejected_len, dtype=np.float64).ravel()
    if c.shape != (n_pairs,) or r.shape != (n_pairs,):
        raise ValueError(f"lengths must have one value per pair ({n_pairs}); got {c.shape}, {r.shape}")
    return c - r


def _column_blocks(indptr: np.ndarray, target_nnz: int = BLOCK_NNZ) -> list[tuple[int, int]]:
    """Consecutive column ranges holding about ``target_nnz`` nonzeros each."""
    n_cols = indptr.size - 1
    if n_cols == 0:
        return []
    cuts = np.searchsorted(indptr, np.arange(target_nnz, int(indptr[-1]), target_nnz))
    bounds = np.unique(np.concatenate([[0], np.clip(cuts, 1, n_cols), [n_cols]]))
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


# --------------------------------------------------------------------------------------------
# Sign test and multiple-testing correction


def _sign_pvalues(n_pos: np.ndarray, n_neg: np.ndarray) -> np.ndarray:
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
    d = _delta_csr(delta)
    n_features = d.shape[1]
    n_pos = np.bincount(d.indices[d.data > 0], minlength=n_features)
    n_neg = np.bincount(d.indices[d.data < 0], minlength=n_features)
    return n_pos, n_neg, _sign_pvalues(n_pos, n_neg)


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


# --------------------------------------------------------------------------------------------
# Randomised pair order and the length-only null model


def randomised_order(n_pairs: int, seed: int) -> np.ndarray:
    """Seeded random ±1 per pair: +1 keeps (chosen, rejected) with y = 1, −1 swaps them (y = 0).

    For a pair the design is x = sign·Δ, l = sign·(chosen_len − rejected_len), y = (sign > 0).
    """
    rng = np.random.default_rng(seed)
    return np.where(rng.random(int(n_pairs)) < 0.5, 1, -1).astype(np.int8)


def _fit_null(y: np.ndarray, length: np.ndarray, max_iter: int = 100) -> tuple[float, float, bool]:
    """Maximum-likelihood logit y ~ 1 + length by Newton–Raphson with step halving.

    Returns ``(intercept, length_coef, converged)``. The length column is scaled internally for
    conditioning; the returned coefficient is per unit of length. When length separates the
    labels perfectly the iterations are capped and ``converged`` is False.
    """
    y = y.astype(np.float64)
    scale = float(np.std(length))
    design = np.column_stack([np.ones_like(length), length / scale]) if scale > 0 else np.ones((y.size, 1))
    beta = np.zeros(design.shape[1])

    def loglik(b: np.ndarray) -> float:
        eta = design @ b
        return float(np.sum(y * eta - np.logaddexp(0.0, eta)))

    current = loglik(beta)
    converged = False
    for _ in range(max_iter):
        mu = 1.0 / (1.0 + np.exp(-np.clip(design @ beta, -ETA_CLIP, ETA_CLIP)))
        grad = design.T @ (y - mu)
        hess = (design * (mu * (1.0 - mu))[:, None]).T @ design
        step = np.linalg.lstsq(hess + 1e-12 * np.eye(beta.size), grad, rcond=None)[0]
        for _ in range(30):  # step halving keeps every iteration an ascent step
            candidate = loglik(beta + step)
            if candidate >= current - 1e-12 * abs(current):
                break
            step = step / 2.0
        beta = beta + step
        current = candidate
        if np.max(np.abs(step)) <= 1e-10 * (1.0 + np.max(np.abs(beta))):
            converged = True
            break
    intercept = float(beta[0])
    slope = float(beta[1] / scale) if scale > 0 else 0.0
    return intercept, slope, converged


# --------------------------------------------------------------------------------------------
# Per-feature passes over the columns of Δ (CSC): moments and the length-controlled logits


def _segment_sum(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sums of consecutive non-empty segments beginning at ``starts`` (ending at the next start)."""
    return np.add.reduceat(values, starts) if starts.size else np.zeros(0)


def _block_layout(indptr: np.ndarray, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Columns of block [c0, c1) with nonzeros, their counts and segment starts in the block."""
    counts = np.diff(indptr[c0 : c1 + 1])
    present = counts > 0
    cols = np.flatnonzero(present) + c0
    return cols, counts[present], indptr[cols] - indptr[c0]


def _column_moments(csc: sp.csc_matrix) -> dict[str, np.ndarray]:
    """Per feature: counts of Δ > 0 and Δ < 0, the sum of Δ and its SD over all pairs (ddof 0).

    The SD is two-pass within each column (the column's zeros contribute (0 − mean)² each), so it
    is accurate even for features that are nonzero with nearly the same value in most pairs.
    """
    n_pairs, n_features = csc.shape
    indptr = csc.indptr.astype(np.int64)
    out = {
        "n_pos": np.zeros(n_features, dtype=np.int64),
        "n_neg": np.zeros(n_features, dtype=np.int64),
        "sum": np.zeros(n_features),
        "sd": np.zeros(n_features),
    }
    for c0, c1 in _column_blocks(indptr):
        cols, counts, starts = _block_layout(indptr, c0, c1)
        if cols.size == 0:
            continue
        values = csc.data[indptr[c0] : indptr[c1]].astype(np.float64)
        total = _segment_sum(values, starts)
        mean = total / n_pairs
        centred = values - np.repeat(mean, counts)
        centred *= centred
        out["sd"][cols] = np.sqrt((_segment_sum(centred, starts) + (n_pairs - counts) * mean * mean) / n_pairs)
        out["sum"][cols] = total
        out["n_pos"][cols] = _segment_sum((values > 0).astype(np.float64), starts).astype(np.int64)
        out["n_neg"][cols] = _segment_sum((values < 0).astype(np.float64), starts).astype(np.int64)
    return out


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
        grad = _segment_sum(q * z, starts)
        weight = 1.0 - q
        weight *= q  # q(1 − q) = σ(u)σ(−u), > 0 thanks to the clip
        weight *= z2
        hess = _segment_sum(weight, starts)
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


def _feature_logits(csc: sp.csc_matrix, sd: np.ndarray, row_term: np.ndarray) -> dict[str, np.ndarray]:
    """Length-controlled logit of every feature with a nonzero Δ, block of columns by block."""
    n_features = csc.shape[1]
    indptr = csc.indptr.astype(np.int64)
    out = {
        "beta": np.full(n_features, np.nan),
        "hessian": np.full(n_features, np.nan),
        "converged": np.zeros(n_features, dtype=bool),
    }
    for c0, c1 in _column_blocks(indptr):
        cols, counts, starts = _block_layout(indptr, c0, c1)
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


def _logit_table(
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


def _null_row_term(dlen: np.ndarray, signs: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Fit y ~ 1 + l once; return sign_i·o_i (o = its linear predictor) and the fit summary."""
    length = signs * dlen
    intercept, slope, converged = _fit_null(signs > 0, length)
    offset = intercept + slope * length
    info = {"null_intercept": intercept, "null_length_coef": slope, "null_converged": converged}
    return signs * offset, info


def length_controlled_logit(delta: Matrix, chosen_len: Any, rejected_len: Any, seed: int) -> pd.DataFrame:
    """Per-feature logistic regression of the randomised label on Δ_j, controlling for length.

    Design (fast enough for 100k pairs × 16k sparse features): a null model
    logit P(y=1) = a + b·l is fitted once (y and l from :func:`randomised_order`); its linear
    predictor is a fixed offset o_i. For each feature only β_j in

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
    the null fit (null_intercept, null_length_coef, null_converged).
    """
    d = _delta_csr(delta)
    signs = randomised_order(d.shape[0], seed)
    row_term, info = _null_row_term(_lengths(chosen_len, rejected_len, d.shape[0]), signs)
    csc = d.tocsc()
    moments = _column_moments(csc)
    table = _logit_table(
        _feature_logits(csc, moments["sd"], row_term), moments["n_pos"], moments["n_neg"], info["null_converged"]
    )
    table.attrs.update(info)
    return table


# --------------------------------------------------------------------------------------------
# Joint L1 model


class _Design:
    """Rows of the joint design [sign·Δ/SD(Δ) | l/SD(l)], held as unscaled Δ plus scale vectors.

    The scaled matrix is never built in full: the L1 fit needs the gradient of all columns
    (one sparse mat-vec) and the values of a small working set of columns.
    """

    def __init__(self, csc: sp.csc_matrix, signs: np.ndarray, inv_sd: np.ndarray, length: np.ndarray) -> None:
        self.csc = csc
        self.signs = signs.astype(csc.dtype)
        self.inv_sd = inv_sd
        self.length = length
        self.n_features = csc.shape[1]

    def gradient(self, rows: np.ndarray, residual: np.ndarray) -> np.ndarray:
        """X[rows]ᵀ·residual for every column (features, then length)."""
        full = np.zeros(self.csc.shape[0], dtype=self.csc.dtype)  # same dtype: no upcast copy of Δ
        full[rows] = residual * self.signs[rows]
        out = np.empty(self.n_features + 1)
        out[:-1] = (self.csc.T @ full) * self.inv_sd
        out[-1] = float(residual @ self.length[rows])
        return out

    def columns(self, cols: np.ndarray, rows: np.ndarray) -> sp.csr_matrix:
        """X[rows][:, cols] as float32 CSR; ``cols`` sorted, the length column is index n_features."""
        features = cols[cols < self.n_features]
        block = self.csc[:, features][rows].tocsr()
        data = block.data.astype(np.float32)
        data *= np.repeat(self.signs[rows], np.diff(block.indptr))
        data *= self.inv_sd[features].astype(np.float32)[block.indices]
        X = sp.csr_matrix((data, block.indices, block.indptr), shape=block.shape)
        if cols.size and cols[-1] == self.n_features:
            X = sp.hstack([X, sp.csr_matrix(self.length[rows].astype(np.float32)[:, None])], format="csr")
        return X


def _fit_l1(X: sp.csr_matrix, y: np.ndarray, C: float, seed: int, tol: float):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=C, solver="liblinear", tol=tol, random_state=seed, **_sklearn_l1_kwargs())
    return model.fit(X, y.astype(np.int8))


def _c_min(gradient_at_zero: np.ndarray, y: np.ndarray) -> float:
    """Smallest C at which liblinear's L1 logistic (penalised unit bias) selects any column.

    ``sklearn.svm.l1_min_c(loss="log")``: 2 / max|Xᵀt| with t = ±1 and the bias column, i.e.
    1 / max|Xᵀ(y − ½)|, from the gradient already computed.
    """
    den = max(float(np.max(np.abs(gradient_at_zero), initial=0.0)), abs(float(np.sum(y - 0.5))))
    return 1.0 / den if den > 0 else 1.0


def _fit_working_set(
    design: _Design, rows: np.ndarray, y: np.ndarray, C: float, seed: int, tol: float, start: np.ndarray
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """L1 logistic on all columns, solved on a growing working set of columns.

    liblinear on the full 16k-column design spends most of its time on columns that stay at
    zero. At the L1 optimum every zero column satisfies C·|X_jᵀ(y − p)| ≤ 1, so we fit on a
    working set (``start``: the columns already close to entering), compute that gradient for
    all columns with one sparse mat-vec, add the violators (and the near-violators, to save
    rounds) and refit until none is left. The result is the full problem's solution (up to
    ``KKT_SLACK`` on the optimality check). Returns (weights over all columns, intercept,
    decision values on ``rows``, final working set).
    """
    n_cols = design.n_features + 1
    working = start.copy()
    working[-1] = True  # the length column is always in
    for round_ in range(MAX_WORKING_SET_ROUNDS + 1):
        cols = np.flatnonzero(working) if round_ < MAX_WORKING_SET_ROUNDS else np.arange(n_cols)
        X = design.columns(cols, rows)
        model = _fit_l1(X, y, C, seed, tol)
        weights = np.zeros(n_cols)
        weights[cols] = model.coef_.ravel()
        intercept = float(model.intercept_[0])
        scores = X @ weights[cols] + intercept
        if cols.size == n_cols:
            break
        score = C * np.abs(design.gradient(rows, y - 1.0 / (1.0 + np.exp(-scores))))
        violators = ~working & (score > 1.0 + KKT_SLACK)
        if not violators.any():
            break
        working |= score > ENTER_NEAR
    return weights, intercept, scores, working


def _auc(y: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if y.size == 0 or y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, scores))


def _choose_multiplier(design: _Design, y: np.ndarray, seed: int) -> float:
    """C as a multiple of C_min, chosen by K-fold held-out AUC on a training subsample.

    ``design`` holds at most CV_MAX_PAIRS training pairs. Multiples of C_min transfer between
    sample sizes (C_min itself scales with the data), so the multiple picked here is applied to
    the full training split's C_min. The grid is walked upwards (larger C = more columns =
    slower fits), each fold warm-starting its working set from the previous C, and abandoned
    after CV_PATIENCE points without improvement. Fold fits run in two threads (liblinear and
    the sparse mat-vecs release the GIL).
    """
    from sklearn.model_selection import StratifiedKFold

    if min(int(y.sum()), int((~y).sum())) < 2 * CV_FOLDS:
        return DEFAULT_MULTIPLIER
    folds = list(StratifiedKFold(CV_FOLDS, shuffle=True, random_state=seed).split(np.zeros(y.size), y))
    gradients = [design.gradient(train, y[train] - 0.5) for train, _ in folds]
    c_mins = [_c_min(g, y[train]) for g, (train, _) in zip(gradients, folds)]
    working = [np.zeros(design.n_features + 1, dtype=bool) for _ in folds]

    def fold_auc(i: int, multiplier: float) -> float:
        train, test = folds[i]
        C = multiplier * c_mins[i]
        start = working[i] | (C * np.abs(gradients[i]) > START_NEAR)
        weights, intercept, _, working[i] = _fit_working_set(design, train, y[train], C, seed, CV_TOL, start)
        cols = np.flatnonzero(weights)
        scores = design.columns(cols, test) @ weights[cols] + intercept
        return _auc(y[test], scores)

    best_multiplier, best_auc, since_best = DEFAULT_MULTIPLIER, -np.inf, 0
    workers = max(1, min(2, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for multiplier in CV_MULTIPLIERS:
            aucs = list(pool.map(fold_auc, range(len(folds)), [multiplier] * len(folds)))
            score = float(np.nanmean(aucs)) if not np.all(np.isnan(aucs)) else -np.inf
            if score > best_auc + 1e-4:
                best_multiplier, best_auc, since_best = multiplier, score, 0
            else:
                since_best += 1
                if since_best >= CV_PATIENCE:
                    break
    return best_multiplier


def _grouped_pair_credit(ga: np.ndarray, va: np.ndarray, gb: np.ndarray, vb: np.ndarray, n_groups: int) -> np.ndarray:
    """Per group g: Σ over a in group g of A, b in group g of B of [va > vb] + ½·[va = vb]."""
    if ga.size == 0 or gb.size == 0:
        return np.zeros(n_groups)
    _, ranks = np.unique(np.concatenate([va, vb]), return_inverse=True)
    ranks = ranks.astype(np.int64).ravel()
    width = int(ranks.max()) + 1
    ka = ga.astype(np.int64) * width + ranks[: va.size]
    kb = np.sort(gb.astype(np.int64) * width + ranks[va.size :])
    left = np.searchsorted(kb, ka, "left")
    below = left - np.searchsorted(kb, ga.astype(np.int64) * width, "left")
    equal = np.searchsorted(kb, ka, "right") - left
    return np.bincount(ga, weights=below + 0.5 * equal, minlength=n_groups)


def _auc_without_each(y: np.ndarray, scores: np.ndarray, X_sel: sp.csc_matrix, coef_sel: np.ndarray) -> np.ndarray:
    """Held-out AUC after zeroing each selected column, for all columns at once, without refits.

    Zeroing column k changes the score only of the pairs where that column is nonzero (set C_k),
    so the Mann–Whitney U changes only by comparisons involving C_k: comparisons of C_k against
    the other pairs come from binary search in the sorted original scores, comparisons inside
    C_k from a grouped rank count (ties count ½, as in ``roc_auc_score``).
    """
    pos_sorted, neg_sorted = np.sort(scores[y]), np.sort(scores[~y])
    n_p = pos_sorted.size
    k = X_sel.shape[1]
    group = np.repeat(np.arange(k), np.diff(X_sel.indptr))
    rows = X_sel.indices
    old = scores[rows]
    new = old - coef_sel[group] * X_sel.data.astype(np.float64)
    is_pos = y[rows]

    def credit_vs_neg(v: np.ndarray) -> np.ndarray:  # Σ_{j∈N} [v > s_j] + ½[v = s_j]
        lo, hi = np.searchsorted(neg_sorted, v, "left"), np.searchsorted(neg_sorted, v, "right")
        return lo + 0.5 * (hi - lo)

    def credit_vs_pos(v: np.ndarray) -> np.ndarray:  # Σ_{i∈P} [s_i > v] + ½[s_i = v]
        lo, hi = np.searchsorted(pos_sorted, v, "left"), np.searchsorted(pos_sorted, v, "right")
        return (n_p - hi) + 0.5 * (hi - lo)

    gp, gn = group[is_pos], group[~is_pos]
    old_p, new_p, old_n, new_n = old[is_pos], new[is_pos], old[~is_pos], new[~is_pos]
    # U' − U = Σ_{i∈P∩C} [credit(s'_i) − credit(s_i)] vs all N, Σ_{j∈N∩C} likewise vs all P,
    # then correct the (P∩C) × (N∩C) comparisons, which those two sums take against old scores.
    change = (
        np.bincount(gp, weights=credit_vs_neg(new_p) - credit_vs_neg(old_p), minlength=k)
        + np.bincount(gn, weights=credit_vs_pos(new_n) - credit_vs_pos(old_n), minlength=k)
        + _grouped_pair_credit(gp, new_p, gn, new_n, k)
        - _grouped_pair_credit(gp, new_p, gn, old_n, k)
        - _grouped_pair_credit(gp, old_p, gn, new_n, k)
        + _grouped_pair_credit(gp, old_p, gn, old_n, k)
    )
    u_base = float(np.sum(credit_vs_neg(scores[y])))
    return (u_base + change) / (n_p * neg_sorted.size)


def _joint(
    d: sp.csr_matrix,
    csc: sp.csc_matrix,
    sd: np.ndarray,
    signs: np.ndarray,
    dlen: np.ndarray,
    train_mask: np.ndarray,
    seed: int,
    C: float | None,
) -> dict[str, Any]:
    n_pairs, n_features = d.shape
    y = signs > 0
    length_sd = float(np.std(dlen))
    length = signs * dlen / length_sd if length_sd > 0 else np.zeros(n_pairs)
    inv_sd = np.divide(1.0, sd, out=np.zeros(n_features), where=sd > 0)
    design = _Design(csc, signs, inv_sd, length)
    train, held = np.flatnonzero(train_mask), np.flatnonzero(~train_mask)
    result: dict[str, Any] = {
        "auc_held_out": float("nan"),
        "auc_train": float("nan"),
        "C": float("nan"),
        "coef": np.zeros(n_features),
        "length_coef": float("nan"),
        "n_selected": 0,
        "auc_contribution": np.zeros(n_features),
    }
    y_train = y[train]
    if y_train.size == 0 or y_train.all() or not y_train.any():
        return result  # one class: nothing to learn

    gradient = design.gradient(train, y_train - 0.5)
    if C is None:
        sub = train
        if sub.size > CV_MAX_PAIRS:
            sub = np.sort(np.random.default_rng(seed).choice(train, CV_MAX_PAIRS, replace=False))
        sub_design = _Design(d[sub].tocsc(), signs[sub], inv_sd, length[sub])
        C = _choose_multiplier(sub_design, y[sub], seed) * _c_min(gradient, y_train)
    C = float(C)
    weights, intercept, train_scores, _ = _fit_working_set(
        design, train, y_train, C, seed, FINAL_TOL, C * np.abs(gradient) > START_NEAR
    )
    coef = weights[:n_features]
    selected = np.flatnonzero(coef)
    result.update(
        {
            "C": C,
            "coef": coef,
            "length_coef": float(weights[n_features]),
            "n_selected": int(selected.size),
            "auc_train": _auc(y_train, train_scores),
        }
    )
    if held.size == 0:
        result["auc_contribution"] = np.where(coef != 0, np.nan, 0.0)
        return result
    y_held = y[held]
    cols = np.append(selected, n_features)
    held_scores = design.columns(cols, held) @ weights[cols] + intercept
    result["auc_held_out"] = auc = _auc(y_held, held_scores)
    if selected.size:
        contribution = np.zeros(n_features)
        if np.isnan(auc):
            contribution[selected] = np.nan
        else:
            X_sel = design.columns(selected, held).tocsc()
            contribution[selected] = auc - _auc_without_each(y_held, held_scores, X_sel, coef[selected])
        result["auc_contribution"] = contribution
    return result


def joint_model(
    delta: Matrix, chosen_len: Any, rejected_len: Any, train_mask: Any, seed: int, C: float | None = None
) -> dict[str, Any]:
    """L1 logistic regression of the randomised label on all features and length, jointly.

    Columns: sign·Δ_j / SD(Δ_j) for every feature (the scale of :func:`length_controlled_logit`,
    so ``coef`` is per SD of Δ as there) and sign·(chosen_len − rejected_len) / SD; scaled per
    column, not centred, so the design stays sparse. liblinear (far faster than saga on this
    sparse, wide design), intercept fitted, on the ``train_mask`` pairs only, solved on a working
    set of columns (``_fit_working_set``). With ``C=None``, C = m·C_min where C_min is the
    smallest C that selects anything and m is chosen by 3-fold CV held-out AUC on at most
    ``CV_MAX_PAIRS`` training pairs (``_choose_multiplier``).

    Returns ``auc_held_out`` (NaN if the held-out split is empty or has one class),
    ``auc_train``, ``C``, ``coef`` (n_features; 0 = not selected), ``length_coef``,
    ``n_selected`` and ``auc_contribution``: held-out AUC minus held-out AUC with that column
    zeroed (same fitted model, no refit) for selected features, 0 elsewhere.
    """
    d = _delta_csr(delta)
    mask = _train_mask(train_mask, d.shape[0])
    dlen = _lengths(chosen_len, rejected_len, d.shape[0])
    csc = d.tocsc()
    sd = _column_moments(csc)["sd"]
    return _joint(d, csc, sd, randomised_order(d.shape[0], seed), dlen, mask, seed, C)


# --------------------------------------------------------------------------------------------
# Everything together


def _train_mask(train_mask: Any, n_pairs: int) -> np.ndarray:
    mask = np.asarray(train_mask, dtype=bool).ravel()
    if mask.shape != (n_pairs,):
        raise ValueError(f"train_mask must have one entry per pair ({n_pairs}); got {mask.shape}")
    return mask


def _side_statistics(c: sp.csr_matrix, r: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per feature: pairs where chosen or rejected is nonzero, and the column sums of each side.

    Row block by row block (views, no copies of the inputs), so temporaries stay small.
    """
    n_pairs, n_features = c.shape
    union = np.zeros(n_features, dtype=np.int64)
    sums = [np.zeros(n_features), np.zeros(n_features)]
    c_ptr, r_ptr = c.indptr.astype(np.int64), r.indptr.astype(np.int64)
    bounds = np.unique(
        np.concatenate(
            [
                [0],
                np.searchsorted(c_ptr + r_ptr, np.arange(BLOCK_NNZ, int(c_ptr[-1] + r_ptr[-1]), BLOCK_NNZ)),
                [n_pairs],
            ]
        )
    )
    for r0, r1 in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        patterns = []
        for side, (m, ptr) in enumerate(((c, c_ptr), (r, r_ptr))):
            e0, e1 = int(ptr[r0]), int(ptr[r1])
            data, indices = m.data[e0:e1], m.indices[e0:e1]
            sums[side] += np.bincount(indices, weights=data, minlength=n_features)
            nonzero = data != 0
            union += np.bincount(indices[nonzero], minlength=n_features)
            patterns.append(
                sp.csr_matrix((nonzero.astype(np.int8), indices, ptr[r0 : r1 + 1] - e0), shape=(r1 - r0, n_features))
            )
        both = patterns[0].multiply(patterns[1]).tocsr()
        union -= np.bincount(both.indices[both.data != 0], minlength=n_features)
    return union, sums[0], sums[1]


def feature_statistics(
    chosen: Matrix,
    rejected: Matrix,
    chosen_len: Any,
    rejected_len: Any,
    train_mask: Any,
    *,
    seed: int = 0,
    correction: str = "bh",
    C: float | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """All per-feature statistics, one row per feature (index = feature number).

    Columns: prevalence (share of pairs where chosen or rejected is nonzero), n_differ,
    n_chosen_more, n_rejected_more, share_chosen_more, direction ("chosen" if share > 0.5,
    "rejected" if < 0.5, else "none"), mean_delta, mean_chosen, mean_rejected, p_sign, q_value
    (``correction`` of p_sign), the length-controlled logit (coef, ci_low, ci_high, se, p_logit,
    converged), joint_coef and auc_contribution. The dict holds the joint model's scalars
    (auc_held_out, auc_train, C, length_coef, n_selected) and the length-only null model
    (null_intercept, null_length_coef, null_converged).

    Δ is computed once (CSR and CSC); the joint model (liblinear and sparse mat-vecs, which
    release the GIL) runs in a second thread while this one does the per-feature pass.
    """
    c, r = _to_csr(chosen), _to_csr(rejected)
    if c.shape != r.shape:
        raise ValueError(f"chosen {c.shape} and rejected {r.shape} differ in shape")
    n_pairs, n_features = c.shape
    mask = _train_mask(train_mask, n_pairs)
    dlen = _lengths(chosen_len, rejected_len, n_pairs)
    signs = randomised_order(n_pairs, seed)

    d = _delta_csr(c - r)
    csc = d.tocsc()
    moments = _column_moments(csc)
    with ThreadPoolExecutor(max_workers=1) as pool:
        joint_future = pool.submit(_joint, d, csc, moments["sd"], signs, dlen, mask, seed, C)
        row_term, null_info = _null_row_term(dlen, signs)
        logits = _feature_logits(csc, moments["sd"], row_term)
        union, sum_chosen, sum_rejected = _side_statistics(c, r)
        joint = joint_future.result()

    n_pos, n_neg = moments["n_pos"], moments["n_neg"]
    n_differ = n_pos + n_neg
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(n_differ > 0, n_pos / np.maximum(n_differ, 1), np.nan)
        per_pair = 1.0 / n_pairs if n_pairs else np.nan
    direction = np.full(n_features, "none", dtype=object)
    direction[share > 0.5] = "chosen"
    direction[share < 0.5] = "rejected"
    p_sign = _sign_pvalues(n_pos, n_neg)
    logit = _logit_table(logits, n_pos, n_neg, null_info["null_converged"])
    table = pd.DataFrame(
        {
            "prevalence": union * per_pair,
            "n_differ": n_differ,
            "n_chosen_more": n_pos,
            "n_rejected_more": n_neg,
            "share_chosen_more": share,
            "direction": direction,
            "mean_delta": moments["sum"] * per_pair,
            "mean_chosen": sum_chosen * per_pair,
            "mean_rejected": sum_rejected * per_pair,
            "p_sign": p_sign,
            "q_value": adjust_pvalues(p_sign, correction),
            **{name: logit[name].to_numpy() for name in logit.columns},
            "joint_coef": joint["coef"],
            "auc_contribution": joint["auc_contribution"],
        }
    ).rename_axis("feature")
    summary = {key: value for key, value in joint.items() if not isinstance(value, np.ndarray)}
    summary.update(null_info)
    return table, summary


def rank_concepts(table: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Rank concepts: significant ones (q < alpha) first, those whose length-controlled effect
    is also significant ahead of the others, each ordered by the size of that effect (how far
    its 95% interval is from zero; |coef| when there is no interval);
    then the rest by q and the length-controlled p-value. Within each group, fits that did not
    converge come after those that did. Adds ``rank`` from 1.

    Ranking significant concepts by q alone would put the most prevalent first: with thousands
    of pairs, a feature that differs in most pairs reaches q < 1e-6 with a 60/40 split, and such
    features are often response length in disguise. The length-controlled effect puts concepts
    that predict preference beyond length ahead of them.
    """
    q = table["q_value"].to_numpy(dtype=np.float64)
    if {"ci_low", "ci_high"} <= set(table.columns):
        # The effect the data vouch for: the distance of the 95% interval from zero, so a huge
        # but uncertain coefficient (a rare or nearly separating feature) does not lead.
        low = table["ci_low"].to_numpy(dtype=np.float64)
        high = table["ci_high"].to_numpy(dtype=np.float64)
        strength = np.maximum(np.maximum(low, -high), 0.0)
    else:
        strength = np.abs(table["coef"].to_numpy(dtype=np.float64))
    converged = (
        table["converged"].to_numpy(dtype=bool) if "converged" in table.columns else np.ones(len(table), dtype=bool)
    )
    has_logit = "p_logit" in table.columns
    evidence = table["p_logit"].to_numpy(dtype=np.float64) if has_logit else -strength
    significant = q < alpha
    # Significant by the sign test and with a length-controlled interval that excludes zero
    # first; significant by the sign test alone next; the rest last.
    confirmed = significant & (evidence < alpha) if has_logit else significant
    key = pd.DataFrame(
        {
            "group": np.where(confirmed, 0, np.where(significant, 1, 2)),
            "unconverged": ~converged,
            "first": np.where(significant, -np.nan_to_num(strength, nan=-np.inf), q),
            # Among the rest, a large but uncertain coefficient (few differing pairs) should not
            # lead: order by the length-controlled p-value instead.
            "second": np.where(significant, q, evidence),
        }
    )
    order = key.sort_values(
        ["group", "unconverged", "first", "second"], na_position="last", kind="mergesort"
    ).index.to_numpy()
    ranked = table.iloc[order].copy()
    ranked["rank"] = np.arange(1, len(ranked) + 1)
    return ranked
