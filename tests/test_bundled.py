"""The bundled data files, found as package data."""

from __future__ import annotations

import pytest

from spectrum_core import bundled
from spectrum_core.bundled import HH_DEMO, bundled_file


def test_every_bundled_data_file_has_a_name_and_a_missing_one_is_named():
    names = {value for key, value in vars(bundled).items() if key.isupper()}
    shipped = {path.name for path in bundled_file(HH_DEMO).parent.iterdir() if path.suffix in (".jsonl", ".gz")}
    assert names == shipped and all(bundled_file(name).stat().st_size > 0 for name in names)
    with pytest.raises(FileNotFoundError, match="no-such-file.jsonl"):
        bundled_file("no-such-file.jsonl")


def test_the_wheel_carries_the_data_and_leaves_out_the_checkout(tmp_path):
    """What a non-editable `pip install .` gets: the library with its data, nothing else of the tree."""
    import subprocess
    import sys
    import zipfile

    from tests.conftest import ROOT

    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("spectrum_core-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    names_of_data = {value for key, value in vars(bundled).items() if key.isupper()}
    assert {f"spectrum_core/bundled/{name}" for name in names_of_data} <= names
    assert "spectrum_core/tasks/families.py" in names and "spectrum_core/stages/stage.py" in names
    assert not any(name.startswith(("tests/", "bench/", "app_pages/", "data/")) for name in names)
