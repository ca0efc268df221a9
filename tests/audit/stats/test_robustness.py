"""The SAE-seed check's per-family share of retrained SAEs that find the family again."""

import weakref

import numpy as np
import scipy.sparse as sp

from spectrum_core.audit.stats.robustness import SEED_MATCH_SHARE, seed_stability


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
    stability = seed_stability(family, reference, members, seeds)
    assert stability[0] == 0.5 and np.isnan(stability[1])
    # Only the matching seed: found in every seed; a threshold the seed cannot reach: in none.
    assert seed_stability(family, reference, members, seeds[:1])[0] == 1.0
    assert seed_stability(family, reference, members, seeds[1:])[0] == 0.0
    assert 0 < SEED_MATCH_SHARE < 1
    assert np.isnan(seed_stability(family, reference, members, [])).all()


def test_seeds_from_a_generator_are_read_one_at_a_time():
    family, reference, seeds = _deltas()
    members = [np.array([0]), np.array([0])]
    previous: list[weakref.ref] = []
    alive_when_next_made: list[bool] = []

    def one_by_one():
        for seed in seeds:
            copy = seed.copy()
            alive_when_next_made.extend(ref() is not None for ref in previous)
            previous.append(weakref.ref(copy.data))
            yield copy
            del copy

    got = seed_stability(family, reference, members, one_by_one())
    np.testing.assert_array_equal(got, seed_stability(family, reference, members, seeds))
    assert alive_when_next_made == [False]  # the first seed's Δ was freed before the second was made
