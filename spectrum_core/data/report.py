"""The load report: what was read, kept, rejected (with file, place, field and reason) and merged.

Every row read ends up in exactly one of three places: kept, rejected, or merged into an exact
duplicate, so ``rows_read == rows_kept + rows_rejected + duplicates_merged`` always holds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from ..errors import SpectrumError

# Reasons a row is rejected. Tests and the UI group rejections by these strings.
MISSING_FIELD = "missing field"
EMPTY_RESPONSE = "empty response"
IDENTICAL = "chosen identical to rejected"
UNDECODABLE = "undecodable text"
UNPARSEABLE = "unparseable line"
TOO_LARGE = "over the size limit"
BAD_LABEL = "unusable label"
BAD_MESSAGES = "malformed messages"
MULTI_TURN = "response longer than one turn"
NOT_AN_OBJECT = "row is not an object"


@dataclass
class Rejection:
    file: str
    location: str  # "line 12", "row 7", "item 3", "split train row 5"
    field: str | None
    reason: str
    detail: str = ""

    def __str__(self) -> str:
        where = f"{self.file}, {self.location}"
        if self.field:
            where += f", field '{self.field}'"
        return f"{where}: {self.reason}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class DuplicateMerge:
    location: str
    kept_location: str
    pair_id: str


@dataclass
class LoadReport:
    file: str
    file_format: str = ""
    schema: str = ""
    columns_found: list[str] = field(default_factory=list)
    column_map: dict[str, str] = field(default_factory=dict)
    rows_read: int = 0
    rows_kept: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    duplicates: list[DuplicateMerge] = field(default_factory=list)
    pairs_without_prompt: int = 0
    conflicting_pairs: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def rows_rejected(self) -> int:
        return len(self.rejections)

    @property
    def duplicates_merged(self) -> int:
        return len(self.duplicates)

    def reject(self, location: str, field_name: str | None, reason: str, detail: str = "") -> None:
        self.rejections.append(Rejection(self.file, location, field_name, reason, detail))

    def rejection_counts(self) -> dict[str, int]:
        return dict(Counter(r.reason for r in self.rejections).most_common())

    def is_consistent(self) -> bool:
        return self.rows_read == self.rows_kept + self.rows_rejected + self.duplicates_merged

    def summary(self, max_examples: int = 10) -> str:
        lines = [
            f"File: {self.file}",
            f"Format: {self.file_format}   Schema: {self.schema}",
            f"Rows read: {self.rows_read}   kept: {self.rows_kept}   rejected: {self.rows_rejected}"
            f"   exact duplicates merged: {self.duplicates_merged}",
        ]
        if self.column_map:
            lines.append("Column map: " + ", ".join(f"{k} <- {v}" for k, v in self.column_map.items()))
        if self.pairs_without_prompt:
            lines.append(f"Pairs with no prompt (the texts share no prefix): {self.pairs_without_prompt}")
        if self.conflicting_pairs:
            lines.append(f"Pairs that also appear with chosen and rejected swapped: {self.conflicting_pairs}")
        for reason, count in self.rejection_counts().items():
            lines.append(f"  rejected, {reason}: {count}")
        for rejection in self.rejections[:max_examples]:
            lines.append(f"    {rejection}")
        if self.rows_rejected > max_examples:
            lines.append(f"    ... and {self.rows_rejected - max_examples} more")
        lines.extend(f"Warning: {w}" for w in self.warnings)
        return "\n".join(lines)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(
            rows_rejected=self.rows_rejected,
            duplicates_merged=self.duplicates_merged,
            rejection_counts=self.rejection_counts(),
        )
        return data

    @classmethod
    def from_dict(cls, data: dict) -> LoadReport:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["rejections"] = [Rejection(**r) for r in known.get("rejections", [])]
        known["duplicates"] = [DuplicateMerge(**d) for d in known.get("duplicates", [])]
        return cls(**known)


class DataLoadError(SpectrumError, ValueError):
    """The file as a whole cannot be used. The message names the file and says why."""

    def __init__(self, message: str, report: LoadReport | None = None):
        super().__init__(message)
        self.report = report
