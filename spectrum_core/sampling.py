"""Sampling chat responses (ReSet's candidates, the evaluation's generations): batched,
left-padded, optionally seeded, greedy at temperature 0."""

from __future__ import annotations

from typing import Any

import torch


@torch.no_grad()
def sample_responses(
    model,
    tokenizer,
    prompts: list[list[dict]],
    *,
    n: int = 1,
    temperature: float = 1.0,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    seed: int | None = 0,
    top_k: int | None = 0,
    on_batch=None,
) -> list[list[str]]:
    """``n`` responses per prompt (chat messages), each as decoded text without special tokens.

    ``seed``: sample from this seed (the global RNG state is restored after); None samples from
    the current state. ``top_k``: 0 samples from the whole distribution; None leaves the model's
    generation config to decide."""
    device = next(model.parameters()).device
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    jobs = [(i, text) for i, text in enumerate(texts) for _ in range(n)]
    results: list[list[str]] = [[] for _ in prompts]
    generator_state = torch.random.get_rng_state()
    if seed is not None:
        torch.manual_seed(seed)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start : start + batch_size]
            batch = tokenizer([t for _, t in chunk], return_tensors="pt", padding=True, add_special_tokens=False).to(
                device
            )
            sampling: dict[str, Any] = (
                {"do_sample": True, "temperature": temperature, "top_p": 1.0}
                if temperature > 0
                else {"do_sample": False}
            )
            if temperature > 0 and top_k is not None:
                sampling["top_k"] = top_k
            generated = model.generate(
                **batch,
                **sampling,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            new = generated[:, batch["input_ids"].shape[1] :]
            for (owner, _), text in zip(chunk, tokenizer.batch_decode(new, skip_special_tokens=True)):
                results[owner].append(text.strip())
            if on_batch:
                on_batch(min(start + batch_size, len(jobs)), len(jobs))
    finally:
        tokenizer.padding_side = side
        if seed is not None:
            torch.random.set_rng_state(generator_state)
    return results
