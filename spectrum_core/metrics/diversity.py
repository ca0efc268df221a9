"""Diversity of generations: distinct-n over word n-grams and the mean pairwise cosine distance
of sentence embeddings (``embeddings.embed``)."""

from __future__ import annotations

import numpy as np

from ..embeddings import embed


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct word n-grams / all word n-grams over the texts (0 when there are none)."""
    grams = []
    for text in texts:
        words = text.lower().split()
        grams += [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def embedding_diversity(embeddings: np.ndarray) -> float:
    """Mean cosine distance over distinct pairs of (unit-norm) embeddings; 0 for fewer than two."""
    n = len(embeddings)
    if n < 2:
        return 0.0
    similarity = embeddings @ embeddings.T
    return float(1.0 - (similarity.sum() - np.trace(similarity)) / (n * (n - 1)))


def diversity_metrics(texts: list[str], device: str = "cpu") -> dict:
    texts = [t for t in texts if t.strip()]
    return {
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "embedding_diversity": embedding_diversity(embed(texts, device)) if len(texts) > 1 else 0.0,
    }
