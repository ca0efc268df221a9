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


@pytest.fixture
def audited_page(small_audit, monkeypatch):
    """AppTest of one page over a private copy of the small audit's workspace: returns
    (AppTest, workspace, audit outcome)."""
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    workspace, outcome = small_audit
    monkeypatch.setenv("SPECTRUM_WORKSPACE", str(workspace.root))
    monkeypatch.chdir(ROOT)

    def open_page(name: str):
        return AppTest.from_file(str(ROOT / "app_pages" / f"{name}.py"), default_timeout=60), workspace, outcome

    return open_page
