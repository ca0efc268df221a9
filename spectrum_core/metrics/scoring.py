"""Teacher-forced scoring: the log-probability a model gives each token of a sequence, with the
probability and identity of its top choice (for calibration)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class TokenScores:
    """For positions 1..n−1 of one sequence: log p(token | prefix), the top token's probability
    and whether the top token is the actual one."""

    logprob: np.ndarray
    top_prob: np.ndarray
    top_correct: np.ndarray


@torch.no_grad()
def score_tokens(model, sequences: list[list[int]], pad_id: int, batch_size: int = 4) -> list[TokenScores]:
    device = next(model.parameters()).device
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    results: list[TokenScores | None] = [None] * len(sequences)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(sequences[i]) for i in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, index in enumerate(chunk):
            ids[row, : len(sequences[index])] = torch.tensor(sequences[index])
            mask[row, : len(sequences[index])] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        for row, index in enumerate(chunk):
            n = len(sequences[index])
            logp = torch.log_softmax(logits[row, : n - 1].float(), dim=-1)
            target = ids[row, 1:n].to(device)
            top = logp.max(dim=-1)
            results[index] = TokenScores(
                logprob=logp.gather(1, target[:, None]).squeeze(1).cpu().numpy(),
                top_prob=top.values.exp().cpu().numpy(),
                top_correct=(top.indices == target).cpu().numpy(),
            )
    return results  # type: ignore[return-value]


def continuation_logprobs(
    model, tokenizer, prefixes: list[str], continuations: list[str], batch_size: int = 8, max_length: int | None = None
) -> np.ndarray:
    """log p(continuation | prefix) summed over the continuation's tokens, for each pair (a
    sequence longer than ``max_length`` scores only the continuation tokens that fit)."""
    sequences, starts = [], []
    for prefix, continuation in zip(prefixes, continuations):
        head = tokenizer(prefix, add_special_tokens=False)["input_ids"]
        tail = tokenizer(continuation, add_special_tokens=False)["input_ids"]
        if max_length is not None:
            head = head[-(max_length - 1) :]
            tail = tail[: max(1, max_length - len(head))]
        sequences.append(head + tail)
        starts.append(len(head))
    scores = score_tokens(model, sequences, tokenizer.pad_token_id, batch_size)
    # logprob[j] scores token j+1, so the continuation's tokens are logprob[start-1:].
    return np.array([float(s.logprob[start - 1 :].sum()) for s, start in zip(scores, starts)])
