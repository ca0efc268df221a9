"""ReSet's mechanics: only candidates over the threshold are kept (one per prompt, the best), and
the prompt mix from the plan and the bundled HaluEval items."""

from __future__ import annotations

import numpy as np
import pytest

from spectrum_core.tuning.reset import build_prompts, combine_scores, select_best, sft_example


def test_keeps_only_the_best_candidate_over_the_threshold():
    scores = np.array([0.2, 0.9, 0.5, -1.0, -0.5, 0.1, 0.3])
    owners = np.array([0, 0, 0, 1, 1, 2, 2])
    assert select_best(scores, owners, threshold=0.0) == [1, 6]  # prompt 1's best (-0.5) is under it
    assert select_best(scores, owners, threshold=0.95) == []
    assert select_best(scores, owners, threshold=-np.inf) == [1, 4, 6]


def test_combined_score_standardises_the_reward():
    combined = combine_scores(np.array([1.0, 3.0]), np.array([0.5, 0.0]), reward_weight=1.0, task_weight=2.0)
    assert combined == pytest.approx([-1.0 + 1.0, 1.0 + 0.0], abs=1e-6)


def test_prompt_mix(bundled_model):
    records = [{"prompt": [{"role": "user", "content": f"question {i}"}]} for i in range(10)]
    prompts = build_prompts(records, n_preference=3, n_context=2, n_constraint=2, seed=0)
    assert [p.kind for p in prompts] == ["preference"] * 3 + ["constraints"] * 2 + ["context"] * 2
    assert all(len(p.constraints) == 2 for p in prompts if p.kind == "constraints")
    context = prompts[-1]
    assert context.context in context.messages[0]["content"] and context.reference
    assert records[0]["prompt"][0]["content"] == "question 0"  # the plan's records are not modified
    example = sft_example(bundled_model.tokenizer, prompts[0].messages, "an answer", 512)
    scored = [t for t, label in zip(example["input_ids"], example["labels"]) if label != -100]
    assert bundled_model.tokenizer.decode(scored) == "an answer<|im_end|>"
