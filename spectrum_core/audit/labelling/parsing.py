"""Reading an LLM's replies: a list of candidate labels, and numbered yes/no annotations, from
whatever mix of JSON, numbered lines and prose the model answered with."""

from __future__ import annotations

import json
import re
from typing import Any

MAX_LABEL_WORDS = 8  # a label is a phrase a reviewer reads at a glance, not a sentence
_LIST_ITEM = re.compile(r"^\s*(?:\d+\s*[.):\]]|[-*•·]|\(\d+\))\s*(.+?)\s*$")


def _json_candidates(text: str) -> list[Any]:
    """JSON values found in a reply: the whole reply, a fenced block, or the first [...]/{...}."""
    found: list[Any] = []
    pieces = [text.strip()]
    pieces += re.findall(r"```(?:json)?\s*(.*?)```", text, flags=re.DOTALL | re.IGNORECASE)
    for open_, close in (("[", "]"), ("{", "}")):
        start, end = text.find(open_), text.rfind(close)
        if 0 <= start < end:
            pieces.append(text[start : end + 1])
    for piece in pieces:
        try:
            found.append(json.loads(piece))
        except ValueError:
            continue
    return found


def _clean_label(label: str) -> str:
    label = re.sub(r"[*_`]+", "", label)  # markdown emphasis
    label = label.strip().strip("\"'“”‘’").strip()
    label = re.sub(r"^(?:label|candidate)\s*\d*\s*:\s*", "", label, flags=re.IGNORECASE)
    label = label.rstrip(" .;,").strip().strip("\"'“”‘’").strip()
    words = label.split()
    return " ".join(words[:MAX_LABEL_WORDS])


def _label_text(item: Any) -> str | None:
    """A label from a JSON list item: a string, or an object's "label"/"name"/"description"."""
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        return next((item[k] for k in ("label", "name", "description") if isinstance(item.get(k), str)), None)
    return None


def parse_label_list(text: str, limit: int | None = None) -> list[str]:
    """Candidate labels from a reply.

    Accepts a JSON list of strings or ``{"label": ...}`` objects (bare, fenced, or under a
    key such as ``{"labels": [...]}``), a numbered or bulleted list, or failing both one label
    per non-empty line (lines ending in ":" are taken as preambles). Labels are cut to 8 words
    and de-duplicated case-insensitively.
    """
    raw: list[str] = []
    for value in _json_candidates(text):
        if isinstance(value, dict):
            value = next((v for v in value.values() if isinstance(v, list)), None)
        if isinstance(value, list):
            items = [_label_text(v) for v in value]
            if items and all(item is not None for item in items):
                raw = [str(item) for item in items]
                break
    if not raw:
        lines = [line for line in text.splitlines() if line.strip()]
        raw = [m.group(1) for line in lines if (m := _LIST_ITEM.match(line))]
        if not raw:
            raw = [line for line in lines if not line.rstrip().endswith(":") and "```" not in line]
    labels: list[str] = []
    seen: set[str] = set()
    for item in raw:
        label = _clean_label(item)
        if label and label.lower() not in seen:
            seen.add(label.lower())
            labels.append(label)
    return labels[:limit] if limit is not None else labels


_YES = {"yes", "y", "true", "1"}
_NO = {"no", "n", "false", "0"}
_NUMBERED_ANSWER = re.compile(
    r"^\s*(?:text\s*)?[#\[(]?\s*(\d+)\s*[\])]?\s*[:.)=\-–]*\s*[*_`\"']*\s*(yes|no|true|false|y|n)\b",
    re.IGNORECASE,
)
_BARE_ANSWER = re.compile(r"^\s*[-*•]?\s*[*_`\"']*\s*(yes|no|true|false)\b", re.IGNORECASE)


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().strip(".!*").lower()
        if word in _YES:
            return True
        if word in _NO:
            return False
    if isinstance(value, dict):  # {"id": 1, "answer": "yes"} and the like
        for key in ("answer", "exhibits", "label", "value", "result"):
            if key in value:
                return _as_bool(value[key])
    return None


def parse_annotations(text: str, n: int) -> list[bool | None]:
    """Yes/no answers for texts 1..n from a reply; None where an answer is missing.

    Accepts ``"1: yes\\n2: no"`` (also ``1. Yes``, ``[2] no``, ``Text 3 - **yes**``), a JSON
    list of booleans or yes/no strings, a JSON object ``{"1": "yes", ...}``, or, when nothing
    is numbered, exactly ``n`` bare yes/no lines in order.
    """
    answers: list[bool | None] = [None] * n
    for value in _json_candidates(text):
        if isinstance(value, dict):
            inner = next((v for v in value.values() if isinstance(v, (list, dict))), None)
            if not any(str(k).strip().isdigit() for k in value) and inner is not None:
                value = inner
        if isinstance(value, list) and len(value) == n:
            parsed = [_as_bool(v) for v in value]
            if all(p is not None for p in parsed):
                return parsed
        if isinstance(value, dict):
            for key, answer in value.items():
                digits = re.sub(r"\D", "", str(key))
                if digits and 1 <= int(digits) <= n:
                    answers[int(digits) - 1] = _as_bool(answer)
            if all(a is not None for a in answers):
                return answers
    numbered = False
    for line in text.splitlines():
        match = _NUMBERED_ANSWER.match(line)
        if match:
            numbered = True
            index = int(match.group(1)) - 1
            if 0 <= index < n and answers[index] is None:
                answers[index] = match.group(2).lower() in _YES
    if not numbered:
        bare = [m.group(1).lower() in _YES for line in text.splitlines() if (m := _BARE_ANSWER.match(line))]
        if len(bare) == n:
            return list(bare)
    return answers
