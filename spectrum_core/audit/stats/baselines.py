"""Simple measurements beside the hypotheses, so a researcher sees what the SAE adds over them.

- How often the longer response was chosen (length is the best-known confound of preference data).
- The held-out AUC of a length-only model of the preference, next to the joint model's: the joint
  model (all concepts + length) earns its keep only by the margin above this.
- For every concept, the agreement strength Feedback Forensics reports for an annotator: Cohen's
  κ between "chosen has more of it" and the human choice, times its relevance (the share of pairs
  where it has a preference at all). The pairs' order is randomised, so chance agreement is 1/2
  and κ = 2·(share where chosen has more) − 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from .length_control import length_design, length_null
from .pairs import auc_score, randomised_order


@dataclass
class LengthBaseline:
    pairs_with_length_difference: int
    longer_chosen_share: float  # among those pairs; NaN when no pair differs in length
    length_only_auc_held_out: float  # NaN when the held-out split is empty or one-sided

    def to_dict(self) -> dict:
        return asdict(self)

    def sentence(self) -> str:
        return (
            f"Baseline: the longer response was chosen in {self.longer_chosen_share:.0%} of the "
            f"{self.pairs_with_length_difference:,} pairs whose lengths differ; a length-only model's held-out "
            f"AUC is {self.length_only_auc_held_out:.3f}."
        )


def length_baseline(
    chosen_len: np.ndarray, rejected_len: np.ndarray, train_mask: np.ndarray, seed: int
) -> LengthBaseline:
    """Length-only preference: the share of longer-chosen pairs, and the held-out AUC of the
    length-only model (a spline of each side's log length, ``length_control``) fitted on the train
    pairs, with the same randomised pair order (and so the same labels) as the concepts' statistics."""
    diff = np.asarray(chosen_len, dtype=np.float64) - np.asarray(rejected_len, dtype=np.float64)
    differs = diff != 0
    share = float((diff[differs] > 0).mean()) if differs.any() else float("nan")
    signs = randomised_order(len(diff), seed)
    train = np.asarray(train_mask, dtype=bool)
    auc = float("nan")
    if train.any() and (~train).any():
        null = length_null(chosen_len, rejected_len, signs, rows=train)
        auc = auc_score(signs[~train] > 0, length_design(chosen_len, rejected_len, signs)[~train] @ null.beta)
    return LengthBaseline(int(differs.sum()), share, auc)


def agreement_strength(concepts: pd.DataFrame, n_pairs: int) -> pd.DataFrame:
    """``relevance``, ``kappa`` and ``agreement_strength`` (κ × relevance) for every concept."""
    relevance = concepts["n_differ"].to_numpy(dtype=np.float64) / max(1, n_pairs)
    kappa = np.where(concepts["n_differ"].to_numpy() > 0, 2.0 * concepts["share_chosen_more"] - 1.0, 0.0)
    return concepts.assign(relevance=relevance, kappa=kappa, agreement_strength=kappa * relevance)
