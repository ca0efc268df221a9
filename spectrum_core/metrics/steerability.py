"""In-context steerability (the Spectrum Suite definition): for tasks whose outputs are i.i.d.
samples from one distribution, the loss of each output given the i samples before it.

Reported: the mean loss over outputs with at least one earlier sample ("loss ≥ 1"), the curve of
mean loss over i, the same for the data-generating distribution itself (its −log p of each
output, the floor a perfectly steered model would reach), and the expected calibration error of
the model's top-token confidence on output tokens with i ≥ 1. Losses are in nats per output
(summed over its tokens, end-of-turn token included).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..tasks.spectrum_format import SpectrumTask, render_outputs
from .calibration import expected_calibration_error
from .scoring import score_tokens


def output_losses(
    model, tokenizer, tasks: list[SpectrumTask], max_length: int = 1024, batch_size: int = 4, on_batch=None
) -> tuple[pd.DataFrame, dict]:
    """One row per (task, output): family, task index, i, loss, ideal loss; and the pooled
    top-token confidences and hits of outputs with i ≥ 1 (for calibration)."""
    rendered = []
    for task in tasks:
        full = render_outputs(tokenizer, task)
        cut = full["output_index"][max_length] if len(full["input_ids"]) > max_length else -1
        # An output cut by max_length is incomplete (its loss would be too small): leave it out.
        owners = [i if i != cut else -1 for i in full["output_index"][:max_length]]
        rendered.append({"input_ids": full["input_ids"][:max_length], "output_index": owners})
    rows, confidence, correct = [], [], []
    for start in range(0, len(tasks), batch_size):
        chunk = range(start, min(start + batch_size, len(tasks)))
        scores = score_tokens(model, [rendered[t]["input_ids"] for t in chunk], tokenizer.pad_token_id, batch_size)
        for t, score in zip(chunk, scores):
            owner = np.asarray(rendered[t]["output_index"][1:])  # token j+1 is scored by entry j
            task = tasks[t]
            for i in sorted(set(owner[owner >= 0].tolist())):
                mask = owner == i
                output = task.samples[i][1]
                p_true = (task.distribution or {}).get(output)
                rows.append(
                    {
                        "family": task.family,
                        "task": t,
                        "i": i,
                        "loss": float(-score.logprob[mask].sum()),
                        "ideal_loss": -math.log(p_true) if p_true else float("nan"),
                    }
                )
                if i >= 1:
                    confidence += score.top_prob[mask].tolist()
                    correct += score.top_correct[mask].tolist()
        if on_batch:
            on_batch(chunk.stop, len(tasks))
    return pd.DataFrame(rows), {"confidence": confidence, "correct": correct}


def summarise(losses: pd.DataFrame, calibration: dict) -> dict:
    later = losses[losses["i"] >= 1]
    curve = (
        losses.groupby("i")
        .agg(loss=("loss", "mean"), ideal_loss=("ideal_loss", "mean"), outputs=("loss", "size"))
        .reset_index()
    )
    by_family = (
        later.groupby("family")
        .agg(loss_ge1=("loss", "mean"), ideal_loss_ge1=("ideal_loss", "mean"), outputs=("loss", "size"))
        .reset_index()
    )
    return {
        "loss_ge1": float(later["loss"].mean()) if len(later) else float("nan"),
        "ideal_loss_ge1": float(later["ideal_loss"].mean()) if len(later) else float("nan"),
        "loss_first": float(losses.loc[losses["i"] == 0, "loss"].mean()) if len(losses) else float("nan"),
        "calibration_error": expected_calibration_error(calibration["confidence"], calibration["correct"]),
        "tasks": int(losses["task"].nunique()) if len(losses) else 0,
        "curve": curve.to_dict("records"),
        "by_family": by_family.to_dict("records"),
    }
