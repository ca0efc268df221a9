"""SAE training and loading through sae-lens."""

from __future__ import annotations

import json

import pytest
import torch

from spectrum_core.audit.sae import (
    SAELoadError,
    SAETrainingConfig,
    choose_k,
    choose_width,
    evaluate_sae,
    load_pretrained_sae,
    train_sae,
)


def planted_tokens(n: int = 20_000, d: int = 64, n_atoms: int = 128, k: int = 4, seed: int = 0):
    """Tokens that are sparse positive mixtures of known directions: an SAE should find them."""
    generator = torch.Generator().manual_seed(seed)
    atoms = torch.nn.functional.normalize(torch.randn(n_atoms, d, generator=generator), dim=1)
    which = torch.stack([torch.randperm(n_atoms, generator=generator)[:k] for _ in range(n)])
    weights = torch.rand(n, k, generator=generator) * 3 + 1
    tokens = (weights[..., None] * atoms[which]).sum(1) + 5.0 * atoms[0]  # plus a constant offset
    return tokens.to(torch.bfloat16), atoms


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tokens, atoms = planted_tokens()
    folder = tmp_path_factory.mktemp("sae")
    sae, metrics = train_sae(
        tokens,
        folder,
        SAETrainingConfig(width=256, k=4, training_tokens=400_000),
        model_name="synthetic",
        hook="blocks.2.hook_resid_post",
    )
    return sae, metrics, folder, tokens, atoms


def test_training_recovers_planted_structure(trained):
    sae, metrics, _, tokens, atoms = trained
    assert metrics["explained_variance"] > 0.85, metrics
    assert metrics["mean_l0"] == pytest.approx(4.0)
    assert metrics["dead_fraction"] < 0.5
    # Most planted directions have a decoder row pointing the same way.
    cosine = torch.nn.functional.normalize(sae.W_dec.detach(), dim=1) @ atoms.T
    assert (cosine.max(0).values > 0.9).float().mean() > 0.7


def test_saved_in_sae_lens_inference_format(trained):
    from sae_lens import SAE

    sae, metrics, folder, tokens, _ = trained
    config = json.loads((folder / "cfg.json").read_text())
    assert config["architecture"] == "topk" and config["d_sae"] == 256
    assert config["metadata"]["hook_name"] == "blocks.2.hook_resid_post"
    again = SAE.load_from_disk(str(folder))
    x = tokens[:512].float()
    torch.testing.assert_close(again.encode(x), sae.encode(x))
    assert evaluate_sae(again, tokens)["explained_variance"] == pytest.approx(metrics["explained_variance"], abs=1e-4)


def test_pretrained_load_path_checks_model_and_layer(trained):
    _, _, folder, _, _ = trained
    sae = load_pretrained_sae(str(folder), d_model=64, hook="blocks.2.hook_resid_post")
    assert sae.cfg.d_sae == 256
    with pytest.raises(SAELoadError, match="64-dimensional"):
        load_pretrained_sae(str(folder), d_model=576, hook="blocks.2.hook_resid_post")
    with pytest.raises(SAELoadError, match="--layer"):
        load_pretrained_sae(str(folder), d_model=64, hook="blocks.3.hook_resid_post")
    with pytest.raises(SAELoadError, match="neither a folder nor RELEASE:ID"):
        load_pretrained_sae("no-such-sae", d_model=64, hook="x")


def test_sizes_follow_the_amount_of_data():
    assert choose_width(40_000) == 512  # not 4,608: most of those would die on 40k tokens
    assert choose_width(200_000) == 4096
    assert choose_width(100_000_000) == 16384
    assert choose_k(512) == 16 and choose_k(4096) == 32
