"""Sparse selection that says "nothing" when nothing is there.

An L1 logistic model of the (randomised) preference on a few hundred candidate Δ columns with a
length control that is not penalised; its strength chosen by glmnet's one-standard-error rule on
folds of whole prompts (the sparsest model whose held-out deviance is within one standard error
of the best, so on no signal the length-only model wins and nothing is selected); then stability
selection (Meinshausen & Bühlmann 2010): the model refitted on bootstrap resamples of prompts,
each candidate's selection share counted.

liblinear (scikit-learn) does the fits; it has no per-column penalty factor, so the length
columns are multiplied by ``LENGTH_SCALE``: a column scaled by s has its L1 penalty divided by s
(what glmnet's ``penalty.factor`` does), which at these strengths leaves length practically free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

from .joint import _sklearn_l1_kwargs
from .length_control import fit_or_ridge
from .pairs import randomised_order

LENGTH_SCALE = 100.0
# C as multiples of C_min, the smallest C at which any candidate enters; 1.0 is the length-only
# model (nothing selected), the sparsest end of the path the one-SE rule may stop at. Three planted
# concepts on 280 pairs still gain at 10×, so the path runs to 100× (about 1.6× a step).
C_MULTIPLIERS = (1.0, 1.5, 2.5, 4.0, 6.5, 10.0, 16.0, 25.0, 40.0, 65.0, 100.0)
CV_FOLDS = 5
CV_PATIENCE = 2  # stop walking up the path after this many points without a lower deviance
FIT_TOL = 1e-4
# Stability selection: resamples, and the share of them a candidate must be selected in: 0.9, the
# strict end of Meinshausen & Bühlmann's range (0.6 to 0.9). Their error bound needs each resample
# cut to its q strongest candidates, q = √((2π − 1)·p) for at most one false selection expected
# (10 of 200); on the bundled HH audit that left no head at all, the signal being many weak
# effects of which no ten are the same ten twice. The heads' error control is instead the
# confirmation split and the null runs; the share only asks that a head not be a chance pick of
# one resample (uncapped at 0.9, a noise column planted beside a strong signal, selected in 74%,
# stays out).
STABILITY_RESAMPLES = 50
STABILITY_SHARE = 0.9


@dataclass
class SparseSelection:
    multiplier: float  # the one-SE choice; 1.0 = nothing selected
    cv_multipliers: list[float]
    cv_deviance: list[float]  # mean held-out deviance per multiplier (per pair)
    cv_se: list[float]
    selected: np.ndarray  # (resamples, n_candidates) bool: selected in each resample
    resamples: int

    @property
    def share(self) -> np.ndarray:
        """Each candidate's selection share over the resamples (0 when none ran)."""
        if not self.resamples:
            return np.zeros(self.selected.shape[1])
        return self.selected.mean(axis=0)


def paired_design(delta: np.ndarray, basis: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows sign·[Δ / SD(Δ), basis / SD(basis) · LENGTH_SCALE] and labels sign > 0, with the
    audit's seeded randomised pair order (``pairs.randomised_order``). Columns are scaled, not
    centred: a paired model has no intercept."""
    signs = randomised_order(delta.shape[0], seed)
    columns = []
    for block, scale in ((delta, 1.0), (basis, LENGTH_SCALE)):
        sd = np.std(block, axis=0)
        columns.append(np.divide(block, sd, out=np.zeros_like(block, dtype=np.float64), where=sd > 0) * scale)
    return np.hstack(columns) * signs[:, None], signs > 0


def _fit(X: np.ndarray, y: np.ndarray, C: float, seed: int) -> np.ndarray:
    model = LogisticRegression(
        C=C, solver="liblinear", fit_intercept=False, tol=FIT_TOL, random_state=seed, **_sklearn_l1_kwargs()
    )
    return model.fit(X, y.astype(np.int8)).coef_.ravel()


def c_min(X: np.ndarray, y: np.ndarray, n_candidates: int) -> float:
    """The smallest C at which a candidate enters: at the length-only fit, C·|X_jᵀ(y − p)| ≤ 1
    for every candidate j (liblinear's L1 optimality at zero)."""
    probability = expit(X @ _length_only_coef(X, y, n_candidates))
    gradient = X[:, :n_candidates].T @ (y - probability)
    top = float(np.max(np.abs(gradient), initial=0.0))
    return 1.0 / top if top > 0 else np.inf


def _deviance(X: np.ndarray, y: np.ndarray, coef: np.ndarray) -> float:
    eta = X @ coef
    return float(np.mean(2.0 * (np.logaddexp(0.0, eta) - y * eta)))


def one_se_multiplier(
    X: np.ndarray, y: np.ndarray, groups: np.ndarray, n_candidates: int, seed: int
) -> tuple[float, list[float], list[float], list[float]]:
    """glmnet's one-standard-error rule over ``C_MULTIPLIERS`` with folds of whole prompts.
    Returns (multiplier, multipliers, mean deviance, its standard error)."""
    from sklearn.model_selection import GroupKFold

    n_groups = len(np.unique(groups))
    folds = min(CV_FOLDS, n_groups)
    if folds < 2 or y.all() or not y.any():
        return 1.0, [], [], []
    split = [
        (train, test)
        for train, test in GroupKFold(n_splits=folds).split(X, y, groups)
        if y[train].any() and not y[train].all()
    ]
    if not split:
        return 1.0, [], [], []
    bases = [c_min(X[train], y[train], n_candidates) for train, _ in split]
    length_only = [_length_only_coef(X[train], y[train], n_candidates) for train, _ in split]
    deviance = np.full((len(split), len(C_MULTIPLIERS)), np.nan)
    lowest, since_best = np.inf, 0
    for m, multiplier in enumerate(C_MULTIPLIERS):
        for f, (train, test) in enumerate(split):
            # At C_min itself nothing enters: the fit is the length-only model.
            sparse = multiplier > 1.0 and np.isfinite(bases[f])
            coef = _fit(X[train], y[train], multiplier * bases[f], seed) if sparse else length_only[f]
            deviance[f, m] = _deviance(X[test], y[test], coef)
        score = float(np.mean(deviance[:, m]))
        lowest, since_best = (score, 0) if score < lowest else (lowest, since_best + 1)
        if since_best >= CV_PATIENCE:  # past the minimum: larger C only overfits more (and fits slower)
            break
    walked = ~np.all(np.isnan(deviance), axis=0)
    deviance = deviance[:, walked]
    mean = np.nanmean(deviance, axis=0)
    se = np.nanstd(deviance, axis=0, ddof=1) / np.sqrt(np.sum(~np.isnan(deviance), axis=0))
    best = int(np.nanargmin(mean))
    within = np.flatnonzero(mean <= mean[best] + se[best])
    chosen = C_MULTIPLIERS[int(within.min())]
    return float(chosen), list(C_MULTIPLIERS[: int(walked.sum())]), mean.tolist(), se.tolist()


def _length_only_coef(X: np.ndarray, y: np.ndarray, n_candidates: int) -> np.ndarray:
    """The unpenalised length-only model's coefficients over all columns (candidates at 0)."""
    coef = np.zeros(X.shape[1])
    length = X[:, n_candidates:]
    if length.shape[1] and not (y.all() or not y.any()):
        coef[n_candidates:] = fit_or_ridge(y, length)[0]
    return coef


def bootstrap_prompts(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row indices of a bootstrap resample of whole prompts: prompts drawn with replacement, each
    drawn prompt bringing all its pairs (as many times as it was drawn)."""
    codes, inverse = np.unique(groups, return_inverse=True)
    draws = np.bincount(rng.integers(0, len(codes), len(codes)), minlength=len(codes))
    return np.repeat(np.arange(len(groups)), draws[inverse])


def select_sparse(
    delta: np.ndarray,
    basis: np.ndarray,
    groups: np.ndarray,
    seed: int,
    resamples: int = STABILITY_RESAMPLES,
) -> SparseSelection:
    """The one-SE strength on the pairs, then stability selection at that strength over
    ``resamples`` bootstrap resamples of prompts. ``delta``: pairs × candidates (dense);
    ``basis``: the length terms (``length_control.length_terms``); ``groups``: each pair's prompt."""
    n_candidates = delta.shape[1]
    X, y = paired_design(delta, basis, seed)
    multiplier, grid, mean, se = one_se_multiplier(X, y, groups, n_candidates, seed)
    selected = np.zeros((0, n_candidates), dtype=bool)
    if multiplier > 1.0 and n_candidates:
        rng = np.random.default_rng(seed)
        rows = []
        for _ in range(resamples):
            index = bootstrap_prompts(groups, rng)
            Xb, yb = X[index], y[index]
            base = c_min(Xb, yb, n_candidates)
            if not np.isfinite(base) or yb.all() or not yb.any():
                rows.append(np.zeros(n_candidates, dtype=bool))
                continue
            rows.append(_fit(Xb, yb, multiplier * base, seed)[:n_candidates] != 0)
        selected = np.array(rows, dtype=bool).reshape(len(rows), n_candidates)
    return SparseSelection(multiplier, grid, mean, se, selected, len(selected))
