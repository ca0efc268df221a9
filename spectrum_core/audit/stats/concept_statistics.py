"""One row of statistics per concept (the length-aware primary test, sign test, length-controlled
logit, joint-model weight, side means) from the chosen and rejected matrices, and the ranking the review queue uses."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..config import AuditConfig
from .joint import fit_joint
from .length_control import lean_direction, length_null, score_pvalues
from .length_logit import feature_logits, logit_table, null_row_term
from .pairs import (
    BLOCK_NNZ,
    Matrix,
    as_train_mask,
    column_moments,
    delta_csr,
    length_difference,
    randomised_order,
    to_csr,
)
from .sign_test import adjust_pvalues, sign_pvalues


def _side_statistics(c: sp.csr_matrix, r: sp.csr_matrix, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per feature, over the pairs in ``keep``: pairs where chosen or rejected is nonzero, and
    the column sums of each side.

    Row block by row block (views, no copies of the inputs; other rows' values zeroed in the
    block's temporaries), so temporaries stay small.
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
            data, indices = m.data[e0:e1] * np.repeat(keep[r0:r1], np.diff(ptr[r0 : r1 + 1])), m.indices[e0:e1]
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
    rows: Any = None,
    with_joint: bool = True,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """All per-feature statistics, one row per feature (index = feature number).

    Columns: prevalence (share of pairs where chosen or rejected is nonzero), n_differ,
    n_chosen_more, n_rejected_more, share_chosen_more, direction (the primary test's: the sign of
    the length-aware score; the raw share's side where that test has no information), mean_delta,
    mean_chosen, mean_rejected, p_sign (the raw sign test, secondary), p_value (the primary test:
    the length-aware score test of ``length_control.py``), q_value (``correction`` of p_value), q_sign (of p_sign), the
    length-controlled logit (coef, ci_low, ci_high, se, p_logit, converged), joint_coef and
    auc_contribution. The dict holds the joint model's scalars (auc_held_out, auc_train, C,
    length_coef, n_selected) and the length-only model (null_intercept, null_converged).

    Per-feature statistics read ``rows`` (a mask over pairs; default all); the joint model is fitted
    on ``train_mask`` and scored on the rest (the audit passes its discovery pairs as both) and left
    out with ``with_joint=False``. It runs in a second thread (liblinear and sparse mat-vecs release
    the GIL) while this one does the per-feature pass.
    """
    c, r = to_csr(chosen), to_csr(rejected)
    if c.shape != r.shape:
        raise ValueError(f"chosen {c.shape} and rejected {r.shape} differ in shape")
    n_pairs, n_features = c.shape
    mask = as_train_mask(train_mask, n_pairs)
    dlen = length_difference(chosen_len, rejected_len, n_pairs)
    signs = randomised_order(n_pairs, seed)
    d = delta_csr(c - r)
    moments = column_moments(csc := d.tocsc())
    keep = np.ones(n_pairs, dtype=bool) if rows is None else as_train_mask(rows, n_pairs)
    if not keep.all():  # the per-feature part on ``rows`` only; the joint model on all
        # Row selection of the CSC Δ, not Δ of row copies of both sides: one copy, not three.
        signs_rows, csc_rows = signs[keep], csc[np.flatnonzero(keep)]
        moments_rows = column_moments(csc_rows)
    else:
        signs_rows, csc_rows, moments_rows = signs, csc, moments
    null = length_null(np.asarray(chosen_len, float), np.asarray(rejected_len, float), signs, rows=keep)
    with ThreadPoolExecutor(max_workers=1) as pool:
        fit = fit_joint if with_joint else _no_joint
        joint_future = pool.submit(fit, csc, moments["sd"], signs, dlen, mask, seed, C)
        row_term, null_info = null_row_term(null, signs_rows)
        logits = feature_logits(csc_rows, moments_rows["sd"], row_term)
        score, p_value = score_pvalues(csc_rows, signs_rows, null)
        sides = _side_statistics(c, r, keep)
        joint_fit = joint_future.result()

    table = _feature_table(
        (int(keep.sum()), n_features), moments_rows, sides, logits, (score, p_value), null_info, joint_fit, correction
    )
    summary = {key: value for key, value in joint_fit.items() if not isinstance(value, np.ndarray)} | null_info
    return table, summary


def _no_joint(d: sp.csc_matrix, *_: Any) -> dict[str, Any]:
    """What ``fit_joint`` returns, not fitted: NaN scalars and columns."""
    nan = np.full(d.shape[1], np.nan)
    keys = ("auc_held_out", "auc_train", "C", "length_coef")
    return {**{k: float("nan") for k in keys}, "n_selected": 0, "coef": nan, "auc_contribution": nan}


def _feature_table(
    shape: tuple[int, int],
    moments: dict[str, np.ndarray],
    sides: tuple[np.ndarray, np.ndarray, np.ndarray],
    logits: dict[str, np.ndarray],
    primary: tuple[np.ndarray, np.ndarray],
    null_info: dict[str, Any],
    joint: dict[str, Any],
    correction: str,
) -> pd.DataFrame:
    """The per-feature table of ``feature_statistics`` from its parts: the columns of Δ
    (``moments``), the side statistics, the length-controlled logits and the joint model."""
    n_pairs, n_features = shape
    union, sum_chosen, sum_rejected = sides  # pairs where either side fires; each side's sum
    n_pos, n_neg = moments["n_pos"], moments["n_neg"]
    n_differ = n_pos + n_neg
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(n_differ > 0, n_pos / np.maximum(n_differ, 1), np.nan)
        per_pair = 1.0 / n_pairs if n_pairs else np.nan
    score, p_value = primary
    direction = lean_direction(score, p_value, share)
    p_sign = sign_pvalues(n_pos, n_neg)
    logit = logit_table(logits, n_pos, n_neg, null_info["null_converged"])
    return pd.DataFrame(
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
            "p_value": p_value,
            "q_value": adjust_pvalues(p_value, correction),
            "q_sign": adjust_pvalues(p_sign, correction),
            **{name: logit[name].to_numpy() for name in logit.columns},
            "joint_coef": joint["coef"],
            "auc_contribution": joint["auc_contribution"],
        }
    ).rename_axis("feature")


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


def concept_table(
    mode: str,
    chosen: sp.csr_matrix,
    rejected: sp.csr_matrix,
    lengths: tuple,
    train_mask: np.ndarray,
    config: AuditConfig,
    discovery: np.ndarray | None = None,
    with_joint: bool = True,
) -> tuple[pd.DataFrame, dict]:
    """The statistics table of one mode's concepts (``kind``, ``mode``, ``feature`` first, then
    every column of :func:`feature_statistics`), and its joint model.
    With ``discovery`` (a mask over pairs) every per-concept statistic reads those pairs only."""
    table, joint = feature_statistics(
        chosen,
        rejected,
        lengths[0],
        lengths[1],
        train_mask,
        seed=config.seed,
        correction=config.correction,
        rows=discovery,
        with_joint=with_joint,
    )
    table = table.reset_index(drop=True)
    table.insert(0, "feature", np.arange(len(table)))
    table.insert(0, "mode", mode)
    table.insert(0, "kind", mode if mode in ("probe", "family") else "sae")
    return table, joint
