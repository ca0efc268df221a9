"""The response layout: 2i chosen, 2i + 1 rejected, and the tie order of rankings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from spectrum_core.audit.responses import (
    interleave,
    other_side,
    pair_of,
    ranked,
    response_index,
    response_texts,
    side_first,
    side_name,
    split_sides,
)


def test_interleave_puts_each_pairs_chosen_row_before_its_rejected_row():
    chosen = sp.csr_matrix(np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 5.0]]))
    rejected = sp.csr_matrix(np.array([[0.0, 7.0], [4.0, 0.0], [0.0, 6.0]]))
    both = interleave(chosen, rejected).toarray()
    np.testing.assert_array_equal(both, [[1, 0], [0, 7], [2, 0], [4, 0], [3, 5], [0, 6]])
    c, r = split_sides(both)
    np.testing.assert_array_equal(c, chosen.toarray())
    np.testing.assert_array_equal(r, rejected.toarray())


def test_index_arithmetic_round_trips():
    responses = np.arange(10)
    np.testing.assert_array_equal(response_index(pair_of(responses), responses % 2), responses)
    np.testing.assert_array_equal(other_side(other_side(responses)), responses)
    assert pair_of(other_side(7)) == pair_of(7) and side_name(6) == "chosen" and side_name(7) == "rejected"
    pairs = pd.DataFrame({"chosen": ["c0", "c1"], "rejected": ["r0", "r1"]})
    assert response_texts(pairs) == ["c0", "r0", "c1", "r1"]


def test_ties_rank_the_chosen_side_first_then_the_lower_pair():
    # responses 0..5: pair 0 (0, 1), pair 1 (2, 3), pair 2 (4, 5)
    values = np.array([1.0, 3.0, 3.0, 0.0, 1.0, 3.0])
    # 3.0 at 1 (rejected, pair 0), 2 (chosen, pair 1), 5 (rejected, pair 2): chosen first
    np.testing.assert_array_equal(ranked(values)[:3], [2, 1, 5])
    np.testing.assert_array_equal(ranked(values)[3:], [0, 4, 3])
    np.testing.assert_array_equal(side_first(np.array([5, 0, 3, 4])), [0, 4, 3, 5])
