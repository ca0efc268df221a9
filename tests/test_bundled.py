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
