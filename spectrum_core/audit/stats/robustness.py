"""Robustness beside every concept: does it hold in random halves of the pairs?

A pair's two responses share their prompt, so the per-pair Δ is the unit of evidence; treating a
pair's chosen and rejected activations as independent samples (a two-sample z-test) counts each
prompt twice and makes z-scores too confident. Every test here works on pairs: the sign test on Δ,
and split-half agreement, which splits the *pairs* (never a pair's two sides) into random halves
and asks whether each half alone tells the same story as the whole.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .pairs import delta_csr
from .sign_test import sign_pvalues


def split_half_agreement(delta, n_splits: int, seed: int, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """For each feature (column of Δ, pairs × features), over ``n_splits`` seeded random halves of
    the pairs: the share of splits in which both halves go the same way as all the pairs do
    (``direction``), and the share in which, in addition, each half's own sign test has p < alpha
    (``significant``). A feature with no direction overall scores 0 on both."""
    d = delta_csr(delta)
    n_pairs, n_features = d.shape
    positive = sp.csr_matrix(((d.data > 0).astype(np.float64), d.indices, d.indptr), shape=d.shape)
    negative = sp.csr_matrix(((d.data < 0).astype(np.float64), d.indices, d.indptr), shape=d.shape)
    total_pos = np.asarray(positive.sum(axis=0)).ravel()
    total_neg = np.asarray(negative.sum(axis=0)).ravel()
    overall = np.sign(total_pos - total_neg)
    direction = np.zeros(n_features)
    significant = np.zeros(n_features)
    if n_splits < 1 or n_pairs < 2:
        return direction, significant
    rng = np.random.default_rng(seed)
    for _ in range(n_splits):
        first = (rng.permutation(n_pairs) < n_pairs // 2).astype(np.float64)
        pos_a, neg_a = positive.T @ first, negative.T @ first
        pos_b, neg_b = total_pos - pos_a, total_neg - neg_a
        same = (np.sign(pos_a - neg_a) == overall) & (np.sign(pos_b - neg_b) == overall) & (overall != 0)
        sure = (sign_pvalues(pos_a, neg_a) < alpha) & (sign_pvalues(pos_b, neg_b) < alpha)
        direction += same
        significant += same & sure
    return direction / n_splits, significant / n_splits


# A family is found again by an SAE trained with another seed when one of that SAE's latents has a
# Δ that correlates with the family's Δ at least this share as well as the family's best SAE member
# does: the new SAE has a feature about as aligned with the family as the original had.
SEED_MATCH_SHARE = 0.8


def seed_stability(family_delta, reference_delta, family_members: list[np.ndarray], seed_deltas: list) -> np.ndarray:
    """For each family (column of ``family_delta``, pairs × families): the share of the retrained
    SAEs (``seed_deltas``: one pairs × latents Δ per seed, the modes of that seed stacked) that
    have a latent whose Δ correlates with the family's Δ at least SEED_MATCH_SHARE times as well
    as the best of its SAE members (``family_members[f]``, columns of ``reference_delta``) does.
    NaN for a family with no SAE member (a family of probes does not depend on the SAE)."""
    from ..families import cross_correlation

    n_families = family_delta.shape[1]
    out = np.full(n_families, np.nan)
    if not seed_deltas:
        return out
    own = cross_correlation(family_delta, reference_delta)  # families × reference concepts
    best_own = np.array([own[f, m].max() if len(m) else np.nan for f, m in enumerate(family_members)])
    found = np.zeros(n_families)
    for delta in seed_deltas:
        best_new = cross_correlation(family_delta, delta).max(axis=1)
        found += best_new >= SEED_MATCH_SHARE * best_own
    has_sae = np.array([len(m) > 0 for m in family_members])
    out[has_sae] = found[has_sae] / len(seed_deltas)
    return out
