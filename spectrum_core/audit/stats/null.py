"""A calibrated null on every audit: what the same audit confirms when the preferences mean nothing.

Each null run flips chosen and rejected in a seeded random half of the pairs (a true null: no
concept can lean either way on purpose) and reruns every step after the features that reads the
labels: statistics, families, heads, confirmation. The count of confirmed heads over the runs, its
mean and 95th percentile, beside the real count, says how many of the real findings chance alone
would give (an estimated false-discovery share). The SAEs and features are reused: they never see
the labels, so flipping cannot change them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

# The null runs draw their flips from this seed offset of the audit's seed, so they never reuse the
# pair order or the split's random numbers.
NULL_SEED_OFFSET = 1_000


# Rows gathered per chunk in ``flip_pairs``: bounds the chunk's int64 index arrays (8 bytes per
# nonzero, more than the float32 values themselves) to a few MB whatever the number of pairs.
FLIP_CHUNK_NNZ = 1 << 20


def flip_pairs(chosen: sp.csr_matrix, rejected: sp.csr_matrix, flip: np.ndarray) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Chosen and rejected swapped in the pairs where ``flip`` is True."""
    chosen, rejected = sp.csr_matrix(chosen), sp.csr_matrix(rejected)
    return _rows_from(chosen, rejected, flip), _rows_from(rejected, chosen, flip)


def _rows_from(kept: sp.csr_matrix, swapped: sp.csr_matrix, flip: np.ndarray) -> sp.csr_matrix:
    """Row i of ``swapped`` where ``flip[i]``, else of ``kept``: written straight into the output's
    arrays, chunk of rows by chunk. Why by hand: scipy's ways (diagonal products and their sum,
    stacking then row indexing) hold two to three copies of both matrices at once, which made the
    null runs the audit's memory peak at 100k pairs."""
    flip = np.asarray(flip, dtype=bool)
    starts = np.where(flip, swapped.indptr[:-1], kept.indptr[:-1]).astype(np.int64)
    lengths = np.where(flip, np.diff(swapped.indptr), np.diff(kept.indptr)).astype(np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    data = np.empty(int(indptr[-1]), dtype=np.result_type(kept.dtype, swapped.dtype))
    indices = np.empty(int(indptr[-1]), dtype=np.result_type(kept.indices.dtype, swapped.indices.dtype))
    cuts = np.searchsorted(indptr, np.arange(0, int(indptr[-1]), FLIP_CHUNK_NNZ), side="right") - 1
    bounds = np.unique(np.concatenate([np.clip(cuts, 0, len(flip)), [len(flip)]]))
    for r0, r1 in zip(bounds[:-1], bounds[1:]):
        rows = np.arange(r0, r1)
        row_of = np.repeat(rows, lengths[r0:r1])
        source = starts[row_of] + (np.arange(indptr[r0], indptr[r1]) - indptr[row_of])
        from_swapped = flip[row_of]
        out = slice(int(indptr[r0]), int(indptr[r1]))
        for matrix, take in ((kept, ~from_swapped), (swapped, from_swapped)):
            data[out][take] = matrix.data[source[take]]
            indices[out][take] = matrix.indices[source[take]]
    return sp.csr_matrix((data, indices, indptr), shape=kept.shape)


def flip_modes_in_place(mode_data: dict[str, tuple[sp.csr_matrix, sp.csr_matrix]], flip: np.ndarray) -> None:
    """Every mode of ``mode_data`` with chosen and rejected swapped where ``flip`` is True, replaced
    in the dict one mode at a time, so each mode's originals can be freed as soon as its flipped
    copy exists. Calling it again with the same ``flip`` restores the originals exactly: a row swap
    moves values and computes none. Why in place: a null run that held flipped copies beside every
    original was the audit's memory peak at 100k pairs."""
    for mode in list(mode_data):
        chosen, rejected = mode_data.pop(mode)
        mode_data[mode] = flip_pairs(chosen, rejected, flip)
        del chosen, rejected


@contextmanager
def set_aside_on_disk(
    mode_data: dict[str, tuple[sp.csr_matrix, sp.csr_matrix]], modes: tuple[str, ...], folder: Path
) -> Iterator[None]:
    """``modes``' matrices moved out of ``mode_data`` into uncompressed .npz files in a temporary
    folder under ``folder`` for the block, and read back after it, exactly (same values, indices
    and dtypes), after the other modes. Why: the null runs rebuild their own families and heads,
    and holding the real ones beside them through every run kept the null step above the
    families step's peak at 100k pairs."""
    with tempfile.TemporaryDirectory(dir=folder, prefix=".null-set-aside-") as scratch:
        saved = [mode for mode in modes if mode in mode_data]
        for mode in saved:
            for side, matrix in zip(("chosen", "rejected"), mode_data.pop(mode)):
                sp.save_npz(Path(scratch) / f"{mode}-{side}.npz", sp.csr_matrix(matrix), compressed=False)
            del matrix
        try:
            yield
        finally:
            for mode in saved:
                chosen, rejected = (
                    sp.load_npz(Path(scratch) / f"{mode}-{side}.npz") for side in ("chosen", "rejected")
                )
                mode_data[mode] = (sp.csr_matrix(chosen), sp.csr_matrix(rejected))


def null_flips(n_pairs: int, runs: int, seed: int) -> list[np.ndarray]:
    """One seeded random half of the pairs per run (each pair flipped with probability ½)."""
    rng = np.random.default_rng(seed + NULL_SEED_OFFSET)
    return [rng.random(n_pairs) < 0.5 for _ in range(runs)]


@dataclass
class NullSummary:
    runs: int
    observed: int  # heads the real audit confirms
    confirmed: list[int] = field(default_factory=list)  # per null run
    confirmed_mean: float = 0.0
    confirmed_p95: float = 0.0
    false_discovery_share: float | None = None  # null mean / observed (None when nothing is confirmed)
    # Single concepts significant on discovery per run: under this null every one is false, so the
    # share of runs with any (the FDR of Benjamini-Hochberg under the global null) should be ≤ α.
    significant: list[int] = field(default_factory=list)
    runs_with_any_significant: float = 0.0

    @classmethod
    def from_counts(cls, observed: int, counts: list[int], significant: list[int] | None = None) -> NullSummary:
        values = np.asarray(counts, dtype=float)
        mean = float(values.mean()) if len(values) else 0.0
        significant = [int(s) for s in significant or []]
        return cls(
            runs=len(counts),
            observed=observed,
            confirmed=[int(c) for c in counts],
            confirmed_mean=mean,
            confirmed_p95=float(np.percentile(values, 95)) if len(values) else 0.0,
            false_discovery_share=min(1.0, mean / observed) if observed else None,
            significant=significant,
            runs_with_any_significant=float(np.mean([s > 0 for s in significant])) if significant else 0.0,
        )

    def sentence(self) -> str:
        null = (
            f"On shuffled preferences (chosen and rejected swapped in a random half of the pairs, {self.runs} runs) "
            f"this audit confirms {self.confirmed_mean:.1f} heads on average (95th percentile "
            f"{self.confirmed_p95:g})"
        )
        if self.false_discovery_share is None:
            return f"{null}; here it confirms none."
        return (
            f"{null}; here it confirms {self.observed}: about {self.false_discovery_share:.0%} of them could be chance."
        )


def significant_count(concepts: pd.DataFrame, alpha: float) -> int:
    """Single concepts (SAE features and probes) significant on discovery."""
    single = ~concepts["kind"].isin(["family", "head"]).to_numpy()
    return int((single & (concepts["q_value"].to_numpy() < alpha)).sum())


def confirmed_count(concepts: pd.DataFrame, kind: str = "head") -> int:
    """Confirmed rows of ``kind``: the heads, the queue a researcher acts on."""
    if "confirmed" not in concepts:
        return 0
    return int((concepts["confirmed"].to_numpy(dtype=bool) & (concepts["kind"] == kind).to_numpy()).sum())
