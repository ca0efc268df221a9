"""Expected calibration error of a model's top-token confidence.

Written here because scikit-learn's calibration_curve gives the binned curve but not the error
weighted by how many tokens fall in each bin, which is the standard definition."""

from __future__ import annotations

import numpy as np


def expected_calibration_error(confidence, correct, n_bins: int = 10) -> float:
    """Σ_b (n_b / n) · |accuracy_b − mean confidence_b| over equal-width confidence bins."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if len(confidence) == 0:
        return float("nan")
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    error = 0.0
    for b in np.unique(bins):
        mask = bins == b
        error += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(error)


def equal_mass_ece(confidence, correct, n_bins: int = 15) -> float:
    """ECE over ``n_bins`` bins of (nearly) equal count, after sorting by confidence (the IA2
    paper's 15-bin equal-mass ECE): equal-width bins leave most bins empty when a tuned model's
    confidences crowd near 1. Ties in confidence stay in sorting order (stable), so the result
    does not depend on how ties are broken between runs."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if len(confidence) == 0:
        return float("nan")
    order = np.argsort(confidence, kind="stable")
    error = 0.0
    for chunk in np.array_split(order, min(n_bins, len(order))):
        error += len(chunk) / len(order) * abs(correct[chunk].mean() - confidence[chunk].mean())
    return float(error)
