"""The pieces every pair statistic shares.

Inputs are per-pair activations of the chosen and the rejected response as ``(n_pairs,
n_features)`` sparse matrices (or dense arrays); the statistics work on Δ = chosen − rejected,
kept sparse (a 100k × 16k matrix at 1 % density is never densified), column block by column
block.

The logistic models need a label. Δ is defined as chosen − rejected, so every pair would have the
label "chosen first"; the pair order is therefore randomised with a seeded coin per pair
(:func:`randomised_order`): sign +1 keeps (first = chosen, second = rejected, y = 1), sign −1 swaps
them (y = 0). The design of a pair is then x = sign·Δ with length covariate
l = sign·(chosen_len − rejected_len). Every function that takes a ``seed`` draws the same signs
for it, so the per-feature and joint models see one and the same randomisation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

Matrix = Any  # scipy.sparse matrix/array or numpy ndarray, shape (n_pairs, n_features)

# Work on blocks of columns of about this many nonzeros, so the per-nonzero temporaries of the
# Newton loop stay in cache and converged features can be dropped from a block cheaply.
BLOCK_NNZ = 1 << 20


def to_csr(matrix: Matrix) -> sp.csr_matrix:
    """Canonical float CSR (sorted, no duplicates); shares memory with a canonical CSR input."""
    if sp.issparse(matrix):
        return _canonical_float(sp.csr_matrix(matrix))
    dense = np.asarray(matrix)
    if dense.ndim != 2:
        raise ValueError(f"expected a 2-D (n_pairs, n_features) array, got shape {dense.shape}")
    return _canonical_float(sp.csr_matrix(dense))


def delta_csr(delta: Matrix) -> sp.csr_matrix:
    """Δ as canonical CSR without stored zeros (copying only when zeros must be removed)."""
    return _without_zeros(to_csr(delta))


def delta_csc(delta: Matrix) -> sp.csc_matrix:
    """Δ as canonical float CSC without stored zeros, sharing memory with such a CSC input (the
    joint model reads columns; a CSR detour held two more copies of a wide Δ)."""
    if not sp.issparse(delta):
        return delta_csr(delta).tocsc()
    return _without_zeros(_canonical_float(sp.csc_matrix(delta)))


def _canonical_float(out):
    """Sorted without duplicates and of a float dtype; a copy only where one of these is missing."""
    if not out.has_canonical_format:
        out = out.copy()
        out.sum_duplicates()
    if not np.issubdtype(out.dtype, np.floating):
        out = out.astype(np.float64)
    return out


def _without_zeros(out):
    """No stored zeros; a copy only where there are some."""
    if out.nnz and not np.all(out.data != 0):
        out = out.copy()
        out.eliminate_zeros()
    return out


def length_difference(chosen_len: Any, rejected_len: Any, n_pairs: int) -> np.ndarray:
    c = np.asarray(chosen_len, dtype=np.float64).ravel()
    r = np.asarray(rejected_len, dtype=np.float64).ravel()
    if c.shape != (n_pairs,) or r.shape != (n_pairs,):
        raise ValueError(f"lengths must have one value per pair ({n_pairs}); got {c.shape}, {r.shape}")
    return c - r


def column_blocks(indptr: np.ndarray, target_nnz: int = BLOCK_NNZ) -> list[tuple[int, int]]:
    """Consecutive column ranges holding about ``target_nnz`` nonzeros each."""
    n_cols = indptr.size - 1
    if n_cols == 0:
        return []
    cuts = np.searchsorted(indptr, np.arange(target_nnz, int(indptr[-1]), target_nnz))
    bounds = np.unique(np.concatenate([[0], np.clip(cuts, 1, n_cols), [n_cols]]))
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def randomised_order(n_pairs: int, seed: int) -> np.ndarray:
    """Seeded random ±1 per pair: +1 keeps (chosen, rejected) with y = 1, −1 swaps them (y = 0).

    For a pair the design is x = sign·Δ, l = sign·(chosen_len − rejected_len), y = (sign > 0).
    """
    rng = np.random.default_rng(seed)
    return np.where(rng.random(int(n_pairs)) < 0.5, 1, -1).astype(np.int8)


def segment_sum(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sums of consecutive non-empty segments beginning at ``starts`` (ending at the next start)."""
    return np.add.reduceat(values, starts) if starts.size else np.zeros(0)


def block_layout(indptr: np.ndarray, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Columns of block [c0, c1) with nonzeros, their counts and segment starts in the block."""
    counts = np.diff(indptr[c0 : c1 + 1])
    present = counts > 0
    cols = np.flatnonzero(present) + c0
    return cols, counts[present], indptr[cols] - indptr[c0]


def column_moments(csc: sp.csc_matrix) -> dict[str, np.ndarray]:
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
    for c0, c1 in column_blocks(indptr):
        cols, counts, starts = block_layout(indptr, c0, c1)
        if cols.size == 0:
            continue
        values = csc.data[indptr[c0] : indptr[c1]].astype(np.float64)
        total = segment_sum(values, starts)
        mean = total / n_pairs
        centred = values - np.repeat(mean, counts)
        centred *= centred
        out["sd"][cols] = np.sqrt((segment_sum(centred, starts) + (n_pairs - counts) * mean * mean) / n_pairs)
        out["sum"][cols] = total
        out["n_pos"][cols] = segment_sum((values > 0).astype(np.float64), starts).astype(np.int64)
        out["n_neg"][cols] = segment_sum((values < 0).astype(np.float64), starts).astype(np.int64)
    return out


def auc_score(y: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if y.size == 0 or y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, scores))


def as_train_mask(train_mask: Any, n_pairs: int) -> np.ndarray:
    mask = np.asarray(train_mask, dtype=bool).ravel()
    if mask.shape != (n_pairs,):
        raise ValueError(f"train_mask must have one entry per pair ({n_pairs}); got {mask.shape}")
    return mask
