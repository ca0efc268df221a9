"""Load a preference file into one normalised table of pairs, with a report of every row.

The table has one row per pair:

- ``pair_id``: 16 hex digits of a SHA-256 over the prompt, chosen and rejected texts, so the same
  pair gets the same id in any file, format or order;
- ``prompt``: the conversation before the response, as ``[{"role", "content"}, ...]`` (empty when
  two plain texts share no prefix);
- ``chosen`` / ``rejected``: the final assistant turn of each side, as text;
- ``source``: where the row was in the file (``line 12``, ``row 7`` ...);
- ``duplicates``: how many exact copies of this pair were merged into it;
- ``metadata``: every column the schema did not use, as a dict;
- ``split``: ``train`` or ``held_out``, grouped by prompt so no prompt is on both sides.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .. import constants as names
from .messages import render_plain, shared_prefix_length, split_shared_text_prefix
from .readers import DEFAULT_MAX_DECOMPRESSED_MB, DUPLICATE_KEYS, MULTI_LINE, BadRow, RawRow, display_path, read_rows
from .report import (
    BAD_MESSAGES,
    EMPTY_RESPONSE,
    IDENTICAL,
    MULTI_TURN,
    TOO_LARGE,
    UNDECODABLE,
    DataLoadError,
    DuplicateMerge,
    LoadReport,
)
from .schemas import RawPair, RowError, Schema, SchemaError, detect_schema, resolve_columns
from .split import assign_split

DEFAULT_MAX_TEXT_CHARS = 200_000
PAIR_COLUMNS = ["pair_id", "prompt", "chosen", "rejected", "split", "source", "duplicates", "metadata"]


_SURROGATES = re.compile("[\ud800-\udfff]")


def _has_undecodable(value: Any) -> bool:
    """True when text carries surrogate code points: bytes that were not valid UTF-8 (kept as
    escapes by the readers) or a lone surrogate from a JSON escape such as \\ud800. Neither can be
    written as UTF-8, so either would fail later (pair ids, JSON output, the workspace)."""
    if isinstance(value, str):
        return _SURROGATES.search(value) is not None
    if isinstance(value, dict):
        return any(_has_undecodable(k) or _has_undecodable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_undecodable(v) for v in value)
    return False


def _text_length(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_text_length(v) for v in value.values())
    if isinstance(value, list):
        return sum(_text_length(v) for v in value)
    return 0


def _repair(value: Any) -> Any:
    """Every surrogate code point replaced by U+FFFD (metadata is kept, repaired, and counted)."""
    if isinstance(value, str):
        return _SURROGATES.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_repair(k): _repair(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_repair(v) for v in value]
    return value


NOTE_WARNINGS = {
    DUPLICATE_KEYS: "{n} row(s) repeat a key within one JSON object and only the last value was kept "
    "(first: {where}, {detail})",
    MULTI_LINE: "{n} row(s) span several lines through quoted line breaks (first: {where}, {detail}); if "
    "that is not intended, a quote may be unbalanced and have swallowed the lines after it",
}


class _NoteCounter:
    """Reader notes counted by kind, keeping the first of each (the rows themselves are not kept)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.first: dict[str, tuple[str, str]] = {}

    def add(self, row: RawRow) -> None:
        for kind, detail in row.notes:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            self.first.setdefault(kind, (row.location, detail))

    def warnings(self) -> list[str]:
        """One warning per kind of note: how many rows, and the first one."""
        return [
            NOTE_WARNINGS[kind].format(n=n, where=self.first[kind][0], detail=self.first[kind][1])
            for kind, n in self.counts.items()
        ]


def _canonical_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def make_pair_id(prompt: list[dict], chosen: str, rejected: str) -> str:
    return _digest(_canonical_json([prompt, chosen, rejected]))


def prompt_key(prompt: list[dict]) -> str:
    return _digest(_canonical_json(prompt))


def _pair_ids(prompt_json: str, chosen: str, rejected: str) -> tuple[str, str]:
    """(pair id, id of the same pair with the sides swapped) from the prompt's canonical JSON,
    encoded once: json.dumps of a list is its items' encodings joined by ", " inside brackets, so
    these equal make_pair_id's (tests check it on real rows)."""
    chosen_json, rejected_json = _canonical_json(chosen), _canonical_json(rejected)
    return (
        _digest(f"[{prompt_json}, {chosen_json}, {rejected_json}]"),
        _digest(f"[{prompt_json}, {rejected_json}, {chosen_json}]"),
    )


def _final_turns(raw: RawPair, chosen_field: str, rejected_field: str) -> tuple[list[dict], str, str]:
    """Move what chosen and rejected share into the prompt; each must then be one assistant turn."""
    if (
        not raw.prompt
        and len(raw.chosen) == len(raw.rejected) == 1
        and raw.chosen[0]["role"] == raw.rejected[0]["role"] == "assistant"
    ):
        # Two plain texts (TRL implicit prompt without speaker markers): the prompt is their
        # shared leading text.
        prefix, chosen, rejected = split_shared_text_prefix(raw.chosen[0]["content"], raw.rejected[0]["content"])
        prompt = [{"role": "user", "content": prefix.strip()}] if prefix.strip() else []
        return prompt, chosen.strip(), rejected.strip()
    shared = shared_prefix_length(raw.chosen, raw.rejected)
    prompt = raw.prompt + raw.chosen[:shared]
    sides = []
    for field, rest in ((chosen_field, raw.chosen[shared:]), (rejected_field, raw.rejected[shared:])):
        if not rest:
            if len(raw.chosen) == len(raw.rejected):
                raise RowError(chosen_field, IDENTICAL, "the two conversations are the same")
            raise RowError(field, EMPTY_RESPONSE, "nothing after the turns both sides share")
        if len(rest) > 1:
            raise RowError(
                field,
                MULTI_TURN,
                f"{len(rest)} turns after the shared prompt; Spectrum compares one final assistant turn per side",
            )
        if rest[0]["role"] != "assistant":
            raise RowError(field, BAD_MESSAGES, f"the response turn is from '{rest[0]['role']}', not the assistant")
        sides.append(rest[0]["content"].strip())
    return prompt, sides[0], sides[1]


@dataclass
class PreferenceDataset:
    """Normalised preference pairs plus the report of how they were loaded."""

    pairs: pd.DataFrame
    report: LoadReport

    def __len__(self) -> int:
        return len(self.pairs)

    def split(self, name: str) -> pd.DataFrame:
        return self.pairs[self.pairs["split"] == name]

    def to_trl_records(self, split: str | None = None) -> list[dict]:
        """TRL's explicit-prompt conversational format: prompt, chosen, rejected as messages."""
        frame = self.pairs if split is None else self.split(split)
        return [
            {
                "pair_id": row.pair_id,
                "prompt": list(row.prompt),
                "chosen": [{"role": "assistant", "content": row.chosen}],
                "rejected": [{"role": "assistant", "content": row.rejected}],
            }
            for row in frame.itertuples()
        ]

    def save(self, folder: Path) -> None:
        """pairs.parquet (prompt and metadata as JSON text) and report.json."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        frame = self.pairs.copy()
        frame["prompt"] = [json.dumps(p, ensure_ascii=False) for p in frame["prompt"]]
        frame["metadata"] = [json.dumps(m, ensure_ascii=False, default=str) for m in frame["metadata"]]
        frame.to_parquet(folder / names.DATASET_PAIRS_FILE, index=False)
        (folder / names.REPORT_FILE).write_text(
            json.dumps(self.report.to_dict(), indent=1, ensure_ascii=False, default=str)
        )

    @classmethod
    def load(cls, folder: Path) -> PreferenceDataset:
        folder = Path(folder)
        frame = pd.read_parquet(folder / names.DATASET_PAIRS_FILE)
        frame["prompt"] = [json.loads(p) for p in frame["prompt"]]
        frame["metadata"] = [json.loads(m) for m in frame["metadata"]]
        report = LoadReport.from_dict(json.loads((folder / names.REPORT_FILE).read_text()))
        return cls(frame, report)


def load_preferences(
    path: str | Path,
    *,
    schema: str | None = None,
    column_map: dict[str, str] | None = None,
    file_format: str | None = None,
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
    max_decompressed_mb: int = DEFAULT_MAX_DECOMPRESSED_MB,
    held_out_fraction: float = 0.2,
    seed: int = 0,
) -> PreferenceDataset:
    """Read a preference file in any accepted format and schema.

    Rows that cannot be used are rejected with file, place, field and reason in the report;
    exact duplicates are merged and counted. Raises ``DataLoadError`` when the file itself cannot
    be read or yields no usable pair, and ``SchemaError`` when no schema fits its columns.
    """
    path = Path(path)
    report = LoadReport(file=display_path(path), column_map=dict(column_map or {}))
    # Two passes over the file, so no more than one raw row is held at a time: the first finds
    # the columns (the schema depends on all of them) and rejects what cannot be read; the second
    # builds the pairs. Memory is then that of the pairs kept.
    report.file_format, rows = read_rows(path, file_format, max_decompressed_mb)
    columns, unreadable = _scan_columns(rows, report)
    if len(unreadable) == report.rows_read:
        raise DataLoadError(f"{path}: no rows could be read.\n{report.summary()}", report)
    cols, chosen_schema = _choose_schema(path, columns, column_map, schema, report)
    second = _collect_pairs(
        read_rows(path, file_format, max_decompressed_mb)[1], unreadable, chosen_schema, cols, max_text_chars, report
    )
    if second.rows_read != report.rows_read:
        raise DataLoadError(
            f"{path}: the file changed while it was being read ({report.rows_read:,} rows, then {second.rows_read:,})."
        )
    kept = second.kept
    report.rows_kept = len(kept["pair_id"])
    report.pairs_without_prompt = sum(1 for p in kept["prompt"] if not p)
    report.conflicting_pairs = second.conflicting
    if second.repaired_metadata:
        report.warnings.append(
            f"{second.repaired_metadata} rows had invalid UTF-8 in metadata columns; "
            "those bytes were replaced with U+FFFD (the pairs themselves are intact)"
        )
    if not report.rows_kept:
        raise DataLoadError(f"{path}: no usable pairs.\n{report.summary()}", report)
    split = assign_split(kept.pop("prompt_key"), held_out_fraction=held_out_fraction, seed=seed)
    pairs = pd.DataFrame(kept)
    pairs["split"] = split
    return PreferenceDataset(pairs[PAIR_COLUMNS], report)


def _scan_columns(rows: Iterable[RawRow | BadRow], report: LoadReport) -> tuple[list[str], set[int]]:
    """The first pass: every column name in the file (in order of first appearance), and the
    positions of the rows rejected as unreadable, which the second pass skips."""
    columns_seen: dict[str, None] = {}
    notes = _NoteCounter()
    unreadable: set[int] = set()
    for position, row in enumerate(rows):
        report.rows_read += 1
        if isinstance(row, BadRow):
            report.reject(row.location, None, row.reason, row.detail)
            unreadable.add(position)
        elif any(_has_undecodable(key) for key in row.values):
            key = next(k for k in row.values if _has_undecodable(k))
            report.reject(row.location, _repair(key), UNDECODABLE, "a column name that is not valid UTF-8")
            unreadable.add(position)
        else:
            columns_seen.update(dict.fromkeys(row.values))
            notes.add(row)
    columns = list(columns_seen)
    report.columns_found = columns
    report.warnings.extend(notes.warnings())
    return columns, unreadable


def _choose_schema(
    path: Path, columns: list[str], column_map: dict[str, str] | None, schema: str | None, report: LoadReport
) -> tuple[dict[str, str], Schema]:
    """The columns each field is read from and the schema that fits them, with a warning for every
    column that differs from a used one only in case."""
    try:
        cols = resolve_columns(columns, column_map)
        chosen_schema = detect_schema(columns, cols, schema)
    except SchemaError as exc:
        raise SchemaError(f"{path}: {exc}") from None
    report.schema = chosen_schema.name
    for name, used in cols.items():
        twins = [c for c in columns if c.lower() == name.lower() and c != used]
        if twins:
            report.warnings.append(
                f"columns {', '.join(repr(c) for c in [used, *twins])} differ only in case: {used!r} was used for "
                f"{name}; the other(s) are kept in each pair's metadata"
            )
    return cols, chosen_schema


@dataclass
class _SecondPass:
    """What the second pass leaves: the kept pairs column by column (``prompt_key`` for the split,
    no ``split`` yet), and the counts the report needs."""

    kept: dict[str, list]
    rows_read: int
    conflicting: int  # kept pairs whose swap (chosen and rejected exchanged) is also kept
    repaired_metadata: int


def _collect_pairs(
    rows: Iterable[RawRow | BadRow],
    unreadable: set[int],
    chosen_schema: Schema,
    cols: dict[str, str],
    max_text_chars: int,
    report: LoadReport,
) -> _SecondPass:
    """The second pass: each readable row checked and turned into a pair (or rejected in the
    report), exact duplicates merged into the first copy and counted."""
    kept: dict[str, list] = {name: [] for name in (*PAIR_COLUMNS, "prompt_key")}
    kept.pop("split")
    seen: dict[str, int] = {}
    swapped: set[str] = set()
    repaired_metadata = 0
    rows_read = 0
    for position, row in enumerate(rows):
        rows_read += 1
        if position in unreadable or not isinstance(row, RawRow):
            continue  # counted and reported in the first pass
        try:
            raw, prompt, chosen, rejected = _checked_pair(row, chosen_schema, cols, max_text_chars)
        except RowError as exc:
            report.reject(row.location, exc.field, exc.reason, exc.detail)
            continue
        prompt_json = _canonical_json(prompt)
        pair_id, swapped_id = _pair_ids(prompt_json, chosen, rejected)
        if pair_id in seen:
            index = seen[pair_id]
            kept["duplicates"][index] += 1
            report.duplicates.append(DuplicateMerge(row.location, kept["source"][index], pair_id))
            continue
        metadata = {k: v for k, v in row.values.items() if k not in raw.used_columns}
        if _has_undecodable(metadata):
            metadata = _repair(metadata)
            repaired_metadata += 1
        seen[pair_id] = len(kept["pair_id"])
        swapped.add(swapped_id)
        for name, value in (
            ("pair_id", pair_id),
            ("prompt", prompt),
            ("chosen", chosen),
            ("rejected", rejected),
            ("source", row.location),
            ("duplicates", 0),
            ("metadata", metadata),
            ("prompt_key", _digest(prompt_json)),
        ):
            kept[name].append(value)
    conflicting = sum(1 for pair_id in kept["pair_id"] if pair_id in swapped)
    return _SecondPass(kept, rows_read, conflicting, repaired_metadata)


def _checked_pair(
    row: RawRow, chosen_schema: Schema, cols: dict[str, str], max_text_chars: int
) -> tuple[RawPair, list[dict], str, str]:
    """One row read by the schema: (raw pair, prompt, chosen, rejected), or ``RowError`` for text
    that is not valid UTF-8 or over ``max_text_chars``, an empty response or two identical ones."""
    raw = chosen_schema.build(row.values, cols)
    for column in raw.used_columns:
        value = row.values.get(column)
        if _has_undecodable(value):
            raise RowError(column, UNDECODABLE, "bytes that are not valid UTF-8")
        size = _text_length(value)
        if size > max_text_chars:
            raise RowError(column, TOO_LARGE, f"{size:,} characters; limit {max_text_chars:,}")
    chosen_field = cols.get(raw.chosen_field, raw.chosen_field)
    rejected_field = cols.get(raw.rejected_field, raw.rejected_field)
    prompt, chosen, rejected = _final_turns(raw, chosen_field, rejected_field)
    for field, text in ((chosen_field, chosen), (rejected_field, rejected)):
        if not text:
            raise RowError(field, EMPTY_RESPONSE)
    if chosen == rejected:
        raise RowError(chosen_field, IDENTICAL)
    return raw, prompt, chosen, rejected


def describe_pair(row: Any, max_chars: int = 400) -> str:
    """A short printable view of one pair, for the CLI."""

    def clip(text: str) -> str:
        return text if len(text) <= max_chars else text[:max_chars] + " …"

    return "\n".join(
        [
            f"pair {row['pair_id']} ({row['source']}, {row['split']})",
            "  PROMPT:   " + clip(render_plain(row["prompt"]) or "(none)").replace("\n", "\n            "),
            "  CHOSEN:   " + clip(row["chosen"]).replace("\n", "\n            "),
            "  REJECTED: " + clip(row["rejected"]).replace("\n", "\n            "),
        ]
    )
