"""Activation extraction: the right tokens, the right layer, early stop, sharding and resume."""

from __future__ import annotations

import pytest
import torch

from spectrum_core.audit.activations import (
    ActivationConfig,
    ActivationStore,
    decoder_layers,
    default_layer,
    extract_activations,
    matmul_params,
    tokenize_pairs,
)
from spectrum_core.audit.errors import AuditInputError

CONFIG = ActivationConfig(layer=2, shard_size=8, tokens_per_batch=1024, max_prompt_tokens=96)


def test_only_response_tokens_are_kept(tiny_model, hh_pairs, tmp_path):
    pairs = hh_pairs.head(12)
    store = extract_activations(tiny_model, pairs, tmp_path, CONFIG)
    assert store.is_complete() and store.manifest["n_responses"] == 24
    tokenizer = tiny_model.tokenizer
    seen = set()
    for response, token_ids, acts in store.iter_responses():
        pair = pairs.iloc[response // 2]
        text = pair["chosen"] if response % 2 == 0 else pair["rejected"]
        assert token_ids.tolist() == tokenizer(text, add_special_tokens=False)["input_ids"][:512]
        assert acts.shape == (len(token_ids), 64)
        seen.add(response)
        assert store.response_lengths()[response] == len(token_ids)
    assert seen == set(range(24))


def test_activations_equal_an_unpadded_full_forward(tiny_model, hh_pairs, tmp_path):
    pairs = hh_pairs.head(6)
    store = extract_activations(tiny_model, pairs, tmp_path, CONFIG)
    records = {r["response"]: r for r in tokenize_pairs(tiny_model.tokenizer, pairs, CONFIG)}
    for response, _, acts in store.iter_responses():
        record = records[response]
        ids = torch.tensor([record["ids"]])
        with torch.no_grad():
            hidden = tiny_model.model(input_ids=ids, output_hidden_states=True).hidden_states
        # hidden_states[0] is the embedding, so block 2's output is hidden_states[3].
        expected = hidden[CONFIG.layer + 1][0, record["prefix"] :]
        torch.testing.assert_close(acts.float(), expected.to(torch.bfloat16).float(), atol=2e-2, rtol=2e-2)


def test_later_blocks_and_head_never_run(tiny_model, hh_pairs, tmp_path):
    calls = {"later": 0, "head": 0}
    later = decoder_layers(tiny_model.model)[CONFIG.layer + 1].register_forward_hook(
        lambda *a: calls.__setitem__("later", calls["later"] + 1)
    )
    head = tiny_model.model.lm_head.register_forward_hook(lambda *a: calls.__setitem__("head", calls["head"] + 1))
    try:
        extract_activations(tiny_model, hh_pairs.head(4), tmp_path, CONFIG)
    finally:
        later.remove()
        head.remove()
    assert calls == {"later": 0, "head": 0}


def test_interrupted_extraction_resumes_to_the_same_result(tiny_model, hh_pairs, tmp_path):
    pairs = hh_pairs.head(20)  # 40 responses -> 5 shards of 8
    whole = extract_activations(tiny_model, pairs, tmp_path / "whole", CONFIG)
    partial = extract_activations(tiny_model, pairs, tmp_path / "resumed", CONFIG, stop_after_shards=2)
    assert sum(p.exists() for p in partial.shard_paths()) == 2 and not partial.is_complete()
    resumed = extract_activations(tiny_model, pairs, tmp_path / "resumed", CONFIG)
    assert resumed.is_complete() and whole.n_shards == 5
    for a, b in zip(whole.iter_shards(), resumed.iter_shards()):
        assert a.keys() == b.keys()
        for name in a:
            assert torch.equal(a[name], b[name]), name


def test_sharding_across_processes(tiny_model, hh_pairs, tmp_path):
    pairs = hh_pairs.head(20)
    for rank in range(2):
        extract_activations(tiny_model, pairs, tmp_path / "split", CONFIG, rank=rank, world_size=2)
    whole = extract_activations(tiny_model, pairs, tmp_path / "whole", CONFIG)
    split = ActivationStore(tmp_path / "split")
    assert split.is_complete()
    for a, b in zip(whole.iter_shards(), split.iter_shards()):
        assert torch.equal(a["acts"], b["acts"])


def test_outliers_are_left_out_of_training_tokens(tiny_model, hh_pairs, tmp_path):
    store = extract_activations(tiny_model, hh_pairs.head(10), tmp_path, CONFIG)
    tokens, info = store.training_tokens(outlier_ratio=1.0)  # everything above the median is out
    assert info["n_outliers"] > 0 and tokens.shape[0] == info["n_tokens"] - info["n_outliers"]


def test_other_run_in_the_same_folder_is_refused(tiny_model, hh_pairs, tmp_path):
    extract_activations(tiny_model, hh_pairs.head(4), tmp_path, CONFIG)
    with pytest.raises(ValueError, match="different run"):
        extract_activations(tiny_model, hh_pairs.iloc[4:8], tmp_path, CONFIG)


def test_layer_checks_and_defaults(tiny_model, bundled_model, hh_pairs, tmp_path):
    assert default_layer(tiny_model.model) == 2 and default_layer(bundled_model.model) == 15
    with pytest.raises(AuditInputError, match="blocks 0..3"):
        extract_activations(tiny_model, hh_pairs.head(2), tmp_path, ActivationConfig(layer=4))
    # SmolLM2-135M: 3.54M matmul weights per block, 16 blocks up to the middle one.
    assert matmul_params(bundled_model.model, 15) == 56_623_104


def test_bundled_model_residual_norms(bundled_model, hh_pairs, tmp_path):
    """The real model's response tokens have norms near 160; the first position (never a
    response token) is the ~25,000-norm attention sink, so it is never stored."""
    store = extract_activations(
        bundled_model, hh_pairs.head(4), tmp_path, ActivationConfig(shard_size=8, max_prompt_tokens=64)
    )
    assert 100 < store.median_norm() < 250
    tokens, info = store.training_tokens()
    assert info["n_outliers"] == 0 and tokens.dtype == torch.bfloat16
