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


def test_pair_ids_from_the_shared_prompt_encoding_equal_make_pair_id(hh_dataset):
    """The loader encodes each prompt once and builds both the pair id and the swapped id from it;
    both must equal make_pair_id's (ids are stored in workspaces), on real text and on text JSON
    escapes (quotes, backslashes, non-ASCII, controls)."""
    from spectrum_core.data.loader import _canonical_json, _pair_ids, make_pair_id

    llama = load_preferences(LLAMAFACTORY_FILE).pairs
    rows = [(r.prompt, r.chosen, r.rejected) for r in pd.concat([hh_dataset.pairs.head(300), llama]).itertuples()]
    rows.append(([{"role": "user", "content": 'a "quote", \\ and é\n\t\x01'}], "ü ✓ \u2028", '{"k": [1]}'))
    for prompt, chosen, rejected in rows:
        pair_id, swapped = _pair_ids(_canonical_json(prompt), chosen, rejected)
        assert pair_id == make_pair_id(prompt, chosen, rejected)
        assert swapped == make_pair_id(prompt, rejected, chosen)


def test_loading_holds_no_more_than_a_small_multiple_of_the_pairs_kept(tmp_path):
    """Rows stream through two passes instead of being held raw: Python's peak allocation while
    loading stays within 3.5 times what the loaded pairs occupy (a version that held every raw
    row and every record dict at once peaked at 5 times on this file, 6 times on HH)."""
    import tracemalloc

    path = tmp_path / "tiny.jsonl"
    with open(path, "w") as handle:
        for i in range(20_000):
            handle.write(json.dumps({"prompt": f"q{i}", "chosen": f"yes {i}", "rejected": f"no {i}"}) + "\n")
    for source in (path, HH_FILE):
        tracemalloc.start()
        try:
            dataset = load_preferences(source)
            kept, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert len(dataset) > 2000
        assert peak < 3.5 * kept, (source.name, kept, peak)


def test_a_file_that_changes_between_the_two_passes_is_refused(tmp_path, monkeypatch):
    from spectrum_core.data import loader
    from spectrum_core.data.report import DataLoadError

    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": "a", "rejected": "b"}) + "\n" for i in range(5)))
    calls = []
    original = loader.read_rows

    def shrinking(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            path.write_text(path.read_text().split("\n", 1)[1])  # a row gone before the second pass
        return original(*args, **kwargs)

    monkeypatch.setattr(loader, "read_rows", shrinking)
    try:
        load_preferences(path)
    except DataLoadError as exc:
        assert "changed while it was being read (5 rows, then 4)" in str(exc)
    else:
        raise AssertionError("a file that changed between passes was loaded")
