"""The preference-data schemas Spectrum recognises, and how each row becomes a pair.

Every schema turns a raw row into three conversations: the prompt (possibly empty), the chosen
continuation and the rejected one. The loader then moves any turns the two continuations share
into the prompt and requires what is left of each to be a single assistant turn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import SpectrumError
from .messages import MessageError, is_missing, to_messages
from .report import BAD_LABEL, BAD_MESSAGES, MISSING_FIELD


class RowError(SpectrumError, ValueError):
    def __init__(self, field: str | None, reason: str, detail: str = ""):
        super().__init__(f"{field}: {reason} {detail}".strip())
        self.field, self.reason, self.detail = field, reason, detail


class SchemaError(SpectrumError, ValueError):
    """No accepted schema matches the columns; the message lists both."""


@dataclass
class RawPair:
    prompt: list[dict]
    chosen: list[dict]
    rejected: list[dict]
    used_columns: tuple[str, ...]
    chosen_field: str = "chosen"
    rejected_field: str = "rejected"


@dataclass(frozen=True)
class Schema:
    name: str
    description: str
    required: tuple[str, ...]
    build: Callable[[dict, dict[str, str]], RawPair]
    # Any one of these must also be present (LLaMA-Factory's conversation column has two names).
    one_of: tuple[str, ...] = ()


def _get(row: dict, cols: dict[str, str], name: str) -> Any:
    actual = cols.get(name, name)
    value = row.get(actual)
    if is_missing(value):
        raise RowError(actual, MISSING_FIELD)
    return value


def _messages(row: dict, cols: dict[str, str], name: str, default_role: str, transcripts: bool = True) -> list[dict]:
    value = _get(row, cols, name)
    try:
        return to_messages(value, default_role, transcripts=transcripts)
    except MessageError as exc:
        raise RowError(cols.get(name, name), BAD_MESSAGES, str(exc)) from None


def _used(cols: dict[str, str], *names: str) -> tuple[str, ...]:
    return tuple(cols[n] for n in names if n in cols)


def _trl_explicit(row: dict, cols: dict[str, str]) -> RawPair:
    return RawPair(
        prompt=_messages(row, cols, "prompt", "user"),
        # With an explicit prompt, the responses are plain completions, never transcripts.
        chosen=_messages(row, cols, "chosen", "assistant", transcripts=False),
        rejected=_messages(row, cols, "rejected", "assistant", transcripts=False),
        used_columns=_used(cols, "prompt", "chosen", "rejected"),
    )


def _trl_implicit(row: dict, cols: dict[str, str]) -> RawPair:
    return RawPair(
        prompt=[],
        chosen=_messages(row, cols, "chosen", "assistant"),
        rejected=_messages(row, cols, "rejected", "assistant"),
        used_columns=_used(cols, "chosen", "rejected"),
    )


_A_VALUES = {"a", "response_a", "model_a", "1", "1.0", "true", "first", "left"}
_B_VALUES = {"b", "response_b", "model_b", "0", "0.0", "false", "second", "right"}


def parse_ab_label(value: Any, field: str) -> str:
    """'A' or 'B'. Numeric labels follow WIMHF: 1 means response_A was preferred, 0 response_B."""
    if is_missing(value):
        raise RowError(field, MISSING_FIELD, "label is empty or NaN")
    if isinstance(value, bool):
        return "A" if value else "B"
    text = str(value).strip().lower()
    if text in _A_VALUES:
        return "A"
    if text in _B_VALUES:
        return "B"
    if text in {"tie", "0.5", "draw", "equal", "both", "neither"}:
        raise RowError(field, BAD_LABEL, f"{value!r} is a tie: no preference to learn from")
    if text in {"nan", "none", "null", ""}:
        raise RowError(field, MISSING_FIELD, f"label is {value!r}")
    raise RowError(field, BAD_LABEL, f"{value!r}; use A/B, response_A/response_B, or 1 (A preferred) / 0 (B preferred)")


def _ab_label(row: dict, cols: dict[str, str]) -> RawPair:
    winner = parse_ab_label(row.get(cols["label"]), cols["label"])
    a = _messages(row, cols, "response_a", "assistant", transcripts=False)
    b = _messages(row, cols, "response_b", "assistant", transcripts=False)
    names = (cols["response_a"], cols["response_b"])
    chosen, rejected = (a, b) if winner == "A" else (b, a)
    fields = names if winner == "A" else names[::-1]
    return RawPair(
        _messages(row, cols, "prompt", "user"),
        chosen,
        rejected,
        _used(cols, "prompt", "response_a", "response_b", "label"),
        *fields,
    )


def _icai(row: dict, cols: dict[str, str]) -> RawPair:
    field = cols["preferred_text"]
    preferred = row.get(field)
    if is_missing(preferred):
        raise RowError(field, MISSING_FIELD)
    text = str(preferred).strip().lower()
    if text in {"text_a", "a"}:
        winner = "A"
    elif text in {"text_b", "b"}:
        winner = "B"
    else:
        raise RowError(field, BAD_LABEL, f"{preferred!r}; use text_a or text_b")
    a = _messages(row, cols, "text_a", "assistant")
    b = _messages(row, cols, "text_b", "assistant")
    names = (cols["text_a"], cols["text_b"])
    chosen, rejected = (a, b) if winner == "A" else (b, a)
    fields = names if winner == "A" else names[::-1]
    return RawPair([], chosen, rejected, _used(cols, "text_a", "text_b", "preferred_text"), *fields)


def _llamafactory(row: dict, cols: dict[str, str]) -> RawPair:
    """ShareGPT style (conversations + chosen + rejected, optional system) or Alpaca style
    (instruction + input + chosen + rejected). A ``prompt`` column holding the last user turn is
    appended unless the conversation already ends with it."""
    prompt: list[dict] = []
    conv_name = "conversations" if "conversations" in cols else "conversation"
    if conv_name in cols:
        value = row.get(cols[conv_name])
        if not is_missing(value):
            try:
                prompt = to_messages(value, "user", transcripts=False)
            except MessageError as exc:
                raise RowError(cols[conv_name], BAD_MESSAGES, str(exc)) from None
    elif "instruction" in cols:
        instruction = _get(row, cols, "instruction")
        extra = row.get(cols["input"]) if "input" in cols else None
        text = str(instruction) + (f"\n\n{extra}" if not is_missing(extra) and str(extra).strip() else "")
        prompt = [{"role": "user", "content": text}]
    last_user = row.get(cols["prompt"]) if "prompt" in cols else None
    if isinstance(last_user, str) and last_user.strip():
        if not prompt or prompt[-1] != {"role": "user", "content": last_user}:
            prompt = prompt + [{"role": "user", "content": last_user}]
    if not prompt:
        raise RowError(cols.get(conv_name, conv_name), MISSING_FIELD, "no conversation or prompt")
    system = row.get(cols["system"]) if "system" in cols else None
    if isinstance(system, str) and system.strip() and prompt[0]["role"] != "system":
        prompt = [{"role": "system", "content": system}] + prompt
    return RawPair(
        prompt=prompt,
        chosen=_messages(row, cols, "chosen", "assistant", transcripts=False),
        rejected=_messages(row, cols, "rejected", "assistant", transcripts=False),
        used_columns=_used(cols, conv_name, "instruction", "input", "prompt", "system", "chosen", "rejected"),
    )


# In detection order: the most specific column sets first.
SCHEMAS: dict[str, Schema] = {
    s.name: s
    for s in [
        Schema(
            "ab-label",
            "WIMHF A/B with a label: prompt, response_A, response_B, label",
            ("prompt", "response_a", "response_b", "label"),
            _ab_label,
        ),
        Schema(
            "icai",
            "Inverse Constitutional AI: text_a, text_b, preferred_text",
            ("text_a", "text_b", "preferred_text"),
            _icai,
        ),
        Schema(
            "llamafactory",
            "LLaMA-Factory: conversation(s) or instruction/input, chosen, rejected",
            ("chosen", "rejected"),
            _llamafactory,
            one_of=("conversation", "conversations", "instruction"),
        ),
        Schema(
            "trl-explicit",
            "TRL explicit prompt: prompt, chosen, rejected (text or messages)",
            ("prompt", "chosen", "rejected"),
            _trl_explicit,
        ),
        Schema(
            "trl-implicit",
            "TRL implicit prompt: chosen, rejected as whole conversations "
            "(messages or transcripts such as HH-RLHF's Human:/Assistant:)",
            ("chosen", "rejected"),
            _trl_implicit,
        ),
    ]
}

CANONICAL_COLUMNS = (
    "prompt",
    "chosen",
    "rejected",
    "response_a",
    "response_b",
    "label",
    "text_a",
    "text_b",
    "preferred_text",
    "conversation",
    "conversations",
    "instruction",
    "input",
    "system",
)


def resolve_columns(columns: list[str], column_map: dict[str, str] | None = None) -> dict[str, str]:
    """Canonical name -> actual column. The user's map wins; otherwise names match ignoring case."""
    column_map = dict(column_map or {})
    unknown = [c for c in column_map if c.lower() not in CANONICAL_COLUMNS]
    if unknown:
        raise SchemaError(
            f"Column map names unknown fields {unknown}; map any of {', '.join(CANONICAL_COLUMNS)} to your columns."
        )
    missing = [v for v in column_map.values() if v not in columns]
    if missing:
        raise SchemaError(
            f"Column map refers to columns {missing} that are not in the file; columns found: {', '.join(columns)}."
        )
    resolved = {}
    mapped_sources = set(column_map.values())
    # Columns that differ only in case: the exactly lower-case one, else the first (the loader
    # warns and names the one used).
    by_lower: dict[str, str] = {}
    for c in columns:
        if c not in mapped_sources and (c.lower() not in by_lower or c == c.lower()):
            by_lower.setdefault(c.lower(), c)
            if c == c.lower():
                by_lower[c] = c
    for name in CANONICAL_COLUMNS:
        if name in by_lower:
            resolved[name] = by_lower[name]
    for name, actual in column_map.items():
        resolved[name.lower()] = actual
    return resolved


def detect_schema(columns: list[str], cols: dict[str, str], forced: str | None = None) -> Schema:
    if forced:
        if forced not in SCHEMAS:
            raise SchemaError(f"Unknown schema {forced!r}; accepted: {', '.join(SCHEMAS)}.")
        schema = SCHEMAS[forced]
        missing = [c for c in schema.required if c not in cols]
        if missing:
            raise SchemaError(
                f"Schema {forced} needs columns {missing}; columns found: "
                f"{', '.join(columns)}. Map them with --map FIELD=COLUMN."
            )
        return schema
    for schema in SCHEMAS.values():
        if all(c in cols for c in schema.required) and (not schema.one_of or any(c in cols for c in schema.one_of)):
            return schema
    accepted = "\n".join(f"  - {s.name}: {s.description}" for s in SCHEMAS.values())
    raise SchemaError(
        f"No accepted schema matches the columns found: {', '.join(columns) or '(none)'}.\n"
        f"Accepted schemas:\n{accepted}\n"
        "Map your columns by hand, e.g. --map prompt=question --map chosen=good --map rejected=bad."
    )
