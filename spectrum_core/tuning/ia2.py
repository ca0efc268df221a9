"""IA2 priming: before supervised tuning, train the LoRA weights of the query, key and output
projections so that the model without demonstrations reproduces its own self-attention outputs
with in-context demonstrations (mean squared error over all layers), as in the paper's code
(aamixsh/ia2):

- Teacher: the model with the adapter disabled, on [k demonstrations + query]; it answers the
  query greedily, ``n_tokens`` tokens (the paper's default: 1, the answer's first token).
- Student: the model with the adapter, on [query + the teacher's answer].
- Aligned positions: those that predict the teacher's answer tokens, from the query's last token
  on (the position a single-token label is read from), never the answer's own last token.

The teacher's outputs at those positions are computed once, before training. Ordinary tuning then
continues with the same adapter (its other modules included).

This loop is written here because no maintained library trains activation alignment between two
context conditions of one model.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from ..audit.extract.activations import decoder_layers

IA2_MODULES = ("q_proj", "k_proj", "o_proj")


@dataclass
class IA2Item:
    teacher_prefix: list[int]  # demonstrations + query, up to the answer
    student_prefix: list[int]  # the query alone
    answer: list[int] = field(default_factory=list)  # the teacher's own greedy answer (teach_items)
    targets: list[torch.Tensor] = field(default_factory=list, repr=False)  # per block, at the aligned positions

    @property
    def student_ids(self) -> list[int]:
        return self.student_prefix + self.answer[:-1]

    @property
    def teacher_ids(self) -> list[int]:
        return self.teacher_prefix + self.answer[:-1]


def ia2_items(tokenizer, records: list[dict], n_demos: int, seed: int, max_length: int) -> list[IA2Item]:
    """One item per record: the record's prompt, with ``n_demos`` other records (prompt and chosen
    response) as earlier turns for the teacher. A record's optional ``group`` keeps records of the
    same group out of its demonstrations (e.g. the same question with another answer)."""
    rng = random.Random(seed)

    def prefix(messages):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    items = []
    for index, record in enumerate(records):
        group = record.get("group")
        others = [r for j, r in enumerate(records) if j != index and (group is None or r.get("group") != group)]
        demos = rng.sample(others, min(n_demos, len(others)))
        context = []
        for demo in demos:
            context += list(demo["prompt"]) + [{"role": "assistant", "content": demo["chosen"][0]["content"]}]
        teacher = prefix(context + list(record["prompt"]))
        if len(teacher) >= max_length:
            continue
        items.append(IA2Item(teacher, prefix(list(record["prompt"]))))
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


@torch.no_grad()
def teach_items(model, tokenizer, items: list[IA2Item], n_tokens: int = 1) -> list[IA2Item]:
    """Fill each item's answer (the teacher's greedy ``n_tokens``, stopping at the end token) and
    the teacher's attention outputs at the positions that predict it. The adapter is disabled."""
    if n_tokens < 1:
        raise ValueError("IA2 aligns at least one answer token")
    model.eval()
    device = next(model.parameters()).device
    with model.disable_adapter():
        for item in items:
            ids = list(item.teacher_prefix)
            answer: list[int] = []
            for _ in range(n_tokens):
                logits = model(input_ids=torch.tensor([ids], device=device), use_cache=False).logits
                token = int(logits[0, -1].argmax())
                answer.append(token)
                ids.append(token)
                if token == tokenizer.eos_token_id:
                    break
            item.answer = answer
            with attention_outputs(model) as teacher:
                _forward(model, item.teacher_ids)
            item.targets = [t[0, -len(answer) :].float() for t in teacher]
    return items


def ia2_loss(model, item: IA2Item) -> torch.Tensor:
    """Mean over blocks of the squared error between the student's attention outputs and the
    teacher's at the positions that predict the answer."""
    if not item.targets:
        raise ValueError("IA2 item without the teacher's outputs: run teach_items first")
    with attention_outputs(model) as student:
        _forward(model, item.student_ids)
    n = len(item.answer)
    losses = [torch.nn.functional.mse_loss(s[0, -n:].float(), t) for s, t in zip(student, item.targets)]
    return torch.stack(losses).mean()


def ia2_parameters(model) -> list[torch.nn.Parameter]:
    return [p for name, p in model.named_parameters() if "lora_" in name and any(f".{m}." in name for m in IA2_MODULES)]


def ia2_prime(
    model, items: list[IA2Item], steps: int, learning_rate: float, progress=None, seed: int = 0
) -> list[float]:
    """Train the q/k/o LoRA weights on taught items (``teach_items``), visiting them in a seeded
    shuffled order each pass; returns the loss per step."""
    parameters = ia2_parameters(model)
    if not parameters:
        raise ValueError("IA2 priming needs LoRA on q_proj, k_proj and o_proj (lora_target all-linear)")
    if not items:
        raise ValueError("IA2 priming has no items: every demonstration context was longer than max_length")
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0)
    model.train()
    rng = random.Random(seed)
    order: list[int] = []
    losses = []
    for step in range(steps):
        if not order:
            order = rng.sample(range(len(items)), len(items))
        loss = ia2_loss(model, items[order.pop()])
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
