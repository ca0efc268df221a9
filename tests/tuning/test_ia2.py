"""IA2 priming on a tiny random Llama: the loss falls, the attention outputs without
demonstrations move toward the ones with them (on items not trained on too), and so does the
distribution of the answer's first token, read at the query's last position."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model

from spectrum_core.tuning.ia2 import (
    attention_outputs,
    ia2_distance,
    ia2_items,
    ia2_loss,
    ia2_parameters,
    ia2_prime,
    teach_items,
)


@pytest.fixture
def records(hh_dataset):
    frame = hh_dataset.pairs
    size = frame["prompt"].map(lambda p: sum(len(m["content"]) for m in p)) + frame["chosen"].str.len()
    rows = frame.loc[size.sort_values().index[:12]]
    return [
        {"prompt": list(r.prompt), "chosen": [{"role": "assistant", "content": r.chosen}]} for r in rows.itertuples()
    ]


def _lora(tiny_model):
    torch.manual_seed(0)
    return get_peft_model(
        copy.deepcopy(tiny_model.model),
        LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"),
    )


def test_ia2_moves_attention_toward_the_in_context_ones(tiny_model, records):
    model = _lora(tiny_model)
    items = teach_items(model, tiny_model.tokenizer, ia2_items(tiny_model.tokenizer, records, 2, 0, 2048), n_tokens=3)
    train, held_out = items[:8], items[8:]
    assert len(held_out) >= 2 and all(len(i.teacher_prefix) > len(i.student_prefix) for i in items)
    # The teacher's own greedy answer; the positions predicting it are aligned, its last token never read.
    assert all(1 <= len(i.answer) <= 3 and i.student_ids[-len(i.answer) + 1 :] == i.answer[:-1] for i in items)
    assert all(t.shape[0] == len(i.answer) for i in items for t in i.targets)
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


def _answer_divergence(model, items) -> float:
    """Mean KL(teacher ‖ student) of the next-token distribution after the query: with
    demonstrations and no adapter, against without them and with it."""
    total = 0.0
    with torch.no_grad():
        for item in items:
            with model.disable_adapter():
                teacher = model(input_ids=torch.tensor([item.teacher_prefix])).logits[0, -1].log_softmax(-1)
            student = model(input_ids=torch.tensor([item.student_prefix])).logits[0, -1].log_softmax(-1)
            total += float(torch.sum(teacher.exp() * (teacher - student)))
    return total / len(items)


def test_ia2_aligns_the_position_a_single_token_answer_is_read_from(tiny_model, records):
    """With one answer token (the paper's default) the loss compares the attention outputs at the
    query's last token, the position a single-token label is predicted from (an earlier version
    compared the answer token's own position, which predicts only what follows the label), and
    priming moves the no-demonstration distribution there toward the in-context one."""
    model = _lora(tiny_model)
    items = teach_items(model, tiny_model.tokenizer, ia2_items(tiny_model.tokenizer, records, 2, 0, 2048))
    assert all(len(i.answer) == 1 and i.student_ids == i.student_prefix for i in items)
    for item in items[:3]:
        with torch.no_grad():
            with model.disable_adapter(), attention_outputs(model) as teacher:
                model(input_ids=torch.tensor([item.teacher_prefix]))
            with attention_outputs(model) as student:
                model(input_ids=torch.tensor([item.student_prefix]))
            by_hand = torch.stack([((s[0, -1] - t[0, -1]) ** 2).mean() for s, t in zip(student, teacher)]).mean()
            assert float(ia2_loss(model, item)) == pytest.approx(float(by_hand), rel=1e-5)
    before = _answer_divergence(model, items)
    ia2_prime(model, items, steps=40, learning_rate=5e-3, seed=0)
    assert _answer_divergence(model, items) < 0.5 * before


def test_a_resumed_run_starts_tuning_from_the_primed_adapter(tiny_model, records, tmp_path):
    """The primed adapter is saved once; a run resumed before its first checkpoint loads it
    instead of tuning a fresh adapter without priming."""
    from spectrum_core.tuning.config import SpectrumRunConfig
    from spectrum_core.tuning.trainers import _ia2_priming

    config = SpectrumRunConfig(ia2_priming=True, ia2_steps=3, ia2_demos=2, ia2_learning_rate=5e-3, max_length=512)
    primed = _lora(tiny_model)
    _ia2_priming(primed, tiny_model.tokenizer, config, records, tmp_path, None)
    resumed = _lora(tiny_model)
    lora = [n for n, _ in primed.named_parameters() if "lora_B" in n and ".q_proj." in n]
    assert any(not torch.equal(primed.get_parameter(n), resumed.get_parameter(n)) for n in lora)
    _ia2_priming(resumed, tiny_model.tokenizer, config, records, tmp_path, None)
    assert all(torch.equal(primed.get_parameter(n), resumed.get_parameter(n)) for n in lora)
