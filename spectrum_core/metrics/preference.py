"""Preference and reward: a DPO policy's implicit-reward accuracy on held-out pairs, and the
shaped reward's view of generations (mean, and the tuned model's win rate against the base on
the same prompts)."""

from __future__ import annotations

import numpy as np

from ..tasks.spectrum_format import end_of_turn
from .scoring import continuation_logprobs


def _response_logprobs(
    model, tokenizer, prompts: list[list[dict]], responses: list[str], max_length: int, batch_size: int
) -> np.ndarray:
    prefixes = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    end = end_of_turn(tokenizer)
    return continuation_logprobs(model, tokenizer, prefixes, [r + end for r in responses], batch_size, max_length)


def implicit_reward_accuracy(
    policy, reference, tokenizer, pairs: list[dict], beta: float, max_length: int = 512, batch_size: int = 4
) -> dict:
    """Share of pairs where β·(log π − log π_ref)(chosen) > the same for rejected (DPO's implicit
    reward; the reference is the model the run started from)."""
    prompts = [p["prompt"] for p in pairs for _ in range(2)]
    responses = [r for p in pairs for r in (p["chosen"], p["rejected"])]
    policy_logp = _response_logprobs(policy, tokenizer, prompts, responses, max_length, batch_size)
    reference_logp = _response_logprobs(reference, tokenizer, prompts, responses, max_length, batch_size)
    rewards = beta * (policy_logp - reference_logp)
    margins = rewards[0::2] - rewards[1::2]
    return {
        "pairs": len(pairs),
        "accuracy": float((margins > 0).mean()) if len(pairs) else float("nan"),
        "mean_margin": float(margins.mean()) if len(pairs) else float("nan"),
        "beta": beta,
    }


def reward_comparison(base_scores: np.ndarray, tuned_scores: np.ndarray) -> dict:
    """Mean shaped reward of each model's generations and the tuned model's win rate (ties half)."""
    base_scores, tuned_scores = np.asarray(base_scores, float), np.asarray(tuned_scores, float)
    wins = (tuned_scores > base_scores).mean() + 0.5 * (tuned_scores == base_scores).mean()
    return {
        "base_mean": float(base_scores.mean()),
        "tuned_mean": float(tuned_scores.mean()),
        "win_rate": float(wins),
        "prompts": len(base_scores),
    }
