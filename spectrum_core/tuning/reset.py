"""ReSet: rejection sampling for continued self-instruction tuning.

Each round: for every training prompt sample K candidates over a grid of temperatures, score each
with the shaped reward (standardised over the round's candidates) plus the task scorers that
apply (faithfulness to the context for the HaluEval context-grounded prompts; the share of
constraints satisfied for prompts that carry checkable constraints), keep a prompt's best
candidate when its score clears the threshold, and continue supervised tuning on the kept set.
Acceptance rate and the mean score of kept vs all candidates are logged per round.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from ..tasks.halueval import halueval_questions
from ..tasks.scorers import constraints_satisfied, faithfulness, pick_constraints, with_constraints


@dataclass
class ReSetPrompt:
    messages: list[dict]
    kind: str  # "preference", "context" or "constraints"
    context: str | None = None
    reference: str | None = None  # the grounded answer, for context prompts
    constraints: list[str] = field(default_factory=list)


def build_prompts(
    records: list[dict], n_preference: int, n_context: int, n_constraint: int, seed: int
) -> list[ReSetPrompt]:
    """Prompts of the plan's train pairs (some with added constraints) and HaluEval items."""
    rng = random.Random(seed)
    picked = rng.sample(records, min(len(records), n_preference + n_constraint))
    prompts = [ReSetPrompt(list(r["prompt"]), "preference") for r in picked[:n_preference]]
    for record in picked[n_preference:]:
        constraints = pick_constraints(rng)
        messages = [dict(m) for m in record["prompt"]]
        messages[-1]["content"] = with_constraints(messages[-1]["content"], constraints)
        prompts.append(ReSetPrompt(messages, "constraints", constraints=[c.name for c in constraints]))
    return prompts + [
        ReSetPrompt(q.messages, "context", context=q.context, reference=q.grounded_answer)
        for q in halueval_questions(n_context, seed)
    ]


def task_score(prompt: ReSetPrompt, response: str) -> float:
    if prompt.kind == "context":
        return faithfulness(response, prompt.context or "")
    if prompt.kind == "constraints":
        return constraints_satisfied(response, prompt.constraints)
    return 0.0


def combine_scores(reward: np.ndarray, task: np.ndarray, reward_weight: float, task_weight: float) -> np.ndarray:
    """Reward standardised over the round's candidates, plus the task score."""
    z = (reward - reward.mean()) / (reward.std() + 1e-8) if len(reward) > 1 else np.zeros_like(reward)
    return reward_weight * z + task_weight * task


def select_best(scores: np.ndarray, owners: np.ndarray, threshold: float) -> list[int]:
    """Per prompt, the index of its best candidate if that clears ``threshold``."""
    kept = []
    for owner in np.unique(owners):
        mine = np.flatnonzero(owners == owner)
        best = mine[np.argmax(scores[mine])]
        if scores[best] >= threshold:
            kept.append(int(best))
    return kept


def sft_example(tokenizer, messages: list[dict], response: str, max_length: int, end_token: bool = True) -> dict:
    """Prompt and response as one sequence, the loss on the response and (``end_token``) its end
    token; a single-token label is trained without it, as IA2's SFT stage does."""
    prefix = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] * end_token
    ids = (prefix_ids + response_ids)[-max_length:]
    labels = ([-100] * len(prefix_ids) + response_ids)[-max_length:]
    return {"input_ids": ids, "labels": labels}
