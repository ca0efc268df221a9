"""Weighted DPO mechanics on a tiny random Llama: the weighted loss is TRL's loss when all weights
are 1, and a pair of weight 0 is exactly a dropped pair (same loss, same gradients)."""

from __future__ import annotations

import copy

import pytest
import torch
from datasets import Dataset
from trl import DPOTrainer

from spectrum_core.tuning.weighted_dpo import WeightedDPOTrainer, fit_pair, weighted_dpo_config


@pytest.fixture
def pairs(hh_dataset):
    frame = hh_dataset.pairs
    size = frame["prompt"].map(lambda p: sum(len(m["content"]) for m in p)) + frame["chosen"].str.len()
    rows = frame.loc[size.sort_values().index[:3]]  # the three shortest real pairs
    return [
        {
            "prompt": list(r.prompt),
            "chosen": [{"role": "assistant", "content": r.chosen}],
            "rejected": [{"role": "assistant", "content": r.rejected}],
        }
        for r in rows.itertuples()
    ]


def make_trainer(cls, tiny_model, records, tmp_path, max_length=256):
    args = weighted_dpo_config(
        output_dir=str(tmp_path / cls.__name__),
        per_device_train_batch_size=3,
        max_length=max_length,
        use_cpu=True,
        bf16=False,
        seed=0,
        beta=0.5,
    )
    model = copy.deepcopy(tiny_model.model).train()
    trainer = cls(model, args=args, train_dataset=Dataset.from_list(records), processing_class=tiny_model.tokenizer)
    # Move the policy away from the reference (whose log-probs are now precomputed), the same way
    # for every trainer, so that losses differ from log 2 and depend on the pairs.
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return trainer


def loss_and_grads(trainer, rows):
    trainer.model.zero_grad()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in rows])
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    return loss.item(), [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]


def test_all_ones_matches_trl(tiny_model, pairs, tmp_path):
    ours = make_trainer(WeightedDPOTrainer, tiny_model, [dict(p, weight=1.0) for p in pairs], tmp_path)
    trl = make_trainer(DPOTrainer, tiny_model, pairs, tmp_path)
    loss_ours, grads_ours = loss_and_grads(ours, [0, 1, 2])
    loss_trl, grads_trl = loss_and_grads(trl, [0, 1, 2])
    assert loss_ours == pytest.approx(loss_trl, rel=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads_ours, grads_trl))


def test_weight_zero_equals_dropping_the_pair(tiny_model, pairs, tmp_path):
    weighted = make_trainer(
        WeightedDPOTrainer, tiny_model, [dict(p, weight=w) for p, w in zip(pairs, (1.0, 0.0, 2.0))], tmp_path
    )
    dropped = make_trainer(
        WeightedDPOTrainer, tiny_model, [dict(pairs[0], weight=1.0), dict(pairs[2], weight=2.0)], tmp_path
    )
    loss_w, grads_w = loss_and_grads(weighted, [0, 1, 2])
    loss_d, grads_d = loss_and_grads(dropped, [0, 1])
    assert loss_w == pytest.approx(loss_d, rel=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads_w, grads_d))
    # And the weight matters: the same pairs with equal weights give a different loss.
    equal = make_trainer(WeightedDPOTrainer, tiny_model, [dict(p, weight=1.0) for p in pairs], tmp_path)
    assert loss_and_grads(equal, [0, 1, 2])[0] != pytest.approx(loss_w, rel=1e-4)


def test_reference_log_probs_are_computed_once(tiny_model, pairs, tmp_path):
    trainer = make_trainer(WeightedDPOTrainer, tiny_model, [dict(p, weight=1.0) for p in pairs], tmp_path)
    assert {"ref_chosen_logps", "ref_rejected_logps", "weight"} <= set(trainer.train_dataset.column_names)
    calls = []
    original = trainer.compute_ref_log_probs
    trainer.compute_ref_log_probs = lambda *a, **k: calls.append(1) or original(*a, **k)
    trainer.train()
    assert calls == []  # training read the precomputed values


def test_fit_pair_keeps_the_prompt_end_and_the_responses_start():
    prompt, chosen, rejected = list(range(100)), [1000 + i for i in range(30)], [2000 + i for i in range(10)]
    assert fit_pair(prompt, chosen, rejected, 200) == (prompt, chosen, rejected)  # fits: untouched
    assert fit_pair(prompt, chosen, rejected, 64) == (list(range(66, 100)), chosen, rejected)  # 64 - 30 = 34
    long_chosen = [1000 + i for i in range(90)]
    # the responses would leave the prompt 4 tokens: it keeps half the budget, the responses the rest
    assert fit_pair(prompt, long_chosen, rejected, 64) == (list(range(68, 100)), long_chosen[:32], rejected)
    assert fit_pair(prompt[:5], long_chosen, rejected, 64) == (prompt[:5], long_chosen[:59], rejected)


def test_a_pair_whose_prompt_fills_max_length_is_trained_on_not_dropped(tiny_model, pairs, tmp_path):
    """TRL's default drops such pairs before training; the weighted trainer keeps every pair and
    cuts the prompt from the left, so each side still has response tokens to learn from."""
    records = [dict(p, weight=1.0) for p in pairs]
    tokenizer = tiny_model.tokenizer
    longest_prompt = max(
        len(tokenizer(tokenizer.apply_chat_template(r["prompt"], tokenize=False))["input_ids"]) for r in records
    )
    assert longest_prompt > 20
    trainer = make_trainer(WeightedDPOTrainer, tiny_model, records, tmp_path, max_length=longest_prompt - 4)
    assert len(trainer.train_dataset) == len(records)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(records))])
    assert batch["input_ids"].shape[1] <= longest_prompt - 4
    assert (batch["completion_mask"].sum(dim=1) > 0).all()


def test_the_trainer_reports_its_preparation_and_chunked_tokenization_changes_nothing(
    tiny_model, pairs, tmp_path, monkeypatch
):
    """The tokenization and the reference log-probs run inside the trainer's constructor, before
    any training step: both report their counts; tokenizing a chunk at a time gives the same rows."""
    from spectrum_core.tuning import weighted_dpo

    records = [dict(p, weight=1.0) for p in pairs]
    whole = make_trainer(WeightedDPOTrainer, tiny_model, records, tmp_path / "whole")
    reports = []
    monkeypatch.setattr(weighted_dpo, "TOKENIZE_CHUNK", 1)  # three pairs: three chunks
    original = WeightedDPOTrainer.__init__
    monkeypatch.setattr(
        WeightedDPOTrainer,
        "__init__",
        lambda self, *a, **k: original(self, *a, preparing=lambda *r: reports.append(r), **k),
    )
    chunked = make_trainer(WeightedDPOTrainer, tiny_model, records, tmp_path / "chunked")
    tokenizing = [r for r in reports if r[0] == weighted_dpo.TOKENIZE_STEP]
    assert [r[1:] for r in tokenizing] == [(0, 3, "pairs"), (1, 3, "pairs"), (2, 3, "pairs"), (3, 3, "pairs")]
    reference = [r for r in reports if r[0] == weighted_dpo.REFERENCE_STEP]
    assert [r[1:3] for r in reference] == [(0, 1), (1, 1), (1, 1)]  # one batch of three, and its end
    assert reports.index(tokenizing[-1]) < reports.index(reference[0])
    for column in ("prompt_ids", "chosen_ids", "rejected_ids", "weight"):
        assert list(chunked.train_dataset[column]) == list(whole.train_dataset[column])
    for column in ("ref_chosen_logps", "ref_rejected_logps"):
        assert list(chunked.train_dataset[column]) == pytest.approx(list(whole.train_dataset[column]), abs=1e-5)
