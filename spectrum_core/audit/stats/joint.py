"""The joint L1 logistic model of the preference on every concept's Δ plus length: which
concepts carry weight together, and how much held-out AUC each adds (:func:`joint_model`)."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import scipy.sparse as sp

from .pairs import (
    Matrix,
    as_train_mask,
    auc_score,
    column_moments,
    delta_csc,
    length_difference,
    randomised_order,
)

# Joint model. C is a multiple of C_min (the smallest C that selects any column), the multiple
# chosen by K-fold CV on a subsample of the training split with glmnet's one-standard-error rule:
# the sparsest multiple whose held-out AUC is within one standard error of the best. The first,
# just under C_min, is the empty model (AUC ½), so on no signal nothing is selected: chosen by the
# best AUC alone, the model picked 246 features on a sign-flipped HH audit (held-out AUC 0.42).
EMPTY_MULTIPLIER = 0.999
CV_MULTIPLIERS = (EMPTY_MULTIPLIER, 1.25, 2.0, 3.5, 6.0, 10.0)
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


def _choose_multiplier(design: _Design, y: np.ndarray, seed: int) -> float:
    """C as a multiple of C_min, chosen by K-fold held-out AUC on a training subsample (the
    one-standard-error rule over the folds).

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
        if multiplier == EMPTY_MULTIPLIER:
            return 0.5  # no column: every score equal
        C = multiplier * c_mins[i]
        start = working[i] | (C * np.abs(gradients[i]) > START_NEAR)
        weights, intercept, _, working[i] = _fit_working_set(design, train, y[train], C, seed, CV_TOL, start)
        cols = np.flatnonzero(weights)
        scores = design.columns(cols, test) @ weights[cols] + intercept
        return auc_score(y[test], scores)

    best_auc, since_best = -np.inf, 0
    walked: list[tuple[float, float, float]] = []  # (multiplier, mean AUC, its standard error)
    workers = max(1, min(2, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for multiplier in CV_MULTIPLIERS:
            aucs = np.array(list(pool.map(fold_auc, range(len(folds)), [multiplier] * len(folds))))
            aucs = aucs[~np.isnan(aucs)]
            score = float(aucs.mean()) if aucs.size else -np.inf
            se = float(aucs.std(ddof=1) / np.sqrt(aucs.size)) if aucs.size > 1 else 0.0
            walked.append((multiplier, score, se))
            if score > best_auc + 1e-4:
                best_auc, since_best = score, 0
            else:
                since_best += 1
                if since_best >= CV_PATIENCE:
                    break
    _, best, best_se = max(walked, key=lambda point: point[1])
    return next(multiplier for multiplier, score, _ in walked if score >= best - best_se)


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


def fit_joint(
    csc: sp.csc_matrix,
    sd: np.ndarray,
    signs: np.ndarray,
    dlen: np.ndarray,
    train_mask: np.ndarray,
    seed: int,
    C: float | None,
) -> dict[str, Any]:
    """The joint model (see :func:`joint_model`) on a prepared Δ: canonical CSC, each column's SD,
    the randomised signs and the length difference."""
    n_pairs, n_features = csc.shape
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
        C = _cross_validated_c(csc, signs, inv_sd, length, train, gradient, seed)
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
            "auc_train": auc_score(y_train, train_scores),
        }
    )
    if held.size == 0:
        result["auc_contribution"] = np.where(coef != 0, np.nan, 0.0)
        return result
    result.update(_held_out_results(design, held, y[held], weights, intercept))
    return result


def _cross_validated_c(
    csc: sp.csc_matrix,
    signs: np.ndarray,
    inv_sd: np.ndarray,
    length: np.ndarray,
    train: np.ndarray,
    gradient: np.ndarray,
    seed: int,
) -> float:
    """C = m·C_min, the multiple m chosen by cross-validation on a seeded subsample of at most
    ``CV_MAX_PAIRS`` training pairs; ``gradient`` is the full training split's at zero."""
    y = signs > 0
    sub = train
    if sub.size > CV_MAX_PAIRS:
        sub = np.sort(np.random.default_rng(seed).choice(train, CV_MAX_PAIRS, replace=False))
    rows = csc[sub]  # sorted rows of a canonical CSC: the same matrix a CSR row selection gives
    rows.sort_indices()
    sub_design = _Design(rows, signs[sub], inv_sd, length[sub])
    return _choose_multiplier(sub_design, y[sub], seed) * _c_min(gradient, y[train])


def _held_out_results(
    design: _Design, held: np.ndarray, y_held: np.ndarray, weights: np.ndarray, intercept: float
) -> dict[str, Any]:
    """The fitted model on the held-out pairs: its AUC and, when it selected any feature, each
    selected feature's contribution (the AUC lost without it; NaN when the AUC is undefined)."""
    n_features = design.n_features
    coef = weights[:n_features]
    selected = np.flatnonzero(coef)
    cols = np.append(selected, n_features)
    held_scores = design.columns(cols, held) @ weights[cols] + intercept
    out: dict[str, Any] = {"auc_held_out": auc_score(y_held, held_scores)}
    if selected.size:
        auc = out["auc_held_out"]
        contribution = np.zeros(n_features)
        if np.isnan(auc):
            contribution[selected] = np.nan
        else:
            X_sel = design.columns(selected, held).tocsc()
            contribution[selected] = auc - _auc_without_each(y_held, held_scores, X_sel, coef[selected])
        out["auc_contribution"] = contribution
    return out


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
    csc = delta_csc(delta)
    n_pairs = csc.shape[0]
    mask = as_train_mask(train_mask, n_pairs)
    dlen = length_difference(chosen_len, rejected_len, n_pairs)
    sd = column_moments(csc)["sd"]
    return fit_joint(csc, sd, randomised_order(n_pairs, seed), dlen, mask, seed, C)
