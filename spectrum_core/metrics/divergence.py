"""Distances between a model's distribution over options and a human one."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

# Added to both distributions before a KL divergence, so an option one side never chose does not
# make it infinite (human vote counts are often zero for "pass").
KL_SMOOTHING = 1e-3


def as_distribution(values, options: list[str] | None = None) -> np.ndarray:
    """A probability vector from counts or probabilities (a dict is read in ``options`` order)."""
    if isinstance(values, dict):
        assert options is not None, "a dict of values needs options"
        values = [float(values.get(o, 0.0)) for o in options]
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or (array < 0).any() or array.sum() <= 0:
        raise ValueError(f"not a distribution: {values!r}")
    return array / array.sum()


def js_divergence(p, q) -> float:
    """Jensen–Shannon divergence in bits (0 = identical, 1 = disjoint support)."""
    return float(jensenshannon(as_distribution(p), as_distribution(q), base=2) ** 2)


def kl_divergence(p, q, smoothing: float = KL_SMOOTHING) -> float:
    """KL(p ‖ q) in nats, both sides smoothed by ``smoothing`` and renormalised."""
    p, q = as_distribution(p) + smoothing, as_distribution(q) + smoothing
    return float(entropy(p / p.sum(), q / q.sum()))


def compare_distributions(model, human) -> dict:
    """JS, KL both ways and whether the most likely option agrees."""
    model, human = as_distribution(model), as_distribution(human)
    return {
        "js": js_divergence(model, human),
        "kl_human_model": kl_divergence(human, model),
        "kl_model_human": kl_divergence(model, human),
        "mode_match": float(np.argmax(model) == np.argmax(human)),
    }
