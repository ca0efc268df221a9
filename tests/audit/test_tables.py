"""Feature cards: every card's evidence (the family's shading, the silent contrast) and the
re-encoding of chosen responses it is built from."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from spectrum_core.audit.extract.features import encode_responses, encode_selected, top_responses
from spectrum_core.audit.tables import family_evidence, feature_cards, silent_contrasts, token_evidence
from tests.audit.extract.test_features import in_memory


def test_encode_selected_gives_the_chosen_latents_on_every_token(store_and_sae):
    store, sae = store_and_sae
    _, _, per_token = in_memory(store, sae)
    latents = np.array([3, 17, 200])
    encoded = encode_selected(store, sae, np.array([0, 5, 41]), latents, chunk=7)
    assert sorted(encoded) == [0, 5, 41]
    for response, (ids, acts) in encoded.items():
        assert acts.shape == (len(ids), 3)
        np.testing.assert_allclose(acts.toarray(), per_token[response][:, latents], rtol=1e-5, atol=1e-6)
    ids_only = encode_selected(store, None, np.array([5]), np.zeros(0, np.int64))
    np.testing.assert_array_equal(ids_only[5][0], encoded[5][0])


def test_a_family_card_is_shaded_by_its_members_weighted_as_its_score(store_and_sae, hh_dataset, tiny_model):
    """The family's token shading is the weighted sum of its members' token activations, the
    weights of its score; the strongest token of a one-token response equals its score."""
    store, sae = store_and_sae
    features = encode_responses(store, sae, evidence_top=0)
    chosen, rejected = features.pooled("max")
    fired = np.flatnonzero(np.asarray((chosen + rejected).sum(0)).ravel() > 0)
    members = {int(fired[0]): 0.5, int(fired[1]): 2.0}  # latent -> weight in family 0
    weights = sp.csr_matrix((list(members.values()), (list(members), [0, 0])), shape=(chosen.shape[1], 1))
    evidence = family_evidence(store, sae, weights)
    cards = feature_cards(
        "family", chosen @ weights, rejected @ weights, hh_dataset.pairs.head(30), tiny_model.tokenizer, 3, evidence
    )
    _, _, per_token = in_memory(store, sae)
    fires = cards[cards["role"] == "fires"]
    assert len(fires) == 3 and (fires["concept_id"] == "family:0").all()
    for _, row in fires.iterrows():
        response = 2 * list(hh_dataset.pairs["pair_id"].head(30)).index(row["pair_id"]) + (row["side"] == "rejected")
        expected = sum(w * per_token[response][:, latent] for latent, w in members.items())
        np.testing.assert_allclose(row["token_activations"], expected, rtol=1e-4, atol=1e-6)
        assert len(row["tokens"]) == len(expected) and max(row["token_activations"]) > 0
        # the score pools each member by its max: at least the strongest token, at most the sum of maxima
        assert max(expected) <= row["activation"] + 1e-5


def test_the_silent_contrast_is_the_pair_firing_most_on_one_side_only():
    chosen = sp.csr_matrix(np.array([[3.0, 0.0], [5.0, 1.0], [0.0, 0.0], [2.0, 4.0]], np.float32))
    rejected = sp.csr_matrix(np.array([[0.0, 2.0], [1.0, 0.0], [4.0, 0.0], [0.0, 0.0]], np.float32))
    # column 0: fires on chosen of pair 0 (3, rejected silent), chosen of pair 3 (2), rejected of pair 2 (4)
    # column 1: rejected of pair 0 (2, chosen silent), chosen of pair 1 (1), chosen of pair 3 (4)
    assert silent_contrasts(chosen, rejected) == [(0, 2 * 2, 4.0), (1, 2 * 3 + 1, 4.0)]
    # one column per block gives the same contrasts
    assert silent_contrasts(chosen, rejected, block_nnz=1) == silent_contrasts(chosen, rejected)


def test_card_lists_are_the_same_block_by_block_as_at_once():
    """``top_responses`` and ``silent_contrasts`` sort nonzeros column block by column block;
    tiny blocks (a few columns each) give exactly what one block over every column gives."""
    rng = np.random.default_rng(0)
    chosen, rejected = (
        sp.random(300, 90, density=0.1, format="csr", random_state=rng, dtype=np.float32) for _ in range(2)
    )
    chosen.data = np.round(chosen.data * 4) / 4 + 0.25  # ties, broken by side then pair
    at_once = 10**9
    for block_nnz in (1, 50, 700):
        assert top_responses(chosen, rejected, 3, block_nnz) == top_responses(chosen, rejected, 3, at_once)
        assert silent_contrasts(chosen, rejected, block_nnz) == silent_contrasts(chosen, rejected, at_once)
    assert len(top_responses(chosen, rejected, 3)) == 3 * 90


def test_token_cards_keep_their_evidence_and_add_the_silent_contrast(store_and_sae, hh_dataset, tiny_model):
    store, sae = store_and_sae
    features = encode_responses(store, sae, evidence_top=2)
    chosen, rejected = features.pooled("max")
    pairs = hh_dataset.pairs.head(30)
    cards = feature_cards("token", chosen, rejected, pairs, tiny_model.tokenizer, 2, token_evidence(features, store))
    fires, silent = cards[cards["role"] == "fires"], cards[cards["role"] == "silent"]
    assert len(fires) and len(silent)
    for _, row in fires.head(20).iterrows():
        assert max(row["token_activations"]) == pytest.approx(row["activation"], rel=1e-4)
    assert (silent["activation"] == 0).all() and (silent["other_activation"] > 0).all() and (silent["rank"] == 0).all()
    # a silent answer still shows its words: every token, none of them shaded
    assert all(len(t) > 0 and max(a) == 0 for t, a in zip(silent["tokens"], silent["token_activations"]))
