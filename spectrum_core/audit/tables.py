"""The audit's per-response and per-pair tables as written to disk: feature cards (each concept's
strongest responses with its activation on every token) and the pair features in long form."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .extract.activations import ActivationStore
from .extract.features import (
    ResponseFeatures,
    column_slices,
    encode_selected,
    token_activations,
    top_responses,
)
from .responses import other_side, pair_of, side_name, side_of
from .stats.pairs import BLOCK_NNZ

CARD_COLUMNS = [
    "concept_id",
    "role",
    "rank",
    "pair_id",
    "side",
    "activation",
    "other_activation",
    "tokens",
    "token_activations",
]
# A card's rows: its ``top_examples`` strongest responses ("fires", rank 1…) and one contrast,
# "silent": the response of the pair where the concept fires most strongly on one side and not at
# all on the other (rank 0), so the reader compares two answers to one prompt.
ROLES = ("fires", "silent")

# (concept column, response) -> (token ids, the concept's activation on each token); see
# token_evidence and family_evidence.
Evidence = Callable[[list[tuple[int, int, float]]], dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]]


def _token_strings(tokenizer, ids: np.ndarray, cache: dict[int, str]) -> list[str]:
    out = []
    for token_id in ids.tolist():
        if token_id not in cache:
            cache[token_id] = tokenizer.decode([token_id])
        out.append(cache[token_id])
    return out


def silent_contrasts(
    chosen: sp.csr_matrix, rejected: sp.csr_matrix, block_nnz: int = BLOCK_NNZ
) -> list[tuple[int, int, float]]:
    """(concept column, silent response, activation on its pair's other response) per concept
    that fires on one side of some pair and is zero on the other: the pair where that other side
    fires most (ties: the chosen side firing first, then the lower pair); column block by column
    block (``column_slices``)."""
    out = []
    for c0, chosen_block, rejected_block in column_slices(sp.csr_matrix(chosen), sp.csr_matrix(rejected), block_nnz):
        best: dict[int, tuple[float, int]] = {}
        for fires_side, (fires, other) in enumerate(((chosen_block, rejected_block), (rejected_block, chosen_block))):
            seen = sp.csr_matrix(other, copy=True)
            seen.data[:] = 1.0
            only = sp.csr_matrix(fires - fires.multiply(seen)).tocoo()
            keep = only.data > 0
            order = np.lexsort((only.row[keep], -only.data[keep], only.col[keep]))
            cols, pairs_, values = only.col[keep][order], only.row[keep][order], only.data[keep][order]
            first = np.unique(cols, return_index=True)[1]
            for col, pair, value in zip(cols[first].tolist(), pairs_[first].tolist(), values[first].tolist()):
                silent = 2 * pair + (1 - fires_side)
                if col not in best or value > best[col][0]:
                    best[col] = (value, silent)
        out += [(col + c0, silent, value) for col, (value, silent) in sorted(best.items())]
    return out


def response_values(chosen: sp.csr_matrix, rejected: sp.csr_matrix, responses: np.ndarray, columns: np.ndarray):
    """The value of each (response, column): response 2i reads chosen's row i, 2i+1 rejected's
    (no interleaved copy of both matrices)."""
    values = np.zeros(len(responses))
    for side, matrix in enumerate((chosen, rejected)):
        on_side = side_of(responses) == side
        if on_side.any():
            values[on_side] = np.asarray(matrix[pair_of(responses[on_side]), columns[on_side]]).ravel()
    return values


def token_evidence(features: ResponseFeatures, store: ActivationStore | None = None) -> Evidence:
    """Token mode: the streamed evidence (``features``), and for a response it does not hold (a
    silent contrast: all zeros) its token ids from ``store``."""

    def evidence(wanted: list[tuple[int, int, float]]) -> dict:
        held = [w for w in wanted if w[1] in features.token_ids]
        per_token = token_activations(features, held)
        out = {(f, r): (features.token_ids[r], per_token[(f, r)]) for f, r, _ in held}
        missing = sorted({r for _, r, _ in wanted if r not in features.token_ids})
        ids = encode_selected(store, None, np.array(missing), np.zeros(0, np.int64)) if store and missing else {}
        for f, r, _ in wanted:
            if (f, r) not in out and r in ids:
                out[(f, r)] = (ids[r][0], np.zeros(len(ids[r][0]), dtype=np.float32))
        return out

    return evidence


def family_evidence(store: ActivationStore, sae, weights: sp.csr_matrix) -> Evidence:
    """Families: the token-mode members' activations on every token combined as the family score
    combines them (``weights``: token latents × families, a member's weight in its family), so a
    family card is shaded by what carries it; members of other modes (difference, probes) have no
    tokens and add nothing to the shading. The responses are encoded again (``encode_selected``)."""
    weights = sp.csc_matrix(weights)
    latents = np.flatnonzero(np.diff(sp.csr_matrix(weights).indptr) > 0)  # token latents in some family

    def evidence(wanted: list[tuple[int, int, float]]) -> dict:
        encoded = encode_selected(store, sae, np.array(sorted({r for _, r, _ in wanted})), latents)
        member_weights = sp.csr_matrix(weights[latents])
        out = {}
        for family, response, _ in wanted:
            ids, acts = encoded[response]
            scores = acts @ member_weights[:, [family]]
            out[(family, response)] = (ids, np.asarray(scores.todense(), dtype=np.float32).ravel())
        return out

    return evidence


def feature_cards(
    mode: str, chosen, rejected, pairs, tokenizer, n_top: int, evidence: Evidence | None = None
) -> pd.DataFrame:
    """Rows (``CARD_COLUMNS``) of every concept's card: its ``n_top`` strongest responses and its
    silent contrast, each with the other response's activation, tokens and token activations
    (empty without ``evidence``)."""
    chosen, rejected = sp.csr_matrix(chosen), sp.csr_matrix(rejected)
    fires = top_responses(chosen, rejected, n_top)
    silent = silent_contrasts(chosen, rejected)
    per_token = evidence(fires + silent) if evidence is not None else {}
    wanted = [(role, *w) for role, ws in (("fires", fires), ("silent", silent)) for w in ws]
    features = np.array([w[1] for w in wanted], dtype=np.int64)
    responses = np.array([w[2] for w in wanted], dtype=np.int64)
    own = response_values(chosen, rejected, responses, features)
    other = response_values(chosen, rejected, other_side(responses), features)
    decode_cache: dict[int, str] = {}
    rows = []
    rank_in_feature: dict[int, int] = {}
    for (role, feature, response, _), value, other_value in zip(wanted, own.tolist(), other.tolist()):
        rank = 0
        if role == "fires":
            rank = rank_in_feature[feature] = rank_in_feature.get(feature, 0) + 1
        ids, acts = per_token.get((feature, response), (np.zeros(0, np.int64), np.zeros(0, np.float32)))
        rows.append(
            {
                "concept_id": f"{mode}:{feature}",
                "role": role,
                "rank": rank,
                "pair_id": pairs["pair_id"].iat[pair_of(response)],
                "side": side_name(response),
                "activation": value,
                "other_activation": other_value,
                "tokens": _token_strings(tokenizer, ids, decode_cache),
                "token_activations": acts.tolist(),
            }
        )
    return pd.DataFrame(rows, columns=CARD_COLUMNS)


def pair_feature_table(
    concept_prefix: str,
    chosen: sp.csr_matrix,
    rejected: sp.csr_matrix,
    pair_ids: np.ndarray,
    names: list[str] | None = None,
) -> pd.DataFrame:
    """Nonzero (pair, concept) cells of chosen and rejected, with Δ."""
    union = (abs(chosen) + abs(rejected)).tocoo()
    rows, cols = union.row, union.col
    # Fancy indexing with no cells gives back a sparse matrix, not an empty array.
    c = np.asarray(chosen[rows, cols]).ravel() if len(rows) else np.zeros(0)
    r = np.asarray(rejected[rows, cols]).ravel() if len(rows) else np.zeros(0)
    concept = (
        np.array([f"{concept_prefix}:{n}" for n in names])[cols]
        if names is not None
        else np.char.add(f"{concept_prefix}:", cols.astype(str))
    )
    return pd.DataFrame(
        {
            "pair_id": pair_ids[rows],
            "concept_id": concept,
            "chosen": c.astype(np.float32),
            "rejected": r.astype(np.float32),
            "delta": (c - r).astype(np.float32),
        }
    )


# Pairs per piece of the long table written at once (about 1M rows, ~150 MB of strings at
# hundreds of latents a response): all 100k pairs at once would hold ~100M rows of strings.
PAIRS_PER_PIECE = 1_000


def write_pair_features(
    path: Path,
    pair_ids: np.ndarray,
    parts: Iterable[tuple[str, sp.csr_matrix, sp.csr_matrix, list[str] | None]],
) -> None:
    """The long table of every part (concept prefix, chosen, rejected, feature names or None) in
    one parquet file, written ``PAIRS_PER_PIECE`` pairs at a time: the same rows in the same order
    as concatenating each part's ``pair_feature_table``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("pair_id", pa.string()),
            ("concept_id", pa.string()),
            ("chosen", pa.float32()),
            ("rejected", pa.float32()),
            ("delta", pa.float32()),
        ]
    )
    with pq.ParquetWriter(str(path), schema) as writer:
        for prefix, chosen, rejected, names in parts:
            chosen, rejected = sp.csr_matrix(chosen), sp.csr_matrix(rejected)
            for start in range(0, chosen.shape[0], PAIRS_PER_PIECE):
                rows = slice(start, start + PAIRS_PER_PIECE)
                piece = pair_feature_table(prefix, chosen[rows], rejected[rows], pair_ids[rows], names)
                writer.write_table(pa.Table.from_pandas(piece, schema=schema, preserve_index=False))
