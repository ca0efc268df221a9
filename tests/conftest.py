"""Shared fixtures: paths to the bundled data and the bundled model, loaded once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HH_FILE = ROOT / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
LLAMAFACTORY_FILE = ROOT / "data" / "llamafactory-dpo-en-demo.jsonl"


@pytest.fixture(scope="session")
def hh_dataset():
    from spectrum_core.data import load_preferences

    return load_preferences(HH_FILE)


@pytest.fixture(scope="session")
def bundled_model():
    """SmolLM2-135M-Instruct, converted once into the model cache and loaded from there."""
    from spectrum_core.models import load_model

    return load_model("bundled", progress=lambda message: None)
