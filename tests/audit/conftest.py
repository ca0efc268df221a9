"""Audit fixtures: real HH pairs for real behaviour (the tiny random Llama is in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def hh_pairs(hh_dataset):
    return hh_dataset.pairs
