"""Audit fixtures: a tiny random Llama for fast mechanics, real HH pairs for real behaviour."""

from __future__ import annotations

import pytest
import torch

from spectrum_core.models import LoadedModel


@pytest.fixture(scope="session")
def tiny_model(bundled_model, tmp_path_factory):
    """A randomly initialised 4-block Llama with the bundled tokenizer, in float32."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(bundled_model.tokenizer), hidden_size=64,
                         intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=2048)
    model = LlamaForCausalLM(config).eval()
    folder = tmp_path_factory.mktemp("tiny-llama")
    return LoadedModel(model=model, tokenizer=bundled_model.tokenizer, spec="tiny-random",
                       path=folder, device="cpu", dtype=torch.float32)


@pytest.fixture(scope="session")
def hh_pairs(hh_dataset):
    return hh_dataset.pairs
