"""Activation extraction: the right tokens, the right layer, early stop, sharding and resume."""

from __future__ import annotations

import pytest
import torch

from spectrum_core.audit.errors import AuditInputError
from spectrum_core.audit.extract.activations import (
    ActivationConfig,
    ActivationStore,
    decoder_layers,
    default_layer,
    extract_activations,
    matmul_params,
    tokenize_pairs,
)

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


def _both_ways(loaded, pairs, config, store_dtype):
    """Every response's residuals, by response index: with each pair's prompt run once (shared)
    and with each response run whole, over the same batches' worth of pairs."""
    from spectrum_core.audit.extract.activations import _plan, pair_residuals, residuals

    records = tokenize_pairs(loaded.tokenizer, pairs, config)
    out = []
    for share in (True, False):
        plan_config = ActivationConfig(**{**config.__dict__, "share_prompts": share})
        extract = pair_residuals if share else residuals
        by_response = {}
        for shard in _plan(records, plan_config):
            got = extract(loaded, records, shard, config.layer, plan_config, lambda n: None, store_dtype=store_dtype)
            offsets = got["offsets"]
            for row, response in enumerate(got["responses"].tolist()):
                by_response[response] = got["acts"][offsets[row] : offsets[row + 1]]
        out.append(by_response)
    return out


def test_shared_prompts_equal_whole_responses_exactly_in_float32(tiny_model, hh_pairs):
    """Prompts of different lengths in one batch (left padding, masked, positions per prompt) and
    responses of different lengths (right padding): the same residuals as running each response
    with its prompt, to float32 rounding."""
    config = ActivationConfig(layer=2, shard_size=12, tokens_per_batch=4096, max_prompt_tokens=96)
    shared, whole = _both_ways(tiny_model, hh_pairs.head(12), config, torch.float32)
    assert sorted(shared) == sorted(whole) == list(range(24))
    for response in whole:
        torch.testing.assert_close(shared[response], whole[response], atol=1e-5, rtol=1e-5)


def test_shared_prompts_equal_whole_responses_on_real_hh_pairs(bundled_model, hh_pairs):
    """The bundled model in bfloat16 on real multi-turn HH pairs: equal to bfloat16 tolerance
    (different product shapes round differently), with the same mean activation per response."""
    config = ActivationConfig(layer=default_layer(bundled_model.model), shard_size=16, max_prompt_tokens=128)
    shared, whole = _both_ways(bundled_model, hh_pairs.head(8), config, torch.bfloat16)
    assert sorted(shared) == sorted(whole) == list(range(16))
    for response in whole:
        a, b = shared[response].float(), whole[response].float()
        scale = b.norm(dim=-1).median()
        assert (a - b).norm(dim=-1).max() < 0.05 * scale, response
        torch.testing.assert_close(a.mean(0), b.mean(0), atol=0.02 * float(scale) / a.shape[1] ** 0.5, rtol=0.05)


@pytest.mark.parametrize("world_size", [2, 3])
def test_processes_split_an_uneven_dataset_each_pair_exactly_once(tiny_model, hh_pairs, tmp_path, world_size):
    """Under `accelerate launch` process r writes the shards whose number is r modulo the process
    count: with 13 pairs (26 responses, 7 shards of 4, which divides by neither 2 nor 3) every
    response lands in exactly one shard, and the folder equals a one-process run's."""
    pairs = hh_pairs.head(13)
    config = ActivationConfig(layer=2, shard_size=4, tokens_per_batch=1024, max_prompt_tokens=96)
    for rank in range(world_size):  # the ranks one after another, into one folder
        extract_activations(tiny_model, pairs, tmp_path / "split", config, rank=rank, world_size=world_size)
    split = ActivationStore(tmp_path / "split")
    assert split.is_complete() and split.n_shards == 7
    seen = [response for response, _, _ in split.iter_responses()]
    assert sorted(seen) == list(range(26))  # each once: no rank repeats another's rows
    single = extract_activations(tiny_model, pairs, tmp_path / "single", config)
    for index in range(single.n_shards):
        a, b = split.load_shard(index), single.load_shard(index)
        assert torch.equal(a["responses"], b["responses"]) and torch.equal(a["acts"], b["acts"])


def _extract_as_rank(rank: int, port: int, budgets: list[int], model: str, pairs, folder: str, report: str) -> None:
    """One of two processes of a multi-process run (the environment `accelerate launch` sets), whose
    own batch budget is ``budgets[rank]``: what unequal free GPU memory gives, injected."""
    import os
    import traceback
    from functools import partial

    import spectrum_core.audit.extract.activations as activations
    from spectrum_core.stages.distributed import agreed_minimum, distributed_state

    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        from spectrum_core.models import load_model

        loaded = load_model(model, device="cpu", dtype="float32", allow_download=False)
        state = distributed_state()
        activations.batch_token_budget = lambda *args, **kwargs: budgets[rank]
        config = ActivationConfig(layer=2, shard_size=4, max_prompt_tokens=96)  # budget: none given
        activations.extract_activations(
            loaded, pairs, folder, config, rank=rank, world_size=2, agree=partial(agreed_minimum, state)
        )
        state.wait_for_everyone()
    except BaseException:
        with open(report, "w") as handle:
            handle.write(traceback.format_exc())
        raise


def test_processes_with_unequal_free_memory_agree_on_one_batch_budget(tiny_model, hh_pairs, tmp_path):
    """Each process sizes its batches from its own GPU's free memory; all use the least (so it fits
    every GPU), the one figure in the shared manifest, and the folder equals a one-process run's
    at that budget. (Each writing its own figure failed: the manifests differed.)"""
    import multiprocessing
    import socket

    with socket.socket() as probe:  # a free port for the processes' rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pairs, budgets = hh_pairs.head(10), [3072, 1024]
    model = tmp_path / "tiny"  # the processes load it (a model that ran with hooks does not pickle)
    tiny_model.model.save_pretrained(model)
    tiny_model.tokenizer.save_pretrained(model)
    context = multiprocessing.get_context("spawn")
    reports = [tmp_path / f"rank-{rank}.txt" for rank in range(2)]
    processes = [
        context.Process(
            target=_extract_as_rank,
            args=(rank, port, budgets, str(model), pairs, str(tmp_path / "two"), str(reports[rank])),
        )
        for rank in range(2)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    failures = "\n".join(path.read_text() for path in reports if path.exists())
    assert [process.exitcode for process in processes] == [0, 0], failures
    two = ActivationStore(tmp_path / "two")
    assert two.is_complete() and two.manifest["config"]["tokens_per_batch"] == min(budgets)
    config = ActivationConfig(layer=2, shard_size=4, max_prompt_tokens=96, tokens_per_batch=min(budgets))
    one = extract_activations(tiny_model, pairs, tmp_path / "one", config)
    for index in range(one.n_shards):
        a, b = two.load_shard(index), one.load_shard(index)
        assert torch.equal(a["responses"], b["responses"]) and torch.equal(a["acts"], b["acts"])
