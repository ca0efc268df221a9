"""What the audit's prediction must beat: the same shifts predicted without the SAE.

Each predictor is the audit's (``prediction.predicted_shift``: the weighted mean of s·Δ/σ over the
pairs the run trained on) applied to another per-pair Δ of the concept:

- **length**: the part of the concept's Δ that length explains, b·Δlength, with b the slope of
  the concept's Δ on the pair's length difference (words, chosen − rejected) over every audited
  pair. It predicts that a concept moves only as far as tuning makes answers longer or shorter.
- **words**: the concept's Δ as a bag of words reads it: a ridge regression of Δ on the pairs'
  word-count differences, each pair predicted by a model fitted on the other folds (fitted on
  its own pair it would copy noise). It predicts what any word-level reading of the data would.
- **without length**: what is left of Δ once length is taken out, Δ − b·Δlength (its level kept),
  over its own standard deviation; the realised side is partialled the same way
  (``agreement.without_length``).

The SAE's prediction beats these only if the concepts carry what neither length nor words do.
"""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold, cross_val_predict

# The bag of words: the most frequent words of the audited responses, seen in at least 3 of them
# (rarer ones are noise at a few thousand pairs).
VOCABULARY = 2000
MIN_RESPONSES = 3
FOLDS = 5
# Ridge penalties tried per concept (efficient leave-one-out inside each training fold).
ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)


def word_counts(texts: list[str]) -> np.ndarray:
    """Each text's length in words (runs of non-space characters)."""
    return np.array([len(str(t).split()) for t in texts], dtype=np.float64)


def length_parts(deltas: np.ndarray, length_delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(what length explains, what is left) of each column of ``deltas`` (pairs × concepts):
    b·Δlength and Δ − b·Δlength, b the least-squares slope with an intercept."""
    centred = length_delta - length_delta.mean()
    spread = float(centred @ centred)
    slopes = centred @ (deltas - deltas.mean(axis=0)) / spread if spread > 0 else np.zeros(deltas.shape[1])
    explained = np.outer(length_delta, slopes)
    return explained, deltas - explained


def word_deltas(deltas: np.ndarray, chosen: list[str], rejected: list[str], seed: int) -> np.ndarray:
    """Each column of ``deltas`` (pairs × concepts) predicted out of fold from the pairs' word-count
    differences (chosen − rejected), ``FOLDS`` seeded folds."""
    if len(chosen) < FOLDS * 2:
        return np.zeros_like(deltas)
    vectorizer = CountVectorizer(max_features=VOCABULARY, min_df=MIN_RESPONSES)
    try:
        vectorizer.fit(list(chosen) + list(rejected))
    except ValueError:  # no word seen often enough
        return np.zeros_like(deltas)
    difference = (vectorizer.transform(chosen) - vectorizer.transform(rejected)).astype(np.float64)
    model = RidgeCV(alphas=ALPHAS, alpha_per_target=True)
    folds = KFold(FOLDS, shuffle=True, random_state=seed)
    return np.asarray(cross_val_predict(model, difference, deltas, cv=folds), dtype=np.float64).reshape(deltas.shape)
