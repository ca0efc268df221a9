"""App test fixtures."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True)
def restore_main_module():
    """AppTest runs each page as ``__main__`` and leaves it there; a later test that spawns a
    process (multiprocessing re-imports ``__main__`` in the child) would then run a page script.
    Put the real ``__main__`` back after every app test."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main
