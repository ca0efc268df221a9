"""Faithfulness vs instruction following (the ReSet trade-off): on held-out HaluEval questions with
their passage, answer accuracy (the grounded answer's content words all appear) and faithfulness
(share of the answer's content words the passage contains); on held-out HaluEval questions asked
without the passage but with two checkable constraints, the share of constraints satisfied.
Answers are greedy, so a checkpoint's point does not move by sampling noise."""

from __future__ import annotations

import random

import numpy as np

from ..sampling import sample_responses
from ..tasks.halueval import halueval_questions
from ..tasks.scorers import answer_matches, constraints_satisfied, faithfulness, pick_constraints, with_constraints


def constraint_prompts(n: int, seed: int, offset: int) -> list[tuple[list[dict], list[str]]]:
    """(messages, constraint names) for ``n`` held-out questions from ``offset`` on (after the
    grounded ones, so no question is asked both ways)."""
    rng = random.Random(seed)
    prompts = []
    for item in halueval_questions(n, seed, offset=offset, split="eval"):
        constraints = pick_constraints(rng)
        prompts.append(
            ([{"role": "user", "content": with_constraints(item.question, constraints)}], [c.name for c in constraints])
        )
    return prompts


def faithfulness_metrics(
    model, tokenizer, n_grounded: int, n_constraint: int, seed: int, max_new_tokens: int, batch_size: int = 8
) -> dict:
    grounded = halueval_questions(n_grounded, seed, split="eval")
    constrained = constraint_prompts(n_constraint, seed, offset=n_grounded)
    responses = sample_responses(
        model,
        tokenizer,
        [g.messages for g in grounded] + [m for m, _ in constrained],
        temperature=0.0,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
    )
    answers = [r[0] for r in responses]
    grounded_answers, constrained_answers = answers[: len(grounded)], answers[len(grounded) :]
    return {
        "grounded_questions": len(grounded),
        "answer_accuracy": float(
            np.mean([answer_matches(a, g.grounded_answer) for a, g in zip(grounded_answers, grounded)])
        )
        if grounded
        else float("nan"),
        "faithfulness": float(np.mean([faithfulness(a, g.context) for a, g in zip(grounded_answers, grounded)]))
        if grounded
        else float("nan"),
        "constraint_prompts": len(constrained),
        "constraints_satisfied": float(
            np.mean([constraints_satisfied(a, names) for a, (_, names) in zip(constrained_answers, constrained)])
        )
        if constrained
        else float("nan"),
    }
