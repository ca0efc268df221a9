"""A corpus of malformed files. Each gives a clear error naming the file, or a counted rejection
naming the place, field and reason; none crashes, and no row goes missing from the report."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from spectrum_core.data import DataLoadError, SchemaError, load_preferences
from spectrum_core.data.report import (
    BAD_LABEL,
    BAD_MESSAGES,
    EMPTY_RESPONSE,
    IDENTICAL,
    MISSING_FIELD,
    MULTI_TURN,
    NOT_AN_OBJECT,
    TOO_LARGE,
    UNDECODABLE,
    UNPARSEABLE,
)
from tests.conftest import HH_FILE

HH_LINES = gzip.open(HH_FILE, "rb").read().split(b"\n")[:12]
HH_ROWS = [json.loads(line) for line in HH_LINES]


def jsonl(rows) -> bytes:
    return b"\n".join(json.dumps(r, ensure_ascii=False).encode() for r in rows) + b"\n"


def explicit(i: int, **changes) -> dict:
    """A real pair in TRL explicit form (prompt = the HH transcript's first human turn)."""
    row = {
        "prompt": f"question {i}: " + HH_ROWS[i]["chosen"].split("\n\nAssistant:")[0].replace("\n\nHuman: ", ""),
        "chosen": f"chosen answer {i}",
        "rejected": f"rejected {i}",
    }
    row.update(changes)
    return row


def ab_csv(labels) -> bytes:
    frame = pd.DataFrame(
        {
            "prompt": [f"p{i}" for i in range(len(labels))],
            "response_A": [f"a{i}" for i in range(len(labels))],
            "response_B": [f"b{i}" for i in range(len(labels))],
            "label": labels,
        }
    )
    return frame.to_csv(index=False).encode()


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


@dataclass
class Case:
    name: str
    filename: str
    content: bytes | Callable[[Path], None]
    error: type | None = None
    message: str = ""  # must appear in the error message
    rejections: dict = field(default_factory=dict)  # reason -> count
    kept: int | None = None
    where: tuple | None = None  # (location, field) of the first rejection
    merged: int = 0


CASES = [
    Case(
        "truncated JSON array",
        "cut.json",
        json.dumps([explicit(i) for i in range(5)]).encode()[:300],
        error=DataLoadError,
        message="not valid JSON",
    ),
    Case(
        "truncated last JSONL line",
        "cut.jsonl",
        jsonl([explicit(i) for i in range(5)])[:-25],
        rejections={UNPARSEABLE: 1},
        kept=4,
        where=("line 5", None),
    ),
    Case(
        "wrong columns",
        "wrong.csv",
        b"question,answer\nhi,there\n",
        error=SchemaError,
        message="columns found: question, answer",
    ),
    Case(
        "empty chosen response",
        "empty.jsonl",
        jsonl([explicit(0, chosen="   "), explicit(1)]),
        rejections={EMPTY_RESPONSE: 1},
        kept=1,
        where=("line 1", "chosen"),
    ),
    Case(
        "identical responses",
        "same.jsonl",
        jsonl([explicit(0, chosen="same", rejected="same"), explicit(1)]),
        rejections={IDENTICAL: 1},
        kept=1,
        where=("line 1", "chosen"),
    ),
    Case(
        "10 MB response",
        "huge.jsonl",
        jsonl([explicit(0), explicit(1, rejected="x" * 10_000_000)]),
        rejections={TOO_LARGE: 1},
        kept=1,
        where=("line 2", "rejected"),
    ),
    Case(
        "bad UTF-8 in a response",
        "bytes.jsonl",
        jsonl([explicit(0)]) + b'{"prompt": "p", "chosen": "caf\xe9 au lait", "rejected": "tea"}\n',
        rejections={UNDECODABLE: 1},
        kept=1,
        where=("line 2", "chosen"),
    ),
    Case("UTF-8 BOM on JSONL", "bom.jsonl", b"\xef\xbb\xbf" + jsonl([explicit(0), explicit(1)]), kept=2),
    Case("UTF-8 BOM on CSV", "bom.csv", b"\xef\xbb\xbf" + ab_csv(["A", "B"]), kept=2),
    Case("UTF-16 with BOM", "utf16.jsonl", jsonl([explicit(0), explicit(1)]).decode().encode("utf-16"), kept=2),
    Case(
        "CSV with embedded newlines",
        "newlines.csv",
        b'prompt,chosen,rejected\n"line one\nline two","a\n\nb","c"\nplain,x,y\n',
        kept=2,
    ),
    Case(
        "NaN labels in CSV",
        "nan.csv",
        ab_csv(["A", None, "nan", "B"]),
        rejections={MISSING_FIELD: 2},
        kept=2,
        where=("line 3", "label"),
    ),
    Case(
        "NaN labels in Parquet",
        "nan.parquet",
        parquet_bytes(
            pd.DataFrame(
                {
                    "prompt": ["p1", "p2"],
                    "response_A": ["a", "b"],
                    "response_B": ["c", "d"],
                    "label": [1.0, float("nan")],
                }
            )
        ),
        rejections={MISSING_FIELD: 1},
        kept=1,
        where=("row 2", "label"),
    ),
    Case(
        "tie and unknown labels",
        "ties.csv",
        ab_csv(["tie", "C", "a", "0.5"]),
        rejections={BAD_LABEL: 3},
        kept=1,
        where=("line 2", "label"),
    ),
    Case("empty file", "empty.jsonl", b"", error=DataLoadError, message="no rows"),
    Case("only blank lines", "blank.jsonl", b"\n\n  \n", error=DataLoadError, message="no rows"),
    Case(
        "truncated gzip",
        "cut.jsonl.gz",
        gzip.compress(jsonl([explicit(i) for i in range(5)]))[:60],
        error=DataLoadError,
        message="gzip",
    ),
    Case(
        "a JSONL line that is not an object",
        "list.jsonl",
        jsonl([explicit(0), [1, 2], "text"]),
        rejections={NOT_AN_OBJECT: 2},
        kept=1,
        where=("line 2", None),
    ),
    Case(
        "missing rejected field",
        "missing.jsonl",
        jsonl([explicit(0), {"prompt": "p", "chosen": "c"}, explicit(2, rejected=None)]),
        rejections={MISSING_FIELD: 2},
        kept=1,
        where=("line 2", "rejected"),
    ),
    Case(
        "unknown message role",
        "roles.jsonl",
        jsonl([explicit(0, prompt=[{"role": "wizard", "content": "hi"}])]),
        error=DataLoadError,
        message="unknown role 'wizard'",
    ),
    Case(
        "conversation ending on a user turn",
        "userturn.jsonl",
        jsonl(
            [
                {
                    "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                    "rejected": [
                        {"role": "user", "content": "q"},
                        {"role": "assistant", "content": "b"},
                        {"role": "user", "content": "more?"},
                    ],
                },
                {
                    "chosen": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "a"}],
                    "rejected": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "b"}],
                },
            ]
        ),
        rejections={MULTI_TURN: 1},
        kept=1,
        where=("line 1", "rejected"),
    ),
    Case(
        "response turn from the user",
        "wrongturn.jsonl",
        jsonl(
            [
                {
                    "chosen": [{"role": "user", "content": "q"}, {"role": "user", "content": "a"}],
                    "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}],
                },
                {
                    "chosen": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
                    "rejected": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "z"}],
                },
            ]
        ),
        rejections={BAD_MESSAGES: 1},
        kept=1,
        where=("line 1", "chosen"),
    ),
    Case(
        "CSV row with extra fields",
        "extra.csv",
        b"prompt,chosen,rejected\np,c,r\np2,c2,r2,oops\n",
        rejections={UNPARSEABLE: 1},
        kept=1,
        where=("line 3", None),
    ),
    Case(
        "binary file named .jsonl",
        "binary.jsonl",
        b"\x00\x01\x02PK\x03\x04" * 50,
        error=DataLoadError,
        message="NUL bytes",
    ),
    Case(
        "unknown extension",
        "pairs.txt",
        b"prompt,chosen,rejected\n",
        error=DataLoadError,
        message="unknown file type .txt",
    ),
    Case(
        "exact duplicates", "dupes.jsonl", jsonl([explicit(0), explicit(1), explicit(0), explicit(0)]), kept=2, merged=2
    ),
    Case(
        "corrupt Parquet",
        "bad.parquet",
        b"PAR1" + b"\x00garbage" * 10,
        error=DataLoadError,
        message="not a readable Parquet file",
    ),
    Case(
        "folder that is not a saved dataset",
        "folder",
        lambda p: (p.mkdir(), (p / "x.txt").write_text("x")),
        error=DataLoadError,
        message="save_to_disk",
    ),
    Case(
        "bad UTF-8 only in metadata",
        "meta.jsonl",
        jsonl([explicit(0)]) + b'{"prompt": "p", "chosen": "c", "rejected": "r", "note": "\xff"}\n',
        kept=2,
    ),
    Case(
        "HH transcripts that part before the last turn",
        "hh.jsonl",
        jsonl([HH_ROWS[0], {"chosen": HH_ROWS[1]["chosen"], "rejected": HH_ROWS[2]["rejected"]}]),
        rejections={MULTI_TURN: 1},
        kept=1,
        where=("line 2", "chosen"),
    ),
    Case("JSON with a wrapper key", "wrapped.json", json.dumps({"data": [explicit(0), explicit(1)]}).encode(), kept=2),
    Case(
        "columnar JSON",
        "columns.json",
        json.dumps({"prompt": ["a", "b"], "chosen": ["c", "d"], "rejected": ["e", "f"]}).encode(),
        kept=2,
    ),
    Case(
        "malformed messages value",
        "badmsg.jsonl",
        jsonl([explicit(0), explicit(1, chosen=[{"role": "assistant", "content": {"x": 1}}])]),
        rejections={BAD_MESSAGES: 1},
        kept=1,
        where=("line 2", "chosen"),
    ),
    Case(
        "a JSONL value nested 5,000 levels deep, among good lines",
        "deep.jsonl",
        jsonl([explicit(0)])
        + b'{"prompt": "p", "chosen": '
        + b"[" * 5000
        + b"]" * 5000
        + b', "rejected": "r"}\n'
        + jsonl([explicit(1)]),
        rejections={UNPARSEABLE: 1},
        kept=2,
        where=("line 2", None),
    ),
    Case(
        "a JSONL metadata value nested 100 levels (parses, deeper than any real row)",
        "deep-meta.jsonl",
        jsonl([explicit(0, note=json.loads("[" * 100 + "]" * 100)), explicit(1)]),
        rejections={UNPARSEABLE: 1},
        kept=1,
        where=("line 1", None),
    ),
    Case(
        "an integer with 5,000 digits",
        "bigint.jsonl",
        jsonl([explicit(0)]) + b'{"prompt": "p", "chosen": "c", "rejected": "r", "n": ' + b"9" * 5000 + b"}\n",
        rejections={UNPARSEABLE: 1},
        kept=1,
        where=("line 2", None),
    ),
    Case(
        "a JSON document nested 100,000 levels deep",
        "deep.json",
        b"[" * 100_000 + b"]" * 100_000,
        error=DataLoadError,
        message="nested too deeply",
    ),
    Case(
        "a lone surrogate escape in a response",
        "surrogate.jsonl",
        jsonl([explicit(0)]) + b'{"prompt": "p", "chosen": "a \\ud800 b", "rejected": "r"}\n',
        rejections={UNDECODABLE: 1},
        kept=1,
        where=("line 2", "chosen"),
    ),
    Case(
        "a lone surrogate in a column name",
        "surrogate-key.jsonl",
        jsonl([explicit(0)]) + b'{"prompt": "p", "chosen": "c", "rejected": "r", "x\\udc00": 1}\n',
        rejections={UNDECODABLE: 1},
        kept=1,
        where=("line 2", "x\ufffd"),
    ),
    Case(
        "CR-only line endings",
        "mac.jsonl",
        jsonl([explicit(0), explicit(1), explicit(2)]).replace(b"\n", b"\r"),
        kept=3,
    ),
    Case(
        "UTF-16 without a byte-order mark",
        "utf16le.jsonl",
        jsonl([explicit(0), explicit(1)]).decode().encode("utf-16-le"),
        kept=2,
    ),
    Case(
        "UTF-32 with a byte-order mark",
        "utf32.jsonl",
        jsonl([explicit(0), explicit(1)]).decode().encode("utf-32"),
        kept=2,
    ),
    Case("an empty .json file", "empty.json", b"", error=DataLoadError, message="the file is empty"),
    Case(
        "a CSV field of 150,000 characters (under the 200,000 limit)",
        "long.csv",
        b"prompt,chosen,rejected\np," + b"x" * 150_000 + b",r\nq,c,d\n",
        kept=2,
    ),
    Case(
        "a CSV field of 250,000 characters (over the limit)",
        "longer.csv",
        b"prompt,chosen,rejected\np," + b"x" * 250_000 + b",r\nq,c,d\n",
        rejections={TOO_LARGE: 1},
        kept=1,
        where=("line 2", "chosen"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_file(tmp_path, case):
    path = tmp_path / case.filename
    if callable(case.content):
        case.content(path)
    else:
        path.write_bytes(case.content)
    if case.error is not None:
        with pytest.raises(case.error) as error:
            load_preferences(path)
        text = str(error.value)
        assert str(path) in text, "the message must name the file"
        assert case.message in text
        return
    dataset = load_preferences(path)
    report = dataset.report
    assert report.is_consistent(), report.summary()
    assert report.rejection_counts() == case.rejections, report.summary()
    assert report.rows_kept == case.kept
    assert report.duplicates_merged == case.merged
    if case.where:
        first = report.rejections[0]
        assert (first.location, first.field) == case.where
        assert first.file == str(path) and str(path) in str(first)


def test_corpus_is_large_enough():
    assert len(CASES) >= 20


def test_embedded_newlines_survive(tmp_path):
    path = tmp_path / "newlines.csv"
    path.write_bytes(b'prompt,chosen,rejected\n"line one\nline two","a\n\nb","c"\n')
    pair = load_preferences(path).pairs.iloc[0]
    assert pair["prompt"][0]["content"] == "line one\nline two"
    assert pair["chosen"] == "a\n\nb"


def test_bom_does_not_leak_into_column_names(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + ab_csv(["A"]))
    assert load_preferences(path).report.columns_found[0] == "prompt"


def test_metadata_bytes_are_repaired_with_a_warning(tmp_path):
    path = tmp_path / "meta.jsonl"
    path.write_bytes(b'{"prompt": "p", "chosen": "c", "rejected": "r", "note": "x\xffy"}\n')
    dataset = load_preferences(path)
    assert dataset.pairs.iloc[0]["metadata"]["note"] == "x\ufffdy"
    assert "U+FFFD" in dataset.report.warnings[0]


def test_size_limit_is_configurable(tmp_path):
    path = tmp_path / "sizes.jsonl"
    path.write_bytes(jsonl([explicit(0, chosen="y" * 500)]))
    assert load_preferences(path).report.rows_kept == 1
    with pytest.raises(DataLoadError, match="over the size limit"):
        load_preferences(path, max_text_chars=100)


def test_special_files_and_unreadable_paths_get_one_line_errors(tmp_path):
    import os

    pipe = tmp_path / "pipe.jsonl"
    os.mkfifo(pipe)
    with pytest.raises(DataLoadError, match="named pipe"):  # read, it would hang forever
        load_preferences(pipe)
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(tmp_path / "loop.jsonl")
    with pytest.raises(DataLoadError, match="loop of symbolic links"):
        load_preferences(loop)
    with pytest.raises(DataLoadError, match="no such file"):
        load_preferences(tmp_path / "absent.jsonl")


def test_csv_field_limit_is_restored_after_reading(tmp_path):
    import csv

    before = csv.field_size_limit()
    path = tmp_path / "long.csv"
    path.write_bytes(b"prompt,chosen,rejected\np," + b"x" * 150_000 + b",r\n")
    assert load_preferences(path).report.rows_kept == 1
    assert csv.field_size_limit() == before


def test_a_json_object_of_splits_is_read_as_splits(tmp_path):
    path = tmp_path / "splits.json"
    document = {"train": [explicit(0), explicit(1), explicit(2)], "test": [explicit(3), "not a row"]}
    path.write_text(json.dumps(document))
    dataset = load_preferences(path)
    report = dataset.report
    assert report.rows_read == 5 and report.rows_kept == 4 and report.is_consistent()
    assert report.rejection_counts() == {NOT_AN_OBJECT: 1}
    assert report.rejections[0].location == "split test item 2"
    splits = [m["hf_split"] for m in dataset.pairs["metadata"]]
    assert splits == ["train", "train", "train", "test"]


def test_a_gzip_bomb_stops_at_the_decompressed_limit(tmp_path):
    path = tmp_path / "bomb.jsonl.gz"
    path.write_bytes(gzip.compress(jsonl([explicit(0)]) + b" " * (3 << 20)))  # 3 MB of padding, ~3 KB packed
    assert path.stat().st_size < 20_000
    with pytest.raises(DataLoadError, match="expands to more than 2 MB"):
        load_preferences(path, max_decompressed_mb=2)
    assert load_preferences(path, max_decompressed_mb=4).report.rows_kept == 1


def test_adding_a_named_pipe_to_a_workspace_fails_at_once(tmp_path):
    import os

    from spectrum_core.workspace import Workspace

    pipe = tmp_path / "pipe.jsonl"
    os.mkfifo(pipe)
    with pytest.raises(DataLoadError, match="named pipe"):  # hashing it first would block forever
        Workspace(tmp_path / "ws").add_dataset(pipe)


def test_data_chosen_without_a_word_now_gets_one(tmp_path):
    """Duplicate JSON keys, an unbalanced CSV quote swallowing lines, and columns that differ only
    in case: each still loads, with a counted warning naming what was used."""
    keys = tmp_path / "keys.jsonl"
    keys.write_bytes(
        b'{"prompt": "p", "chosen": "first", "chosen": "second", "rejected": "r"}\n'
        + jsonl([explicit(1)])
        # a flat row whose text holds an escaped quote before a colon, and a spaced repeated key
        + b'{"prompt": "say \\": here", "chosen" : "x", "chosen" : "y", "rejected": "r"}\n'
    )
    dataset = load_preferences(keys)
    assert dataset.pairs.iloc[0]["chosen"] == "second" and dataset.pairs.iloc[2]["chosen"] == "y"
    assert any("2 row(s) repeat a key" in w and "line 1" in w and "'chosen'" in w for w in dataset.report.warnings)

    quote = tmp_path / "quote.csv"  # the quote opened on line 2 closes on line 3: one row, two lines
    quote.write_bytes(b'prompt,chosen,rejected\np1,"c1\np2,c2",r1\np3,c3,r3\n')
    dataset = load_preferences(quote)
    assert dataset.report.rows_kept == 2 and dataset.pairs.iloc[0]["chosen"] == "c1\np2,c2"
    assert any("span several lines" in w and "line 2, lines 2-3" in w for w in dataset.report.warnings)

    case = tmp_path / "case.csv"
    case.write_bytes(b"prompt,Chosen,chosen,rejected\np,upper,lower,r\n")
    dataset = load_preferences(case)
    assert dataset.pairs.iloc[0]["chosen"] == "lower"
    assert any("differ only in case" in w and "'chosen' was used" in w for w in dataset.report.warnings)
    assert dataset.pairs.iloc[0]["metadata"]["Chosen"] == "upper"


def test_a_file_name_that_is_not_utf8_is_added_with_escapes(tmp_path):
    import os

    from spectrum_core.workspace import Workspace

    folder = os.fsencode(tmp_path)
    raw = os.path.join(folder, b"caf\xe9.jsonl")  # Latin-1 bytes in the name
    with open(raw, "wb") as handle:
        handle.write(jsonl([explicit(0)]))
    path = os.fsdecode(raw)
    record = Workspace(tmp_path / "ws").add_dataset(path)
    assert record["name"] == "caf\\xe9.jsonl" and record["source_path"].endswith("caf\\xe9.jsonl")
    assert load_preferences(path).report.file.endswith("caf\\xe9.jsonl")
