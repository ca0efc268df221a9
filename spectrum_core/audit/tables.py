"""The audit's per-response and per-pair tables as written to disk: feature cards (each concept's
strongest responses with its activation on every token) and the pair features in long form."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .extract.features import (
    ResponseFeatures,
    token_activations,
    top_responses,
)
from .responses import pair_of, side_name


def _token_strings(tokenizer, ids: np.ndarray, cache: dict[int, str]) -> list[str]:
    out = []
    for token_id in ids.tolist():
        if token_id not in cache:
            cache[token_id] = tokenizer.decode([token_id])
        out.append(cache[token_id])
    return out


def feature_cards(
    mode: str, features: ResponseFeatures | None, chosen, rejected, pairs, tokenizer, n_top: int
) -> pd.DataFrame:
    """Rows (concept_id, rank, pair_id, side, activation, tokens, token_activations)."""
    wanted = top_responses(chosen, rejected, n_top)
    per_token = token_activations(features, wanted) if features is not None else {}
    decode_cache: dict[int, str] = {}
    rows = []
    rank_in_feature: dict[int, int] = {}
    for feature, response, value in wanted:
        rank_in_feature[feature] = rank_in_feature.get(feature, 0) + 1
        tokens, acts = [], []
        if features is not None:
            tokens = _token_strings(tokenizer, features.token_ids[response], decode_cache)
            acts = per_token[(feature, response)].tolist()
        rows.append(
            {
                "concept_id": f"{mode}:{feature}",
                "rank": rank_in_feature[feature],
                "pair_id": pairs["pair_id"].iat[pair_of(response)],
                "side": side_name(response),
                "activation": float(value),
                "tokens": tokens,
                "token_activations": acts,
            }
        )
    return pd.DataFrame(
        rows, columns=["concept_id", "rank", "pair_id", "side", "activation", "tokens", "token_activations"]
    )


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
