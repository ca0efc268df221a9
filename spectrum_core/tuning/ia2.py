"""IA2 priming: before supervised tuning, train the LoRA weights of the query, key and output
projections so that the model without demonstrations reproduces its own self-attention outputs
with in-context demonstrations (mean squared error over all layers at the response positions).

Teacher: the model with the adapter disabled, on [k demonstrations + query + response].
Student: the model with the adapter, on [query + response]. The response is tokenized on its own
and appended to both, so its positions line up from the end. Ordinary tuning then continues with
the same adapter (its other modules included).

This loop is written here because no maintained library trains activation alignment between two
context conditions of one model.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..audit.activations import decoder_layers

IA2_MODULES = ("q_proj", "k_proj", "o_proj")


@dataclass
class IA2Item:
    teacher_ids: list[int]
    student_ids: list[int]
    n_response: int


def ia2_items(tokenizer, records: list[dict], n_demos: int, seed: int, max_length: int) -> list[IA2Item]:
    """One item per record: the record's prompt and chosen response, with ``n_demos`` other
    records as earlier turns for the teacher."""
    rng = random.Random(seed)
    items = []
    for index, record in enumerate(records):
        others = [r for j, r in enumerate(records) if j != index]
        demos = rng.sample(others, min(n_demos, len(others)))
        context = []
        for demo in demos:
            context += list(demo["prompt"]) + [{"role": "assistant", "content": demo["chosen"][0]["content"]}]
        response_ids = tokenizer(record["chosen"][0]["content"], add_special_tokens=False)["input_ids"][:128]
        if not response_ids:
            continue

        def prefix(messages):
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return tokenizer(text, add_special_tokens=False)["input_ids"]

        student = prefix(list(record["prompt"])) + response_ids
        teacher = prefix(context + list(record["prompt"])) + response_ids
        if len(teacher) > max_length:
            continue
        items.append(IA2Item(teacher, student, len(response_ids)))
    return items


@contextmanager
def attention_outputs(model):
    """Collect every block's self-attention output during a forward pass."""
    captured: list[torch.Tensor] = []
    handles = []
    for layer in decoder_layers(model):

        def hook(module, args, output):
            captured.append(output[0] if isinstance(output, tuple) else output)

        handles.append(layer.self_attn.register_forward_hook(hook))  # type: ignore[union-attr]  # a Module
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def _forward(model, ids: list[int]):
    device = next(model.parameters()).device
    model(input_ids=torch.tensor([ids], device=device), use_cache=False)


def ia2_loss(model, item: IA2Item) -> torch.Tensor:
    with torch.no_grad(), model.disable_adapter(), attention_outputs(model) as teacher:
        _forward(model, item.teacher_ids)
    with attention_outputs(model) as student:
        _forward(model, item.student_ids)
    n = item.n_response
    losses = [torch.nn.functional.mse_loss(s[:, -n:].float(), t[:, -n:].float()) for s, t in zip(student, teacher)]
    return torch.stack(losses).mean()


def ia2_parameters(model) -> list[torch.nn.Parameter]:
    return [p for name, p in model.named_parameters() if "lora_" in name and any(f".{m}." in name for m in IA2_MODULES)]


def ia2_prime(model, items: list[IA2Item], steps: int, learning_rate: float, progress=None) -> list[float]:
    """Train the q/k/o LoRA weights; returns the loss per step."""
    parameters = ia2_parameters(model)
    if not parameters:
        raise ValueError("IA2 priming needs LoRA on q_proj, k_proj and o_proj (lora_target all-linear)")
    if not items:
        raise ValueError("IA2 priming has no items: every demonstration context was longer than max_length")
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0)
    model.train()
    losses = []
    for step in range(steps):
        loss = ia2_loss(model, items[step % len(items)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
        if progress:
            progress("ia2", step + 1, steps, unit="steps", loss=losses[-1])
    return losses


@torch.no_grad()
def ia2_distance(model, items: list[IA2Item]) -> float:
    """Mean IA2 loss over items (how far the student's attention outputs are from the ICL ones)."""
    return float(sum(ia2_loss(model, item) for item in items) / max(1, len(items)))
