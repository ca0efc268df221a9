"""Robustness beside every family: is it found again by SAEs trained with other seeds?

(Split-half agreement, which asked whether random halves of the pairs tell the same story, was
computed after selection on the pairs that took part in it: on sign-flipped HH pairs the top 20
families agreed in 99% of halves. The confirmation split, whole prompts held out, replaces it.)
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

# A family is found again by an SAE trained with another seed when one of that SAE's latents has a
# Δ that correlates with the family's Δ at least this share as well as the family's best SAE member
# does: the new SAE has a feature about as aligned with the family as the original had.
SEED_MATCH_SHARE = 0.8


def seed_stability(
    family_delta, reference_delta, family_members: list[np.ndarray], seed_deltas: Iterable
) -> np.ndarray:
    """For each family (column of ``family_delta``, pairs × families): the share of the retrained
    SAEs (``seed_deltas``: one pairs × latents Δ per seed, the modes of that seed stacked) that
    have a latent whose Δ correlates with the family's Δ at least SEED_MATCH_SHARE times as well
    as the best of its SAE members (``family_members[f]``, columns of ``reference_delta``) does.
    NaN for a family with no SAE member (a family of probes does not depend on the SAE).
    ``seed_deltas`` may be a generator: each seed's Δ is read once and can be freed before the
    next is made, so the check holds one retrained SAE's matrix at a time."""
    from ..families import cross_correlation

    n_families = family_delta.shape[1]
    out = np.full(n_families, np.nan)
    own = cross_correlation(family_delta, reference_delta)  # families × reference concepts
    best_own = np.array([own[f, m].max() if len(m) else np.nan for f, m in enumerate(family_members)])
    found, n_seeds = np.zeros(n_families), 0
    for delta in seed_deltas:
        best_new = cross_correlation(family_delta, delta).max(axis=1)
        del delta
        found += best_new >= SEED_MATCH_SHARE * best_own
        n_seeds += 1
    if not n_seeds:
        return out
    has_sae = np.array([len(m) > 0 for m in family_members])
    out[has_sae] = found[has_sae] / n_seeds
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
