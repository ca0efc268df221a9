"""The one layout of responses: response ``2·i`` is pair ``i``'s chosen response and ``2·i + 1``
its rejected one. Tokenised records, activation shards, per-response features, cards and labels
all number responses this way; these helpers are the only place the arithmetic is written.

Where responses are ranked and two have the same value, the chosen side comes first, then the
lower pair (:func:`side_first`): a rule, so rankings never depend on how a matrix was stacked.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

SIDES = ("chosen", "rejected")  # side 0, side 1


def response_index(pair: Any, side: Any) -> Any:
    return 2 * pair + side


def pair_of(response: Any) -> Any:
    return response // 2


def side_of(response: Any) -> Any:
    """0 for a chosen response, 1 for a rejected one."""
    return response % 2


def side_name(response: int) -> str:
    return SIDES[int(side_of(response))]


def other_side(response: Any) -> Any:
    """The same pair's other response."""
    return response ^ 1


def split_sides(per_response: Any) -> tuple[Any, Any]:
    """Rows of a per-response array (or matrix) as (chosen, rejected), one row per pair each."""
    return per_response[0::2], per_response[1::2]


def interleave(chosen: sp.spmatrix, rejected: sp.spmatrix) -> sp.csr_matrix:
    """Pairs × columns chosen and rejected matrices as one responses × columns matrix."""
    n_pairs = chosen.shape[0]
    stacked = sp.vstack([chosen, rejected]).tocsr()
    order = np.empty(2 * n_pairs, dtype=np.int64)
    order[0::2], order[1::2] = np.arange(n_pairs), n_pairs + np.arange(n_pairs)
    return stacked[order]


def response_texts(pairs: pd.DataFrame) -> list[str]:
    """Every response's text in response order."""
    texts: list[str] = [""] * (2 * len(pairs))
    texts[0::2], texts[1::2] = list(pairs["chosen"]), list(pairs["rejected"])
    return texts


def side_first(responses: np.ndarray) -> np.ndarray:
    """``responses`` ordered chosen side first, then by pair (the tie order of every ranking)."""
    responses = np.asarray(responses)
    return responses[np.lexsort((pair_of(responses), side_of(responses)))]


def ranked(values: np.ndarray) -> np.ndarray:
    """Response indices by ``values`` (one per response), largest first; ties chosen side first,
    then by pair."""
    responses = np.arange(len(values))
    return np.lexsort((pair_of(responses), side_of(responses), -np.asarray(values)))
