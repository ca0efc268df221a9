"""Robustness beside every family: is it found again by SAEs trained with other seeds?

(Split-half agreement, which asked whether random halves of the pairs tell the same story, was
computed after selection on the pairs that took part in it: on sign-flipped HH pairs the top 20
families agreed in 99% of halves. The confirmation split, whole prompts held out, replaces it.)
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import scipy.sparse as sp

# A family is found again by an SAE trained with another seed when one of that SAE's latents has a
# Δ that correlates with the family's Δ at least this share as well as the family's best SAE member
# does: the new SAE has a feature about as aligned with the family as the original had.
SEED_MATCH_SHARE = 0.8


def best_member_correlation(family_delta, reference_delta, family_members: list[np.ndarray]) -> np.ndarray:
    """Per family (column of ``family_delta``, pairs × families): the largest Pearson r of its Δ
    with the Δ of one of its SAE members (``family_members[f]``, columns of ``reference_delta``);
    NaN for a family with no SAE member (a family of probes does not depend on the SAE)."""
    from ..families import cross_correlation

    own = cross_correlation(family_delta, reference_delta)  # families × reference concepts
    return np.array([own[f, m].max() if len(m) else np.nan for f, m in enumerate(family_members)])


def seed_stability(best_own: np.ndarray, seeds_best: Iterable[np.ndarray]) -> np.ndarray:
    """For each family: the share of the retrained SAEs (``seeds_best``: per seed, each family's
    largest r with a latent of that seed's SAEs, its modes together) that have a latent whose Δ
    correlates with the family's Δ at least SEED_MATCH_SHARE times as well as the best of its
    SAE members does (``best_own``, from :func:`best_member_correlation`; NaN where the family has
    no SAE member, which stays NaN). ``seeds_best`` may be a generator, so a seed's SAEs are
    trained and encoded only when it is read, one seed at a time."""
    best_own = np.asarray(best_own, dtype=np.float64)
    found, n_seeds = np.zeros(len(best_own)), 0
    for best_new in seeds_best:
        found += np.asarray(best_new) >= SEED_MATCH_SHARE * best_own
        n_seeds += 1
    out = np.full(len(best_own), np.nan)
    if n_seeds:
        has_sae = ~np.isnan(best_own)
        out[has_sae] = found[has_sae] / n_seeds
    return out


class StreamedDeltaCorrelation:
    """Pearson r between the columns of ``family_delta`` (pairs × families) and the per-pair Δ
    (chosen − rejected) of a pairs × latents matrix that is never held whole: its rows arrive one
    side's block at a time, every chosen block first (:meth:`add_chosen`), then every rejected one
    (:meth:`add_rejected`).

    r needs per latent Σ Δ, Σ Δ² and per family Σ f·Δ. All are sums over responses except the
    Σ chosen·rejected inside Σ Δ², so only the chosen rows are kept until their rejected rows
    arrive: one side's matrix, where forming Δ held both sides, Δ and its copy at once (the
    100k-pair audit's peak, ``docs/benchmarks.md``). Written here because no library streams a
    paired difference's correlation; the result equals ``families.cross_correlation`` of the Δ
    matrix up to the order of summation."""

    def __init__(self, family_delta, n_latents: int):
        from ..families import _column_moments

        self.family = sp.csr_matrix(family_delta, dtype=np.float64)
        self.n_pairs, self.n_latents = self.family.shape[0], n_latents
        self.family_moments = _column_moments(self.family)
        self.total = np.zeros(n_latents)
        self.squares = np.zeros(n_latents)
        self.cross = np.zeros((self.family.shape[1], n_latents))  # Σ f·Δ
        self.chosen_blocks: list[sp.csr_matrix] = []
        self.chosen_pairs: list[np.ndarray] = []
        self.chosen: sp.csr_matrix | None = None
        self.chosen_row = np.full(self.n_pairs, -1, dtype=np.int64)

    def _add(self, pairs: np.ndarray, block: sp.csr_matrix, sign: float) -> None:
        block = sp.csr_matrix(block, dtype=np.float64)
        self.total += sign * np.bincount(block.indices, weights=block.data, minlength=self.n_latents)
        self.squares += np.bincount(block.indices, weights=block.data**2, minlength=self.n_latents)
        # Dense per block: SAE latents of a small model fire in a third of all responses, where a
        # sparse product is slow (families.DENSE_GRAM_DENSITY); a block is one shard's side.
        self.cross += sign * (self.family[pairs].toarray().T @ block.toarray())

    def add_chosen(self, pairs: np.ndarray, block: sp.csr_matrix) -> None:
        if self.chosen is not None:
            raise RuntimeError("every chosen block comes before the first rejected one")
        self._add(pairs, block, 1.0)
        self.chosen_blocks.append(sp.csr_matrix(block, dtype=np.float32))
        self.chosen_pairs.append(np.asarray(pairs, dtype=np.int64))

    def add_rejected(self, pairs: np.ndarray, block: sp.csr_matrix) -> None:
        if self.chosen is None:
            self.chosen = sp.vstack([*self.chosen_blocks, sp.csr_matrix((0, self.n_latents))], format="csr")
            self.chosen_blocks = []
            if self.chosen_pairs:
                self.chosen_row[np.concatenate(self.chosen_pairs)] = np.arange(self.chosen.shape[0])
        self._add(pairs, block, -1.0)
        rows = self.chosen_row[pairs]
        have = rows >= 0
        if have.any():
            rejected = sp.csr_matrix(block, dtype=np.float64)[np.flatnonzero(have)]
            both = self.chosen[rows[have]].astype(np.float64).multiply(rejected)
            self.squares -= 2 * np.asarray(both.sum(axis=0), dtype=np.float64).ravel()

    def correlation(self) -> np.ndarray:
        """families × latents r (0 where a column is constant)."""
        from ..families import correlation_from_moments

        self.chosen, self.chosen_blocks = None, []
        return correlation_from_moments(self.n_pairs, self.family_moments, (self.total, self.squares), self.cross)
