"""IA2 priming on a tiny random Llama: the loss falls and the attention outputs without
demonstrations move toward the ones with them, on items not trained on too."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model

from spectrum_core.tuning.ia2 import ia2_distance, ia2_items, ia2_parameters, ia2_prime


@pytest.fixture
def records(hh_dataset):
    frame = hh_dataset.pairs
    size = frame["prompt"].map(lambda p: sum(len(m["content"]) for m in p)) + frame["chosen"].str.len()
    rows = frame.loc[size.sort_values().index[:12]]
    return [
        {"prompt": list(r.prompt), "chosen": [{"role": "assistant", "content": r.chosen}]} for r in rows.itertuples()
    ]


def test_ia2_moves_attention_toward_the_in_context_ones(tiny_model, records):
    torch.manual_seed(0)
    model = get_peft_model(
        copy.deepcopy(tiny_model.model),
        LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    items = ia2_items(tiny_model.tokenizer, records, n_demos=2, seed=0, max_length=2048)
    train, held_out = items[:8], items[8:]
    assert len(held_out) >= 2 and all(len(i.teacher_ids) > len(i.student_ids) for i in items)
    names = {n for n, p in model.named_parameters() if any(p is q for q in ia2_parameters(model))}
    assert names and all(any(m in n for m in ("q_proj", "k_proj", "o_proj")) for n in names)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n and n not in names}

    before_train, before_held = ia2_distance(model, train), ia2_distance(model, held_out)
    losses = ia2_prime(model, train, steps=40, learning_rate=5e-3)
    after_train, after_held = ia2_distance(model, train), ia2_distance(model, held_out)
    assert sum(losses[-8:]) / 8 < 0.8 * sum(losses[:8]) / 8
    assert after_train < 0.8 * before_train
    assert after_held < before_held
    # Only the q/k/o adapters moved.
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
