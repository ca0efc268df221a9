"""Audit fixtures: real HH pairs for real behaviour (the tiny random Llama is in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def hh_pairs(hh_dataset):
    return hh_dataset.pairs


@pytest.fixture(scope="session")
def store_and_sae(tiny_model, hh_dataset, tmp_path_factory):
    """Activations of 30 HH pairs from the tiny Llama in shards of 8 responses (so streaming work
    crosses shards), and a random 256-latent TopK SAE: any SAE is fine for equality tests."""
    import torch

    from spectrum_core.audit.extract.activations import ActivationConfig, extract_activations
    from spectrum_core.audit.sae import _training_sae

    config = ActivationConfig(
        layer=2, shard_size=8, tokens_per_batch=1024, max_prompt_tokens=64, max_response_tokens=96
    )
    store = extract_activations(tiny_model, hh_dataset.pairs.head(30), tmp_path_factory.mktemp("acts"), config)
    torch.manual_seed(0)
    return store, _training_sae(64, 256, 8, "cpu", "", "")
