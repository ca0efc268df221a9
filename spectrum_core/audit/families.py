"""Concept families: SAE features of both modes, and probes, that express the same concept.

An SAE splits one idea over many latents ("sorry", "I can't", "I'm not able to" ...), and a
researcher should review the idea once. Two concepts belong together when their per-pair Δ move
together across pairs (Pearson r of Δ over the audited pairs) or, within one SAE, when their
decoder directions point the same way (cosine). The similarity of two concepts is the larger of
the two within a mode and r alone across modes and for probes; families are the clusters of an
average-linkage hierarchical clustering (scipy) cut at ``1 - min_similarity``.

Average linkage keeps the promise stated on the page: every merge joins two groups whose average
similarity is at least ``min_similarity``, so the average similarity over all pairs of members of
a family is at least that much too. Similarities are signed: two concepts that move in opposite
directions across pairs (r < 0) are never in one family.

A family is scored on each response by the sum of its members' standardised activations (each
member divided by its standard deviation over all audited responses), and that score goes through
the same tests as a single concept. Being linear, the family's Δ is the same weighted sum of its
members' Δ, so data interventions, the reward and prevalence can all rebuild it from the members.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import scipy.sparse as sp
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from .stats.pairs import column_blocks

# Two concepts are "alike" from r = 0.3 of their per-pair Δ (or decoder cosine within an SAE): on
# the full bundled HH audit that puts the refusal features ("sorry", "I can't", "cannot help") in
# one family and keeps length-like and topic features apart (docs/audit.md, "Concept families").
MIN_SIMILARITY = 0.3

# Only the best-ranked concepts are clustered: the pairwise matrix is quadratic in their number
# (2,000 → 32 MB), and the weak tail of thousands of features has nothing to review.
MAX_CANDIDATES = 2000

# A concept that differs in fewer pairs than this has a Δ correlation too noisy to trust.
MIN_PAIRS_DIFFERING = 5


@dataclass
class Families:
    """``family`` holds, for each concept given to :func:`find_families`, its family number
    (0 … n_families − 1, numbered in the order their first member was given) or −1 when it was
    not clustered; ``weights`` the member weight (1 / the concept's standard deviation)."""

    family: np.ndarray
    weights: np.ndarray
    similarity: np.ndarray  # among the clustered concepts, in their order
    clustered: np.ndarray  # indices of the clustered concepts

    @property
    def n_families(self) -> int:
        return int(self.family.max() + 1) if len(self.family) and self.family.max() >= 0 else 0

    def members(self, family: int) -> np.ndarray:
        return np.flatnonzero(self.family == family)

    def weight_matrix(self) -> sp.csr_matrix:
        """(n_concepts, n_families): activations @ this = family scores."""
        rows = np.flatnonzero(self.family >= 0)
        return sp.csr_matrix((self.weights[rows], (rows, self.family[rows])), shape=(len(self.family), self.n_families))

    def mean_similarity(self, family: int) -> float:
        """Average similarity over all pairs of the family's members (1 for a single member)."""
        inside = np.flatnonzero(self.family[self.clustered] == family)
        if len(inside) < 2:
            return 1.0
        block = self.similarity[np.ix_(inside, inside)]
        return float((block.sum() - np.trace(block)) / (len(inside) * (len(inside) - 1)))


def delta_correlation(delta: sp.spmatrix | np.ndarray) -> np.ndarray:
    """Pearson r between the columns of Δ (pairs × concepts); 0 where a column is constant."""
    return cross_correlation(delta, delta)


# Gram products of matrices denser than this are summed over dense row blocks (BLAS) instead of
# a sparse product: SAE features of a small or random model fire in a third of all responses,
# where scipy's sparse product took 83 s of a 100k-pair audit's families and a dense GEMM seconds.
DENSE_GRAM_DENSITY = 0.05
GRAM_BLOCK_BYTES = 64 << 20  # one dense row block of both inputs, float64


def _density(m: sp.spmatrix | np.ndarray) -> float:
    if not sp.issparse(m):
        return 1.0
    return cast(sp.spmatrix, m).nnz / max(m.shape[0] * m.shape[1], 1)


def _column_moments(m: sp.spmatrix | np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per column: sum and sum of squares over ``rows`` (a mask; default all), float64, without a
    squared or row-selected copy of a sparse matrix. A CSC matrix is read a block of columns at a
    time (each column's values added in the same order as over the whole matrix, so the same
    bits): its coordinates and float64 copy of the values took twice the matrix at once."""
    if not sp.issparse(m):
        dense = np.asarray(m, dtype=np.float64)[slice(None) if rows is None else np.asarray(rows, bool)]
        return dense.sum(axis=0), (dense * dense).sum(axis=0)
    sparse = cast(sp.csc_matrix, m)
    if sparse.format != "csc":
        return _coordinate_moments(sparse, rows)
    total, squares = np.zeros(sparse.shape[1]), np.zeros(sparse.shape[1])
    for c0, c1 in column_blocks(np.asarray(sparse.indptr, dtype=np.int64)):
        total[c0:c1], squares[c0:c1] = _coordinate_moments(sparse[:, c0:c1], rows)
    return total, squares


def _coordinate_moments(m: sp.spmatrix, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    coo = sp.coo_matrix(m)
    data = coo.data.astype(np.float64)
    if rows is not None:
        data *= np.asarray(rows, bool)[coo.row]
    k = m.shape[1]
    return np.bincount(coo.col, weights=data, minlength=k), np.bincount(coo.col, weights=data * data, minlength=k)


def _gram(a: sp.spmatrix | np.ndarray, b: sp.spmatrix | np.ndarray) -> np.ndarray:
    """aᵀb (float64, dense), by a sparse product for sparse inputs and by dense row blocks else."""
    if sp.issparse(a) and sp.issparse(b) and max(_density(a), _density(b)) < DENSE_GRAM_DENSITY:
        left = sp.csc_matrix(a, dtype=np.float64)
        right = left if b is a else sp.csc_matrix(b, dtype=np.float64)
        return np.asarray((left.T @ right).todense())
    a = sp.csr_matrix(a) if sp.issparse(a) else np.asarray(a)
    b = a if b is a else (sp.csr_matrix(b) if sp.issparse(b) else np.asarray(b))
    rows = max(1, GRAM_BLOCK_BYTES // (8 * (a.shape[1] + b.shape[1])))
    out = np.zeros((a.shape[1], b.shape[1]))

    def block(m, r0: int) -> np.ndarray:
        part = m[r0 : r0 + rows]
        return (part.toarray() if sp.issparse(part) else part).astype(np.float64)

    for r0 in range(0, a.shape[0], rows):
        left = block(a, r0)
        out += left.T @ (left if b is a else block(b, r0))
    return out


def cross_correlation(a: sp.spmatrix | np.ndarray, b: sp.spmatrix | np.ndarray) -> np.ndarray:
    """Pearson r between every column of ``a`` and every column of ``b`` (same rows), from their
    Gram products (sparse inputs are never copied whole); 0 where a column is constant."""
    moments_a = _column_moments(a)
    moments_b = moments_a if b is a else _column_moments(b)
    return correlation_from_moments(a.shape[0], moments_a, moments_b, _gram(a, b))


def correlation_from_moments(
    n_rows: int,
    moments_a: tuple[np.ndarray, np.ndarray],
    moments_b: tuple[np.ndarray, np.ndarray],
    gram: np.ndarray,
) -> np.ndarray:
    """Pearson r between the columns of two matrices of ``n_rows`` rows, from each column's sum
    and sum of squares (``moments_*``) and the cross products aᵀb (``gram``), however they were
    summed (whole matrices, or blocks of rows streamed in); 0 where a column is constant."""
    n = max(n_rows, 1)
    stats = []
    for total, squares in (moments_a, moments_b):
        mean, second = total / n, squares / n
        sd = np.sqrt(np.maximum(second - mean**2, 0.0))
        constant = sd <= 1e-12 * np.sqrt(np.maximum(second, 1e-300))
        stats.append((mean, np.where(constant, np.inf, sd)))
    (mean_a, sd_a), (mean_b, sd_b) = stats
    cov = gram / n - np.outer(mean_a, mean_b)
    return np.clip(cov / np.outer(sd_a, sd_b), -1.0, 1.0)


def decoder_cosine(directions: np.ndarray) -> np.ndarray:
    unit = directions / np.maximum(np.linalg.norm(directions, axis=1, keepdims=True), 1e-12)
    return np.clip(unit @ unit.T, -1.0, 1.0)


def find_families(
    chosen: sp.spmatrix,
    rejected: sp.spmatrix,
    modes: np.ndarray,
    candidates: np.ndarray,
    decoders: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    min_similarity: float = MIN_SIMILARITY,
    delta: sp.spmatrix | None = None,
    rows: np.ndarray | None = None,
) -> Families:
    """Cluster the concepts ``candidates`` (column indices of the per-pair matrices ``chosen`` and
    ``rejected``, pairs × concepts, best-ranked first) into families.

    ``modes`` gives each column's mode; ``decoders`` maps a mode to (its columns, their decoder
    directions) for the decoder-cosine half of the similarity. Concepts outside ``candidates``, and
    candidates that differ in fewer than MIN_PAIRS_DIFFERING pairs, are left out (family −1).
    ``delta``: chosen − rejected when the caller holds it already (not computed again); ``rows``
    (a mask over pairs): the pairs to describe, when ``chosen`` and ``rejected`` hold more (then
    ``delta`` must be given, of those rows only)."""
    n_concepts = chosen.shape[1]
    if rows is not None and delta is None:
        raise ValueError("find_families: rows need the Δ of those rows")
    sd = _response_sd(chosen, rejected, rows)
    weights = _member_weights(sd, chosen.dtype)

    delta = sp.csc_matrix(chosen - rejected if delta is None else delta)
    if delta.nnz and not np.all(delta.data != 0):  # the caller's matrix is left as it is
        delta = delta.copy()
        delta.eliminate_zeros()
    differing = np.diff(delta.indptr)
    candidates = np.asarray(candidates, dtype=np.int64)
    keep = candidates[(differing[candidates] >= MIN_PAIRS_DIFFERING) & (sd[candidates] > 0)]
    family = np.full(n_concepts, -1, dtype=np.int64)
    if len(keep) == 0:
        return Families(family, weights, np.zeros((0, 0)), keep)

    similarity = delta_correlation(delta[:, keep])
    for mode, (columns, directions) in (decoders or {}).items():
        position = {int(c): i for i, c in enumerate(columns)}
        inside = np.flatnonzero(modes[keep] == mode)
        decoder_rows = [position[int(c)] for c in keep[inside] if int(c) in position]
        if len(decoder_rows) != len(inside) or len(inside) < 2:
            continue
        cosine = decoder_cosine(directions[decoder_rows])
        block = np.ix_(inside, inside)
        similarity[block] = np.maximum(similarity[block], cosine)
    np.fill_diagonal(similarity, 1.0)

    if len(keep) == 1:
        labels = np.array([1])
    else:
        distance = squareform(np.clip(1.0 - similarity, 0.0, 2.0), checks=False)
        labels = fcluster(linkage(distance, method="average"), t=1.0 - min_similarity, criterion="distance")
    # Number families by their best-ranked member (candidates come best first), not by scipy's
    # arbitrary cluster numbers, so the numbering is stable and readable.
    first_seen: dict[int, int] = {}
    for label in labels:
        first_seen.setdefault(int(label), len(first_seen))
    family[keep] = [first_seen[int(label)] for label in labels]
    return Families(family, weights, similarity, keep)


def _member_weights(sd: np.ndarray, dtype) -> np.ndarray:
    """1 / SD (0 for a constant concept), in the activations' own precision (float32): float64
    weights made the family scores float64, twice their memory, and their stored chosen,
    rejected and Δ disagreed in the last float32 bit."""
    return np.where(sd > 0, 1.0 / np.where(sd > 0, sd, 1.0), 0.0).astype(np.result_type(dtype, np.float32))


def _response_sd(chosen: sp.spmatrix, rejected: sp.spmatrix, rows: np.ndarray | None) -> np.ndarray:
    """Each concept's standard deviation over every response of the pairs in ``rows`` (all)."""
    n_responses = 2 * (chosen.shape[0] if rows is None else int(np.sum(rows)))
    (sum_c, squares_c), (sum_r, squares_r) = _column_moments(chosen, rows), _column_moments(rejected, rows)
    mean, mean_sq = (sum_c + sum_r) / max(n_responses, 1), (squares_c + squares_r) / max(n_responses, 1)
    return np.sqrt(np.maximum(mean_sq - mean**2, 0.0))


def family_scores(matrix: sp.spmatrix, families: Families) -> sp.csr_matrix:
    """Per-response (or per-pair) family scores: each row's weighted sum over every member."""
    scores = sp.csr_matrix(sp.csr_matrix(matrix) @ families.weight_matrix())
    scores.sum_duplicates()  # canonical, in place: the statistics then read it without a copy
    return scores


def representatives(delta: sp.spmatrix, families: Families, family_delta: sp.spmatrix) -> np.ndarray:
    """For each family, the member whose Δ correlates best with the family's Δ."""
    out = np.full(families.n_families, -1, dtype=np.int64)
    delta = sp.csc_matrix(delta)
    family_delta = sp.csc_matrix(family_delta)
    for f in range(families.n_families):
        members = families.members(f)
        if len(members) == 1:
            out[f] = members[0]
            continue
        stacked = sp.hstack([family_delta[:, [f]], delta[:, members]])
        r = delta_correlation(stacked)[0, 1:]
        out[f] = members[int(np.argmax(r))]
    return out


def effect_size(delta: sp.spmatrix) -> np.ndarray:
    """Standardised mean Δ per column (mean / standard deviation over pairs; Cohen's d_z), the
    effect size of a paired design; 0 for a constant column."""
    delta = sp.csc_matrix(delta)
    n = max(delta.shape[0], 1)
    mean = np.asarray(delta.sum(axis=0)).ravel() / n
    mean_sq = np.asarray(delta.multiply(delta).sum(axis=0)).ravel() / n
    sd = np.sqrt(np.maximum(mean_sq - mean**2, 0.0))
    return np.where(sd > 0, mean / np.where(sd > 0, sd, 1.0), 0.0)
