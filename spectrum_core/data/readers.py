"""Read preference files into raw rows, each tagged with where it came from.

Formats: JSONL, JSON, CSV/TSV and Parquet, each optionally gzipped, and Hugging Face ``datasets``
folders written by ``save_to_disk``. Text is decoded as UTF-8 with ``surrogateescape``, so one bad
byte costs only the row (and field) it sits in: the loader finds the escaped bytes later and
rejects that row by name instead of failing the whole file. Nothing here unpickles anything.
"""

from __future__ import annotations

import csv
import errno
import gzip
import io
import json
import math
import os
import re
import stat
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .report import NOT_AN_OBJECT, UNPARSEABLE, DataLoadError

FORMATS = ("jsonl", "json", "csv", "tsv", "parquet", "hf-datasets")
_SUFFIX_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


# Deepest nesting a value may have: real preference rows nest a few levels (messages, metadata);
# anything deeper is rejected on its own before later stages recurse into it.
MAX_VALUE_DEPTH = 64
# CSV fields are limited by the loader's --max-text-chars (a per-row rejection by name), not by
# the csv module's 131,072-character default, which would call a long field unparseable.
CSV_FIELD_LIMIT = 2**31 - 1
# Largest a gzipped file may expand to (``max_decompressed_mb``): five times the app's 200 MB
# upload limit, so a genuine upload of well-compressed text fits and a gzip bomb (100 KB → many
# GB) stops at the limit instead of filling memory.
DEFAULT_MAX_DECOMPRESSED_MB = 1024
_CHUNK = 1 << 20
# Bytes read first to tell an empty file, a binary one and the text encoding apart.
HEAD_BYTES = 4096


# Kinds of notes a reader attaches to a row it read anyway (the loader counts them as warnings).
DUPLICATE_KEYS = "duplicate keys"
MULTI_LINE = "multi-line row"


@dataclass
class RawRow:
    location: str
    values: dict[str, Any]
    notes: list[tuple[str, str]] = field(default_factory=list)  # (kind, detail)


@dataclass
class BadRow:
    location: str
    reason: str
    detail: str = ""


def detect_format(path: Path) -> tuple[str, bool]:
    """(format, gzipped) from the file name; a folder is a saved ``datasets`` dataset."""
    if path.is_dir():
        return "hf-datasets", False
    suffixes = [s.lower() for s in path.suffixes]
    gzipped = bool(suffixes) and suffixes[-1] == ".gz"
    if gzipped:
        suffixes = suffixes[:-1]
    fmt = _SUFFIX_FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise DataLoadError(
            f"{path}: unknown file type {''.join(path.suffixes) or '(no extension)'}; accepted: "
            ".jsonl, .json, .csv, .tsv, .parquet (each optionally .gz) or a folder saved with "
            "datasets' save_to_disk."
        )
    return fmt, gzipped


class _CheckedStream(io.RawIOBase):
    """A file's bytes, read in chunks: a gzipped file is decompressed on the fly and stops with an
    error once it passes ``max_decompressed_mb``; every failure while reading (a broken archive,
    an I/O error) becomes the one-line DataLoadError naming the file, wherever the read happens."""

    def __init__(self, path: Path, gzipped: bool, max_decompressed_mb: int) -> None:
        self.path, self.max_mb, self.total = path, max_decompressed_mb, 0
        self.limit = max_decompressed_mb * (1 << 20) if gzipped else None
        try:
            self.raw = gzip.open(path, "rb") if gzipped else open(path, "rb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise DataLoadError(f"{path}: cannot be read ({exc.strerror or exc}).") from None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            count = self.raw.readinto(buffer)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise DataLoadError(f"{self.path}: not a complete gzip archive ({exc}).") from None
        except OSError as exc:
            raise DataLoadError(f"{self.path}: cannot be read ({exc.strerror or exc}).") from None
        self.total += count
        if self.limit is not None and self.total > self.limit:
            raise DataLoadError(
                f"{self.path}: expands to more than {self.max_mb:,} MB when decompressed; if the "
                "file is genuine, raise the limit (--max-decompressed-mb)."
            )
        return count

    def close(self) -> None:
        self.raw.close()
        super().close()


def open_bytes(path: Path, gzipped: bool, max_decompressed_mb: int = DEFAULT_MAX_DECOMPRESSED_MB) -> io.BufferedReader:
    """The file's bytes as a buffered stream (see _CheckedStream)."""
    return io.BufferedReader(_CheckedStream(path, gzipped, max_decompressed_mb), _CHUNK)


def read_bytes(path: Path, gzipped: bool, max_decompressed_mb: int = DEFAULT_MAX_DECOMPRESSED_MB) -> bytes:
    """The whole file's bytes (decompressed, capped): for formats that need all of it at once."""
    with open_bytes(path, gzipped, max_decompressed_mb) as stream:
        return stream.read()


_BOMS = (  # longest first: the UTF-32-LE mark starts with the UTF-16-LE one
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)


def detect_encoding(data: bytes) -> str:
    """utf-8, or the UTF-16 / UTF-32 variant a byte-order mark names, or, without a mark, the one
    whose zero bytes sit where ASCII text in that encoding puts them (first 4 KB)."""
    for mark, name in _BOMS:
        if data.startswith(mark):
            return name
    head = data[:HEAD_BYTES]
    head = head[: len(head) - len(head) % 4]
    if len(head) >= 4 and b"\x00" in head:

        def zero(offset: int, step: int) -> float:
            part = head[offset::step]
            return part.count(0) / len(part)

        if zero(1, 4) > 0.95 and zero(2, 4) > 0.95 and zero(3, 4) > 0.95:
            return "utf-32-le"
        if zero(0, 4) > 0.95 and zero(1, 4) > 0.95 and zero(2, 4) > 0.95:
            return "utf-32-be"
        if zero(1, 2) > 0.9 and zero(0, 2) < 0.1:
            return "utf-16-le"
        if zero(0, 2) > 0.9 and zero(1, 2) < 0.1:
            return "utf-16-be"
    return "utf-8"


def open_text(path: Path, gzipped: bool, encoding: str, max_decompressed_mb: int) -> io.TextIOWrapper:
    """The file as text, decoded as it is read: UTF-8 with bad bytes kept as escapes (a BOM is
    dropped), UTF-16/32 strictly (a failure surfaces as UnicodeDecodeError while reading). Lines
    end at \\r\\n, \\n or a lone \\r, untranslated (what csv wants); U+2028 and friends, which
    JSON strings may hold, do not end a line."""
    errors = "surrogateescape" if encoding == "utf-8" else "strict"
    codec = "utf-8-sig" if encoding == "utf-8" else encoding
    return io.TextIOWrapper(open_bytes(path, gzipped, max_decompressed_mb), codec, errors=errors, newline="")


def value_depth(value: Any) -> int:
    """Nesting depth of a parsed value (iterative, so a deep value cannot exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if depth > MAX_VALUE_DEPTH:
                return depth
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def _keeping_duplicates(found: list[str]):
    """A json object_pairs_hook that builds dicts as json does (the last value of a repeated key
    wins) and records each repeated key in ``found``."""

    def hook(pairs: list[tuple[str, Any]]) -> dict:
        out: dict = {}
        for key, value in pairs:
            if key in out:
                found.append(key)
            out[key] = value
        return out

    return hook


# A key's closing quote and its colon. In a flat object, as many of these in the text as keys in
# the parsed object means no key was repeated: every key contributes one, and any other match
# (an escaped quote before a colon inside a string) only adds to the count.
_KEY_END = re.compile(r'"\s*:')


def _flat_without_repeats(value: Any, text: str) -> bool:
    return (
        isinstance(value, dict)
        and not any(isinstance(v, (dict, list)) for v in value.values())
        and len(_KEY_END.findall(text)) == len(value)
    )


def _parse_json(text: str, duplicates: list[str] | None = None) -> tuple[Any, str | None]:
    """(value, None), or (None, why) for JSON Python cannot take: nesting deeper than the
    interpreter's stack or than MAX_VALUE_DEPTH, or an integer with thousands of digits. Keys
    repeated within an object are appended to ``duplicates``."""
    try:
        value = json.loads(text)
        if _flat_without_repeats(value, text):
            return value, None  # the common row, parsed once: depth 1, no repeats possible
        # Nested or suspect: parse again, watching for repeated keys and measuring the depth.
        value = json.loads(text, object_pairs_hook=_keeping_duplicates(duplicates if duplicates is not None else []))
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
    except RecursionError:
        return None, "a value nested too deeply to read"
    except ValueError as exc:  # e.g. "Exceeds the limit (4300 digits) for integer string conversion"
        return None, f"a value Python cannot read ({exc})"
    if value_depth(value) > MAX_VALUE_DEPTH:
        return None, f"a value nested deeper than {MAX_VALUE_DEPTH} levels"
    return value, None


def _plain(value: Any) -> Any:
    """Arrow / numpy values as plain Python (lists, dicts, str, int, float, None)."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _jsonl_rows(lines: Iterable[str]) -> Iterator[RawRow | BadRow]:
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped:
            continue
        duplicates: list[str] = []
        value, why = _parse_json(stripped, duplicates)
        if why is not None:
            yield BadRow(f"line {number}", UNPARSEABLE, why.replace(" at line 1,", " at"))
            continue
        if not isinstance(value, dict):
            yield BadRow(f"line {number}", NOT_AN_OBJECT, f"found a JSON {type(value).__name__}")
            continue
        notes = [(DUPLICATE_KEYS, f"key {duplicates[0]!r}")] if duplicates else []
        yield RawRow(f"line {number}", value, notes)


def _is_split_dict(document: dict) -> bool:
    """Two or more keys, each a non-empty list of which at least half the items are row objects."""
    if len(document) < 2:
        return False
    for rows in document.values():
        if not isinstance(rows, list) or not rows:
            return False
        if sum(isinstance(r, dict) for r in rows) * 2 < len(rows):
            return False
    return True


def _json_rows(path: Path, text: str) -> Iterator[RawRow | BadRow]:
    if not text.strip():
        raise DataLoadError(f"{path}: the file is empty; no rows could be read.")
    duplicates: list[str] = []
    try:
        document = json.loads(text, object_pairs_hook=_keeping_duplicates(duplicates))
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            # Several JSON objects one per line: a JSONL file with a .json name.
            yield from _jsonl_rows(io.StringIO(text, newline=""))
            return
        raise DataLoadError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); the file may be truncated."
        ) from None
    except RecursionError:
        raise DataLoadError(f"{path}: a value is nested too deeply to read; save the rows as JSONL.") from None
    except ValueError as exc:
        raise DataLoadError(f"{path}: holds a value Python cannot read ({exc}).") from None
    # A single document: repeated keys are known for the file, not per item; the first row says so.
    notes = (
        [(DUPLICATE_KEYS, f"the file repeats a key {len(duplicates)} time(s), e.g. {duplicates[0]!r}")]
        if duplicates
        else []
    )
    if isinstance(document, dict) and _is_split_dict(document):
        yield from _split_dict_rows(document, notes)
        return
    records = _document_records(document)
    if not isinstance(records, list):
        raise DataLoadError(f"{path}: expected a JSON list of objects, found a {type(records).__name__}.")
    for index, value in enumerate(records, start=1):
        if isinstance(value, dict) and value_depth(value) > MAX_VALUE_DEPTH:
            yield BadRow(f"item {index}", UNPARSEABLE, f"a value nested deeper than {MAX_VALUE_DEPTH} levels")
        elif isinstance(value, dict):
            yield RawRow(f"item {index}", value, notes)
            notes = []
        else:
            yield BadRow(f"item {index}", NOT_AN_OBJECT, f"found a JSON {type(value).__name__}")


def _split_dict_rows(document: dict, notes: list) -> Iterator[RawRow | BadRow]:
    """{"train": [rows], "test": [rows]}: a dataset's splits, kept like a DatasetDict's (each row
    gets its split as ``hf_split`` unless it has one); ``notes`` go on the first row."""
    for split, rows in document.items():
        for index, value in enumerate(rows, start=1):
            location = f"split {split} item {index}"
            if not isinstance(value, dict):
                yield BadRow(location, NOT_AN_OBJECT, f"found a JSON {type(value).__name__}")
            elif value_depth(value) > MAX_VALUE_DEPTH:
                yield BadRow(location, UNPARSEABLE, f"a value nested deeper than {MAX_VALUE_DEPTH} levels")
            else:
                value.setdefault("hf_split", split)
                yield RawRow(location, value, notes)
                notes = []


def _document_records(document: Any) -> Any:
    """The rows of a JSON document that is not a split dict: a list as it is; an object of equal-length
    columns zipped into rows; the one list inside a wrapper object; any other object as one row."""
    if not isinstance(document, dict):
        return document
    lists = [v for v in document.values() if isinstance(v, list)]
    columnar = (
        len(document) > 1
        and len(lists) == len(document)
        and len({len(v) for v in lists}) == 1
        and not any(isinstance(v[0], dict) for v in lists if v)
    )
    if columnar:
        # {"prompt": [...], "chosen": [...], "rejected": [...]}
        keys = list(document)
        return [dict(zip(keys, values)) for values in zip(*document.values())]
    if len(lists) == 1:
        # A wrapper such as {"data": [...]} or {"train": [...]}.
        return lists[0]
    return [document]


def _csv_rows(path: Path, lines: Iterable[str], delimiter: str) -> Iterator[RawRow | BadRow]:
    # The csv module's limit is process-wide: raised while this file is read, restored after.
    previous = csv.field_size_limit(CSV_FIELD_LIMIT)
    try:
        yield from _csv_fields(path, lines, delimiter)
    finally:
        csv.field_size_limit(previous)


def _csv_fields(path: Path, lines: Iterable[str], delimiter: str) -> Iterator[RawRow | BadRow]:
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise DataLoadError(f"{path}: cannot read the CSV header ({exc}).") from None
    header = [h.strip() for h in header]
    if len(set(header)) != len(header):
        dupes = sorted({h for h in header if header.count(h) > 1})
        raise DataLoadError(f"{path}: the CSV header repeats column names {dupes}.")
    while True:
        start_line = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield BadRow(f"line {start_line}", UNPARSEABLE, f"CSV error: {exc}")
            continue
        if not fields or all(not f.strip() for f in fields) and len(fields) <= 1:
            continue
        if len(fields) != len(header):
            yield BadRow(f"line {start_line}", UNPARSEABLE, f"{len(fields)} fields where the header has {len(header)}")
            continue
        values = {h: (f if f != "" else None) for h, f in zip(header, fields)}
        spans = [(MULTI_LINE, f"lines {start_line}-{reader.line_num}")] if reader.line_num > start_line else []
        yield RawRow(f"line {start_line}", values, spans)


def _arrow_rows(batches: Iterable, location_prefix: str = "") -> Iterator[RawRow]:
    index = 0
    for batch in batches:
        for record in batch.to_pylist():
            index += 1
            yield RawRow(f"{location_prefix}row {index}", _plain(record))


# Rows converted to Python objects at a time: enough to amortise Arrow's per-batch cost, few
# enough that a file of millions of rows never exists as Python objects all at once.
ARROW_BATCH_ROWS = 1024


def _parquet_rows(path: Path, gzipped: bool, max_decompressed_mb: int) -> Iterator[RawRow | BadRow]:
    """Row groups read in batches; a gzipped file is decompressed (capped) into memory first, since
    Parquet needs random access."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        source = pa.BufferReader(read_bytes(path, True, max_decompressed_mb)) if gzipped else str(path)
        parquet = pq.ParquetFile(source)
        yield from _arrow_rows(parquet.iter_batches(batch_size=ARROW_BATCH_ROWS))
    except (pa.ArrowException, OSError) as exc:
        raise DataLoadError(f"{path}: not a readable Parquet file ({exc}).") from None


def _hf_rows(path: Path) -> Iterator[RawRow | BadRow]:
    import datasets

    if not (
        (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists() or (path / "state.json").exists()
    ):
        raise DataLoadError(
            f"{path}: a folder, but not one written by datasets' save_to_disk "
            "(no dataset_info.json, state.json or dataset_dict.json)."
        )
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # noqa: BLE001 - datasets raises many types; the message matters
        raise DataLoadError(f"{path}: datasets could not load this folder ({exc}).") from None
    if isinstance(loaded, datasets.DatasetDict):
        for split, dataset in loaded.items():
            for row in _arrow_rows(dataset.data.table.to_batches(ARROW_BATCH_ROWS), f"split {split} "):
                row.values.setdefault("hf_split", split)
                yield row
    else:
        yield from _arrow_rows(loaded.data.table.to_batches(ARROW_BATCH_ROWS))


def display_path(path: str | Path) -> str:
    """A path as text that can always be written (JSON, SQLite, a terminal): bytes of the name
    that are not UTF-8 appear as \\xNN escapes instead of lone surrogates."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def check_readable(path: Path) -> None:
    """Raise DataLoadError unless ``path`` is a regular file or a folder this process can read
    (a named pipe would block forever; a symbolic-link loop is not "no such file")."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DataLoadError(f"{path}: a loop of symbolic links; it points back to itself.") from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise DataLoadError(f"{path}: no such file or folder.") from None
        raise DataLoadError(f"{path}: cannot be read ({exc.strerror or exc}).") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        kind = "a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise DataLoadError(f"{path}: is {kind}, not a file; only regular files and folders are read.")
    if stat.S_ISREG(mode) and not os.access(path, os.R_OK):
        raise DataLoadError(f"{path}: cannot be read (permission denied).")


def read_rows(
    path: Path, file_format: str | None = None, max_decompressed_mb: int = DEFAULT_MAX_DECOMPRESSED_MB
) -> tuple[str, Iterator[RawRow | BadRow]]:
    """(format name, iterator of rows). Raises DataLoadError for a file that cannot be read."""
    path = Path(path)
    check_readable(path)
    fmt, gzipped = detect_format(path)
    if file_format:
        if file_format not in FORMATS:
            raise DataLoadError(f"{path}: unknown format {file_format!r}; use one of {', '.join(FORMATS)}.")
        fmt = file_format
    label = fmt + (".gz" if gzipped else "")
    if fmt == "hf-datasets":
        return label, _hf_rows(path)
    if fmt == "parquet":
        return label, _parquet_rows(path, gzipped, max_decompressed_mb)
    with open_bytes(path, gzipped, max_decompressed_mb) as stream:
        head = stream.read(HEAD_BYTES)
    if not head.strip() and len(head) < HEAD_BYTES:
        raise DataLoadError(f"{path}: the file is empty; no rows could be read.")
    encoding = detect_encoding(head)
    if encoding == "utf-8" and b"\x00" in head:
        raise DataLoadError(f"{path}: contains NUL bytes; this looks like a binary file, not {fmt}.")
    if encoding != "utf-8":
        label += f" ({encoding.upper()})"
    return label, _text_rows(path, fmt, gzipped, encoding, max_decompressed_mb)


def _text_rows(
    path: Path, fmt: str, gzipped: bool, encoding: str, max_decompressed_mb: int
) -> Iterator[RawRow | BadRow]:
    """JSONL and CSV/TSV rows as the text streams past (memory stays that of one row); a JSON
    document is one value, so it is read whole."""
    try:
        with open_text(path, gzipped, encoding, max_decompressed_mb) as text:
            if fmt == "jsonl":
                yield from _jsonl_rows(text)
            elif fmt == "json":
                yield from _json_rows(path, text.read())
            else:
                yield from _csv_rows(path, text, "\t" if fmt == "tsv" else ",")
    except UnicodeDecodeError as exc:
        raise DataLoadError(
            f"{path}: looks like {encoding.upper()} but is not valid {encoding.upper()} ({exc.reason})."
        ) from None
