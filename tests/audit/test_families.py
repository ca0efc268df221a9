"""Concept families: the clustering groups concepts that move together and nothing else."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from spectrum_core.audit.families import (
    MIN_SIMILARITY,
    delta_correlation,
    effect_size,
    family_scores,
    find_families,
    representatives,
)


def planted(seed: int = 0, n_pairs: int = 400):
    """Three hidden concepts, each carried by several noisy nonnegative features on each side,
    plus independent noise features and one feature that moves against concept 0."""
    rng = np.random.default_rng(seed)
    hidden_c = rng.random((n_pairs, 3)) < 0.4
    hidden_r = rng.random((n_pairs, 3)) < 0.4
    groups = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    columns_c, columns_r = [], []
    for g in groups:
        for hidden, out in ((hidden_c, columns_c), (hidden_r, columns_r)):
            out.append(hidden[:, g] * rng.uniform(0.5, 2.0, n_pairs) * (rng.random(n_pairs) < 0.9))
    for _ in range(6):  # noise
        columns_c.append((rng.random(n_pairs) < 0.3) * rng.random(n_pairs))
        columns_r.append((rng.random(n_pairs) < 0.3) * rng.random(n_pairs))
    columns_c.append(hidden_r[:, 0] * 1.0)  # the opposite of concept 0: fires where concept 0's Δ is negative
    columns_r.append(hidden_c[:, 0] * 1.0)
    chosen = sp.csr_matrix(np.column_stack(columns_c))
    rejected = sp.csr_matrix(np.column_stack(columns_r))
    return chosen, rejected, groups


def test_delta_correlation_matches_numpy_and_zeroes_constant_columns():
    rng = np.random.default_rng(1)
    dense = rng.normal(size=(50, 6)) * (rng.random((50, 6)) < 0.5)
    dense[:, 4] = 0.0
    dense[:, 5] = 3.0  # constant but nonzero
    r = delta_correlation(sp.csr_matrix(dense))
    expected = np.corrcoef(dense[:, :4], rowvar=False)
    np.testing.assert_allclose(r[:4, :4], expected, atol=1e-10)
    assert np.all(r[4] == 0) and np.all(r[:, 5] == 0)


def test_planted_groups_become_families_and_opposites_stay_apart():
    chosen, rejected, groups = planted()
    n = chosen.shape[1]
    found = find_families(chosen, rejected, np.full(n, "token", dtype=object), np.arange(n))
    families = found.family
    for g in set(groups):
        members = [j for j, gg in enumerate(groups) if gg == g]
        assert len({families[j] for j in members}) == 1, f"concept {g} split over families: {families[members]}"
    planted_families = {families[j] for j in range(len(groups))}
    assert len(planted_families) == 3
    noise = range(len(groups), len(groups) + 6)
    assert not any(families[j] in planted_families for j in noise)
    assert families[n - 1] != families[0]  # moves against concept 0: never in its family
    for f in range(found.n_families):
        assert found.mean_similarity(f) >= MIN_SIMILARITY - 1e-9
    # Numbered by their best-ranked member: the first candidate is in family 0.
    assert families[0] == 0


def test_candidates_and_rare_concepts_are_left_out():
    chosen, rejected, _ = planted()
    n = chosen.shape[1]
    rare_c = sp.lil_matrix((chosen.shape[0], 1))
    rare_c[0, 0] = 1.0
    chosen = sp.hstack([chosen, rare_c]).tocsr()
    rejected = sp.hstack([rejected, sp.csr_matrix((chosen.shape[0], 1))]).tocsr()
    found = find_families(chosen, rejected, np.full(n + 1, "token", dtype=object), np.array([0, 1, 2, n]))
    assert list(found.family[3:]) == [-1] * (n + 1 - 3)
    assert found.family[n] == -1  # differs in one pair only
    assert found.family[0] == found.family[1] == found.family[2] == 0


def test_decoder_cosine_joins_features_of_one_mode_only():
    rng = np.random.default_rng(2)
    n_pairs = 300
    chosen = sp.csr_matrix((rng.random((n_pairs, 3)) < 0.3) * rng.random((n_pairs, 3)))
    rejected = sp.csr_matrix((rng.random((n_pairs, 3)) < 0.3) * rng.random((n_pairs, 3)))
    modes = np.array(["token", "token", "difference"], dtype=object)
    direction = rng.normal(size=8)
    apart = find_families(chosen, rejected, modes, np.arange(3))
    assert len(set(apart.family)) == 3
    decoders = {"token": (np.array([0, 1]), np.stack([direction, direction + 0.01]))}
    joined = find_families(chosen, rejected, modes, np.arange(3), decoders)
    assert joined.family[0] == joined.family[1] != joined.family[2]


def test_family_score_is_the_weighted_sum_and_the_representative_is_a_member():
    chosen, rejected, groups = planted()
    n = chosen.shape[1]
    found = find_families(chosen, rejected, np.full(n, "token", dtype=object), np.arange(n))
    scores = family_scores(chosen, found).toarray()
    f = found.family[0]
    members = found.members(f)
    both = np.vstack([chosen.toarray(), rejected.toarray()])
    expected = sum(chosen.toarray()[:, j] / both[:, j].std() for j in members)
    np.testing.assert_allclose(scores[:, f], expected)
    family_delta = family_scores(chosen, found) - family_scores(rejected, found)
    reps = representatives(chosen - rejected, found, family_delta)
    for family in range(found.n_families):
        assert reps[family] in found.members(family)


def test_effect_size_is_mean_over_sd_of_delta():
    delta = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [-1.0, 0.0]])
    expected = delta[:, 0].mean() / delta[:, 0].std()
    np.testing.assert_allclose(effect_size(sp.csr_matrix(delta)), [expected, 0.0])


def test_column_moments_of_a_csc_matrix_read_block_by_block_are_the_same_bits(monkeypatch):
    """CSC moments are summed a few columns at a time to bound memory; every column adds the same
    values in the same order, so the sums equal the whole matrix's exactly (with a row mask too)."""
    import scipy.sparse as sp

    from spectrum_core.audit import families
    from spectrum_core.audit.stats.pairs import column_blocks

    rng = np.random.default_rng(5)
    matrix = sp.random(300, 40, density=0.3, format="csc", random_state=rng, dtype=np.float32)
    rows = rng.random(300) < 0.7
    whole = [families._coordinate_moments(matrix, r) for r in (None, rows)]
    monkeypatch.setattr(families, "column_blocks", lambda indptr: column_blocks(indptr, target_nnz=50))
    assert len(families.column_blocks(matrix.indptr)) > 10
    for expected, r in zip(whole, (None, rows)):
        for got, want in zip(families._column_moments(matrix, r), expected):
            assert got.tobytes() == want.tobytes()
