"""A metric over seeds: its mean and a 95% interval, so a method's benchmark line says how much
of a difference is the method and how much is the seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

# Two-sided coverage of the interval over seeds.
CONFIDENCE = 0.95


@dataclass(frozen=True)
class SeedSummary:
    mean: float
    low: float
    high: float
    n: int

    def text(self, digits: int = 3) -> str:
        if self.n < 2:
            return f"{self.mean:.{digits}f} (1 seed)"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def over_seeds(values) -> SeedSummary:
    """Mean and Student-t 95% interval of one value per seed (few seeds: a t, not a normal,
    interval; one seed: no interval)."""
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if len(values) == 0:
        return SeedSummary(float("nan"), float("nan"), float("nan"), 0)
    mean = float(values.mean())
    if len(values) < 2:
        return SeedSummary(mean, float("nan"), float("nan"), 1)
    half = float(stats.t.ppf((1 + CONFIDENCE) / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return SeedSummary(mean, mean - half, mean + half, len(values))
