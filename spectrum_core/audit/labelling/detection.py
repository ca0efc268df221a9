"""How well a label lets a reader pick out the responses where a concept is active.

The detection score (as in delphi's detection scorer and HypotheSAEs' label check): an LLM that is
given only the label judges, for held-out responses where the concept is strongly active and for
responses where it is not, whether each one shows the concept; the score is the balanced accuracy
of those yes/no judgements (the mean of the share of active responses called "yes" and the share
of inactive ones called "no"), so 0.5 is a label that tells nothing and 1.0 one that picks out
every active response and nothing else. Its 95% interval is a percentile bootstrap that resamples
each group separately (the two groups have fixed sizes by design).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

BOOTSTRAP_SAMPLES = 2000
DETECTION_HELD_OUT = 10  # responses per group judged for one label: 20 judgements


@dataclass(frozen=True)
class DetectionScore:
    score: float  # balanced accuracy; NaN when either group is empty
    low: float
    high: float
    n_active: int
    n_inactive: int

    def to_dict(self) -> dict:
        return asdict(self)


def detection_score(
    yes_on_active: np.ndarray | list[bool],
    yes_on_inactive: np.ndarray | list[bool],
    seed: int = 0,
    n_boot: int = BOOTSTRAP_SAMPLES,
) -> DetectionScore:
    """Balanced accuracy of yes/no judgements, with a seeded 95% bootstrap interval."""
    active = np.asarray(yes_on_active, dtype=bool)
    inactive = np.asarray(yes_on_inactive, dtype=bool)
    if len(active) == 0 or len(inactive) == 0:
        return DetectionScore(float("nan"), float("nan"), float("nan"), len(active), len(inactive))
    score = 0.5 * (active.mean() + (~inactive).mean())
    rng = np.random.default_rng(seed)
    hits = active[rng.integers(0, len(active), size=(n_boot, len(active)))].mean(axis=1)
    rejections = (~inactive)[rng.integers(0, len(inactive), size=(n_boot, len(inactive)))].mean(axis=1)
    low, high = np.percentile(0.5 * (hits + rejections), [2.5, 97.5])
    return DetectionScore(float(score), float(low), float(high), len(active), len(inactive))
