"""Streaming encoding: shard by shard it gives what encoding every response in memory gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spectrum_core.audit.extract.features import encode_responses, encode_side, token_activations, top_responses
from spectrum_core.audit.responses import split_sides


@torch.no_grad()
def in_memory(store, sae):
    """Every response encoded whole: its max and mean pooling and every token's activations."""
    n = store.manifest["n_responses"]
    max_pool, mean_pool = np.zeros((n, 256), np.float32), np.zeros((n, 256), np.float32)
    per_token = {}
    for response, _, acts in store.iter_responses():
        features = sae.encode(acts.float()).float().numpy()
        max_pool[response], mean_pool[response] = features.max(0), features.mean(0)
        per_token[response] = features
    return max_pool, mean_pool, per_token


@pytest.mark.parametrize("pooling", ["max", "mean"])
def test_streamed_encoding_equals_encoding_in_memory(store_and_sae, pooling):
    store, sae = store_and_sae
    max_pool, mean_pool, per_token = in_memory(store, sae)
    other = "mean" if pooling == "max" else "max"
    streamed = encode_responses(store, sae, poolings=(pooling, other), evidence_top=3, chunk=100)
    for name, expected in (("max", max_pool), ("mean", mean_pool)):
        for got, want in zip(streamed.pooled(name), split_sides(expected)):
            np.testing.assert_allclose(got.toarray(), want, rtol=1e-5, atol=1e-6)
    wanted = top_responses(*streamed.pooled(pooling), 3)
    assert len(wanted) > 256  # most latents have three responses
    for (latent, response), values in token_activations(streamed, wanted).items():
        np.testing.assert_allclose(values, per_token[response][:, latent], rtol=1e-5, atol=1e-6)
        assert streamed.token_ids[response].shape == values.shape
    # Only evidence that can still be on a card is kept: far fewer cells than the tokens have.
    all_cells = sum(int((features > 0).sum()) for features in per_token.values())
    assert len(streamed.token_value) < all_cells / 2


@pytest.mark.parametrize("pooling", ["max", "mean"])
def test_one_side_at_a_time_gives_that_sides_pooled_rows(store_and_sae, pooling):
    store, sae = store_and_sae
    max_pool, mean_pool, _ = in_memory(store, sae)
    expected = split_sides(max_pool if pooling == "max" else mean_pool)
    for side in (0, 1):
        blocks = list(encode_side(store, sae, side, pooling=pooling, chunk=7))
        assert len(blocks) > 1  # the shards of 8 responses are read one at a time
        pairs = np.concatenate([p for p, _ in blocks])
        assert sorted(pairs.tolist()) == list(range(30))  # every pair's response of that side, once
        for block_pairs, block in blocks:
            np.testing.assert_allclose(block.toarray(), expected[side][block_pairs], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="max or mean"):
        next(encode_side(store, sae, 0, pooling="median"))


def test_no_evidence_is_kept_when_none_is_asked_for(store_and_sae):
    store, sae = store_and_sae
    pooled_only = encode_responses(store, sae)
    assert len(pooled_only.token_value) == 0 and not pooled_only.token_ids
    with pytest.raises(ValueError, match="pooled by max only"):
        pooled_only.pooled("mean")
    assert (pooled_only.response_tokens == store.response_lengths()).all()


def test_training_tokens_are_a_seeded_sample_beyond_the_cap(store_and_sae):
    store, _ = store_and_sae
    everything, info = store.training_tokens()
    capped, capped_info = store.training_tokens(max_tokens=100, seed=1)
    again, _ = store.training_tokens(max_tokens=100, seed=1)
    assert capped.shape == (100, 64) and len(everything) == info["n_tokens"] - info["n_outliers"]
    assert torch.equal(capped, again)
    # Every sampled row is one of the usable tokens, in store order.
    rows = {tuple(row.tolist()) for row in everything.float()}
    assert all(tuple(row.tolist()) in rows for row in capped.float())
