"""Turn the many shapes of a conversation into one: a list of ``{"role", "content"}`` messages.

Accepted shapes: plain strings; OpenAI / TRL messages (``role``/``content``); ShareGPT /
LLaMA-Factory messages (``from``/``value``); either of those serialised as a JSON string; content
given as a list of typed parts; and transcripts with speaker markers, such as HH-RLHF's
``\\n\\nHuman: … \\n\\nAssistant: …`` or ``Instruction: … Output: …``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import SpectrumError

ROLE_ALIASES = {
    "user": "user",
    "human": "user",
    "prompter": "user",
    "question": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "answer": "assistant",
    "system": "system",
    "tool": "tool",
    "function": "tool",
    "observation": "tool",
    "ipython": "tool",
}

# Speaker markers at the start of a transcript or after a blank line. HH-RLHF uses
# "\n\nHuman: " and "\n\nAssistant: "; ICAI-style AlpacaEval texts use "Instruction:" / "Output:".
_TRANSCRIPT_MARKERS = {
    "Human": "user",
    "User": "user",
    "Assistant": "assistant",
    "Instruction": "user",
    "Output": "assistant",
}
_TRANSCRIPT_SPLIT = re.compile(r"(?:^|\n\n+)(Human|User|Assistant|Instruction|Output):[ \t]?\n?")


class MessageError(SpectrumError, ValueError):
    """A value that should be a conversation is malformed; the message says how."""


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _content_text(content: Any) -> str:
    if is_missing(content):
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # typed parts: [{"type": "text", "text": "..."}]
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                raise MessageError(f"content part {part!r:.60} has no text")
        return "".join(parts)
    if isinstance(content, (int, float)):
        return str(content)
    raise MessageError(f"content is a {type(content).__name__}, not text")


def _one_message(item: Any) -> dict:
    if not isinstance(item, dict):
        raise MessageError(f"a message is a {type(item).__name__}, not an object")
    role = item.get("role", item.get("from", item.get("speaker")))
    content = item.get("content", item.get("value", item.get("text")))
    if not isinstance(role, str) or role.strip().lower() not in ROLE_ALIASES:
        raise MessageError(f"unknown role {role!r}; accepted: {', '.join(sorted(set(ROLE_ALIASES)))}")
    return {"role": ROLE_ALIASES[role.strip().lower()], "content": _content_text(content)}


def _maybe_json(value: str) -> Any:
    stripped = value.strip()
    if stripped[:1] in ("[", "{") and stripped[-1:] in ("]", "}"):
        try:
            decoded = json.loads(stripped)
        except json.JSONDecodeError:
            return value
        if isinstance(decoded, dict) and ({"role", "content"} <= decoded.keys() or {"from", "value"} <= decoded.keys()):
            return decoded
        if (
            isinstance(decoded, list)
            and decoded
            and all(isinstance(d, dict) for d in decoded)
            and all(("role" in d or "from" in d) for d in decoded)
        ):
            return decoded
        if decoded == []:
            return decoded
    return value


def looks_like_transcript(text: str) -> bool:
    return bool(re.match(r"\s*(Human|User|Instruction):", text)) or "\n\nHuman:" in text


def parse_transcript(text: str) -> list[dict]:
    """Split a speaker-marked transcript into messages. Text before the first marker, if any,
    becomes a system message."""
    pieces = _TRANSCRIPT_SPLIT.split(text)
    messages = []
    preamble = pieces[0].strip()
    if preamble:
        messages.append({"role": "system", "content": preamble})
    for marker, body in zip(pieces[1::2], pieces[2::2]):
        messages.append({"role": _TRANSCRIPT_MARKERS[marker], "content": body.strip()})
    return messages


def to_messages(value: Any, default_role: str, *, transcripts: bool = True) -> list[dict]:
    """Normalise a value to messages. A plain string becomes one message of ``default_role``
    unless ``transcripts`` is on and it carries speaker markers."""
    if is_missing(value):
        raise MessageError("missing")
    if isinstance(value, str):
        value = _maybe_json(value)
    if isinstance(value, str):
        if transcripts and looks_like_transcript(value):
            return parse_transcript(value)
        return [{"role": default_role, "content": value}]
    if isinstance(value, dict):
        return [_one_message(value)]
    if isinstance(value, list):
        return [_one_message(item) for item in value]
    if isinstance(value, (int, float)):
        return [{"role": default_role, "content": str(value)}]
    raise MessageError(f"a {type(value).__name__}, not text or messages")


def shared_prefix_length(a: list[dict], b: list[dict]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def split_shared_text_prefix(a: str, b: str) -> tuple[str, str, str]:
    """(prefix, rest of a, rest of b) where prefix is the longest common prefix of two plain texts,
    cut back to a whitespace boundary so no word is split between prompt and response."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    if n < min(len(a), len(b)) or len(a) != len(b):
        while n > 0 and not a[n - 1].isspace():
            n -= 1
    return a[:n], a[n:], b[n:]


def render_plain(messages: list[dict]) -> str:
    """A readable one-string form of a conversation, for display and text probes."""
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)
