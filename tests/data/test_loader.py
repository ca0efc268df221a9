"""The loader on the bundled files, and the same real pairs written in every schema and format."""

from __future__ import annotations

import gzip
import json

import pandas as pd

from spectrum_core.data import PreferenceDataset, load_preferences
from spectrum_core.data.report import EMPTY_RESPONSE, MULTI_TURN
from tests.conftest import HH_FILE, LLAMAFACTORY_FILE


def test_hh_rlhf_every_row_accounted_for_and_every_pair_has_a_prompt(hh_dataset):
    report = hh_dataset.report
    assert report.schema == "trl-implicit"
    assert report.file_format == "jsonl.gz"
    assert report.rows_read == 2312
    # HH-RLHF itself has 9 unusable rows: 4 empty chosen responses and 5 pairs whose transcripts
    # part before the final turn. They are reported by line, field and reason, not dropped.
    assert report.rows_kept == 2303
    assert report.rejection_counts() == {MULTI_TURN: 5, EMPTY_RESPONSE: 4}
    assert sorted(int(r.location.split()[1]) for r in report.rejections) == [
        87,
        517,
        926,
        1104,
        1255,
        1689,
        1951,
        1953,
        2037,
    ]
    assert report.is_consistent()
    pairs = hh_dataset.pairs
    assert pairs["prompt"].map(len).min() >= 1
    assert all(p[-1]["role"] == "user" for p in pairs["prompt"])
    assert pairs["pair_id"].is_unique
    assert (pairs["chosen"] != pairs["rejected"]).all()
    # The final turns carry no transcript markers: the prompt was split off cleanly.
    assert not pairs["chosen"].str.contains("\n\nHuman:").any()


def test_hh_prompt_matches_the_transcript(hh_dataset):
    first = json.loads(gzip.open(HH_FILE, "rt").readline())
    row = hh_dataset.pairs.iloc[0]
    assert row["prompt"][0] == {"role": "user", "content": "what are some pranks with a pen i can do?"}
    assert first["chosen"].rstrip().endswith(row["chosen"])
    assert first["rejected"].rstrip().endswith(row["rejected"])


def test_llamafactory_demo():
    dataset = load_preferences(LLAMAFACTORY_FILE)
    report = dataset.report
    assert (report.schema, report.rows_read, report.rows_kept, report.duplicates_merged) == (
        "llamafactory",
        300,
        295,
        5,
    )
    assert report.is_consistent()
    # The conversation already ends with the prompt column's user turn; it is not repeated.
    first = dataset.pairs.iloc[0]
    assert [m["role"] for m in first["prompt"]] == ["user"]
    assert first["metadata"]["row_in_source"] == 0
    assert sum(dataset.pairs["duplicates"]) == 5


def test_split_is_grouped_by_prompt_and_seeded(hh_dataset):
    pairs = hh_dataset.pairs
    key = pairs["prompt"].map(lambda p: json.dumps(p, sort_keys=True))
    sides = pairs.groupby(key)["split"].nunique()
    assert (sides == 1).all()
    held_out = (pairs["split"] == "held_out").mean()
    assert 0.15 < held_out < 0.25
    again = load_preferences(HH_FILE)
    assert (again.pairs["split"] == pairs["split"]).all()
    other_seed = load_preferences(HH_FILE, seed=1)
    assert (other_seed.pairs["split"] != pairs["split"]).any()


def test_pair_id_is_stable_under_row_order(tmp_path, hh_dataset):
    rows = [json.loads(line) for line in gzip.open(HH_FILE, "rt")][:40]
    path = tmp_path / "reversed.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in reversed(rows)))
    reversed_ids = set(load_preferences(path).pairs["pair_id"])
    assert reversed_ids <= set(hh_dataset.pairs["pair_id"])


def test_save_and_load_round_trip(tmp_path):
    dataset = load_preferences(LLAMAFACTORY_FILE)
    dataset.save(tmp_path / "saved")
    again = PreferenceDataset.load(tmp_path / "saved")
    pd.testing.assert_frame_equal(dataset.pairs, again.pairs)
    assert again.report.to_dict() == dataset.report.to_dict()


def test_trl_records(hh_dataset):
    record = hh_dataset.to_trl_records("train")[0]
    assert record["chosen"][0]["role"] == "assistant"
    assert record["prompt"][-1]["role"] == "user"
