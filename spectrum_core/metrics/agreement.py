"""How far predicted shifts agree with realised ones, with 95% intervals a reviewer can check.

The realised shift of a concept is read from its value on each evaluation prompt's generation,
base and tuned (``values``: prompts × concepts): the paired mean change over the standard
deviation (the root of the mean of the two variances), as ``prevalence.compare_prevalence``
computes it one concept at a time. Every agreement figure is computed over all predicted
concepts, not only those that moved:

- R²: the squared Pearson correlation (the share of the variance across concepts that a line
  through the scatter explains) carrying the sign of the line's slope, with the slope. Signed,
  because a predictor whose realised shifts go the other way is wrong, not good: unsigned, a
  prediction of the opposite direction (or a label-flipped run against the original prediction)
  would score as well as a right one;
- Spearman's ρ;
- sign agreement: the share of concepts whose realised shift has the predicted sign (concepts
  predicted exactly 0, which never differ in the training pairs, have no sign and are left out).

Intervals are percentile intervals of ``BOOTSTRAP_SAMPLES`` resamples of the evaluation prompts
(with replacement; the prompts are the unit the tuned model is tested on), the predictions fixed
(they come from the training pairs, not the prompts). Every predictor is scored on the same
resamples, so a difference between two predictors has its own paired interval.

Length partialled out (``without_length``): each concept's values regressed on the generation's
length in words, pooled over base and tuned, and the shift recomputed on the residuals; the
prediction side does the same on the training pairs (``baselines.length_parts``).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

# 1,000 resamples: each 2.5% tail of a percentile interval rests on 25 of them.
BOOTSTRAP_SAMPLES = 1000
INTERVAL = (2.5, 97.5)
# The fewest concepts an R² or ρ is computed over (two points always lie on a line).
MIN_CONCEPTS = 3
METRICS = ("r2", "slope", "spearman", "sign_agreement")


def realised_shifts(base: np.ndarray, tuned: np.ndarray) -> np.ndarray:
    """Per concept (columns of prompts × concepts ``base`` and ``tuned``): the paired mean change
    in standard deviations; 0 where the concept never varies."""
    base, tuned = np.asarray(base, dtype=np.float64), np.asarray(tuned, dtype=np.float64)
    if base.shape[0] < 2:
        return np.zeros(base.shape[1])
    scale = np.sqrt((base.var(axis=0, ddof=1) + tuned.var(axis=0, ddof=1)) / 2)
    change = (tuned - base).mean(axis=0)
    return np.divide(change, scale, out=np.zeros_like(change), where=scale > 0)


def agreement(predicted: np.ndarray, realised: np.ndarray) -> dict[str, float | None]:
    """R², slope, Spearman's ρ and sign agreement of ``predicted`` against ``realised`` (one
    entry per concept); None where a figure is undefined (too few concepts, no spread)."""
    predicted, realised = np.asarray(predicted, dtype=np.float64), np.asarray(realised, dtype=np.float64)
    out: dict[str, float | None] = dict.fromkeys(METRICS)
    if len(predicted) >= MIN_CONCEPTS and predicted.std() > 0 and realised.std() > 0:
        fit = stats.linregress(predicted, realised)
        out["r2"], out["slope"] = float(np.sign(fit.rvalue) * fit.rvalue**2), float(fit.slope)
        out["spearman"] = float(stats.spearmanr(predicted, realised).statistic)
    signed = predicted != 0
    if signed.any():
        out["sign_agreement"] = float(np.mean(np.sign(predicted[signed]) == np.sign(realised[signed])))
    return out


def without_length(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Each column of ``values`` less its least-squares line on ``lengths`` (one fit per column
    over every row; the intercept is kept, so a level is not removed, only what length explains)."""
    values = np.asarray(values, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.float64)
    centred = lengths - lengths.mean()
    spread = float(centred @ centred)
    if spread == 0:
        return values
    slopes = centred @ (values - values.mean(axis=0)) / spread
    return values - np.outer(lengths, slopes)


def resamples(n_prompts: int, seed: int, n: int = BOOTSTRAP_SAMPLES) -> np.ndarray:
    """``n`` seeded resamples of the prompt indices (n × prompts)."""
    return np.random.default_rng(seed).integers(0, n_prompts, size=(n, n_prompts))


def bootstrap(predicted: np.ndarray, base: np.ndarray, tuned: np.ndarray, draws: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric of ``agreement`` on each resample of the prompts (``draws``: rows of prompt
    indices), NaN where undefined."""
    samples = {m: np.full(len(draws), np.nan) for m in METRICS}
    for i, rows in enumerate(draws):
        for metric, value in agreement(predicted, realised_shifts(base[rows], tuned[rows])).items():
            if value is not None:
                samples[metric][i] = value
    return samples


def summarise(point: dict[str, float | None], samples: dict[str, np.ndarray]) -> dict[str, float | None]:
    """The point figures with ``<metric>_low`` and ``<metric>_high`` from the resamples."""
    out = dict(point)
    for metric, values in samples.items():
        values = values[~np.isnan(values)]
        low, high = np.percentile(values, INTERVAL) if len(values) else (np.nan, np.nan)
        out[f"{metric}_low"] = None if np.isnan(low) else float(low)
        out[f"{metric}_high"] = None if np.isnan(high) else float(high)
    return out


def difference_interval(a: np.ndarray, b: np.ndarray) -> tuple[float | None, float | None]:
    """The 95% interval of ``a − b`` over paired resamples (both on the same ``draws``)."""
    both = ~(np.isnan(a) | np.isnan(b))
    if not both.any():
        return None, None
    low, high = np.percentile(a[both] - b[both], INTERVAL)
    return float(low), float(high)
