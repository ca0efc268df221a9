"""The SAE-seed check's per-family share of retrained SAEs that find the family again, and the
streamed correlation it reads a retrained SAE's Δ through."""

import numpy as np
import pytest
import scipy.sparse as sp

from spectrum_core.audit.families import cross_correlation
from spectrum_core.audit.stats.robustness import (
    SEED_MATCH_SHARE,
    StreamedDeltaCorrelation,
    best_member_correlation,
    seed_stability,
)


def _deltas(seed: int = 0):
    rng = np.random.default_rng(seed)
    n_pairs = 400
    family = rng.normal(size=(n_pairs, 2))  # two families
    reference = np.column_stack([family[:, 0] + 0.3 * rng.normal(size=n_pairs), rng.normal(size=n_pairs)])
    # Seed A has a latent as aligned with family 0 as its member; seed B has only noise.
    seed_a = np.column_stack([rng.normal(size=n_pairs), family[:, 0] + 0.3 * rng.normal(size=n_pairs)])
    seed_b = rng.normal(size=(n_pairs, 3))
    return sp.csc_matrix(family), sp.csc_matrix(reference), [sp.csc_matrix(seed_a), sp.csc_matrix(seed_b)]


def test_the_share_of_seeds_that_find_a_family_again():
    family, reference, seeds = _deltas()
    members = [np.array([0]), np.array([], dtype=np.int64)]  # family 1 has no SAE member (probes only)
    best_own = best_member_correlation(family, reference, members)
    assert 0.9 < best_own[0] < 1 and np.isnan(best_own[1])
    seeds_best = [cross_correlation(family, seed).max(axis=1) for seed in seeds]
    stability = seed_stability(best_own, seeds_best)
    assert stability[0] == 0.5 and np.isnan(stability[1])
    # Only the matching seed: found in every seed; a threshold the seed cannot reach: in none.
    assert seed_stability(best_own, seeds_best[:1])[0] == 1.0
    assert seed_stability(best_own, seeds_best[1:])[0] == 0.0
    assert 0 < SEED_MATCH_SHARE < 1
    assert np.isnan(seed_stability(best_own, [])).all()


def test_seeds_from_a_generator_are_read_one_at_a_time():
    family, reference, seeds = _deltas()
    best_own = best_member_correlation(family, reference, [np.array([0]), np.array([0])])
    made: list[int] = []

    def one_by_one():
        for index, seed in enumerate(seeds):
            made.append(index)
            yield cross_correlation(family, seed).max(axis=1)

    got = seed_stability(best_own, one_by_one())
    assert made == [0, 1]
    np.testing.assert_array_equal(
        got, seed_stability(best_own, [cross_correlation(family, s).max(axis=1) for s in seeds])
    )


def _paired(seed: int = 1, n_pairs: int = 300, n_latents: int = 40):
    """Sparse chosen and rejected latents (some shared per pair, some constant or empty columns)
    and two family Δ columns that follow latent 0."""
    rng = np.random.default_rng(seed)

    def side():
        values = rng.exponential(size=(n_pairs, n_latents)) * (rng.random((n_pairs, n_latents)) < 0.3)
        values[:, -1] = 0.0  # a latent that never fires
        values[:, -2] = 1.0  # one that fires equally everywhere
        return values.astype(np.float32)

    chosen, rejected = side(), side()
    delta = chosen.astype(np.float64) - rejected
    family = np.column_stack([delta[:, 0] + rng.normal(size=n_pairs), rng.normal(size=n_pairs)])
    return chosen, rejected, sp.csc_matrix(family)


@pytest.mark.parametrize("block", [1, 7, 300])
def test_streamed_correlation_equals_the_correlation_of_the_whole_delta(block):
    chosen, rejected, family = _paired()
    n_pairs = chosen.shape[0]
    expected = cross_correlation(family, sp.csc_matrix(chosen.astype(np.float64) - rejected))
    streamed = StreamedDeltaCorrelation(family, chosen.shape[1])
    rng = np.random.default_rng(2)  # each side's pairs arrive in its own order, as shards sorted by length do
    for side, add in ((chosen, streamed.add_chosen), (rejected, streamed.add_rejected)):
        order = rng.permutation(n_pairs)
        for start in range(0, n_pairs, block):
            pairs = order[start : start + block]
            add(pairs, sp.csr_matrix(side[pairs]))
    got = streamed.correlation()
    np.testing.assert_allclose(got, expected, atol=1e-9)
    assert abs(got[0, 0]) > 0.3 and (got[:, -2:] == 0).all()  # constant latents correlate with nothing


def test_a_chosen_block_after_the_rejected_ones_is_refused():
    chosen, rejected, family = _paired()
    streamed = StreamedDeltaCorrelation(family, chosen.shape[1])
    streamed.add_chosen(np.arange(10), sp.csr_matrix(chosen[:10]))
    streamed.add_rejected(np.arange(10), sp.csr_matrix(rejected[:10]))
    with pytest.raises(RuntimeError, match="chosen block"):
        streamed.add_chosen(np.arange(10, 20), sp.csr_matrix(chosen[10:20]))
