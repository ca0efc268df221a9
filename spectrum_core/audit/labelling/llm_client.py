"""The OpenAI-compatible endpoint the LLM labeller talks to: where it is, its on-disk reply cache,
and its one error type.

The endpoint comes from ``SPECTRUM_LLM_BASE_URL`` and ``SPECTRUM_LLM_MODEL``; the API key is read
from ``SPECTRUM_LLM_API_KEY`` at call time only, so it is never stored, cached or printed. Every
reply is cached on disk, keyed by what was asked, so a re-run costs no calls.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ...errors import SpectrumError

logger = logging.getLogger(__name__)


class LabelingError(SpectrumError, RuntimeError):
    """An LLM labelling call failed; the message names the endpoint URL, never the key."""


@dataclass(frozen=True)
class LLMEndpoint:
    """An OpenAI-compatible chat-completions endpoint.

    Holds the *name* of the environment variable with the key, not the key: the key is read
    at call time so it never lands in a repr, a cache file or a saved workspace.
    """

    base_url: str
    model: str
    api_key_env: str = "SPECTRUM_LLM_API_KEY"

    @classmethod
    def from_env(cls) -> LLMEndpoint | None:
        """From ``SPECTRUM_LLM_BASE_URL`` and ``SPECTRUM_LLM_MODEL``; None unless both are set."""
        base_url = os.environ.get("SPECTRUM_LLM_BASE_URL", "").strip()
        model = os.environ.get("SPECTRUM_LLM_MODEL", "").strip()
        if not base_url or not model:
            return None
        return cls(base_url=base_url, model=model)

    @property
    def url(self) -> str:
        """``<base>/chat/completions``, keeping a query string the base URL carries (some servers
        want e.g. ``?api-version=...``) after the path."""
        parts = urllib.parse.urlsplit(self.base_url.strip())
        path = parts.path.rstrip("/") + "/chat/completions"
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))

    @property
    def display_url(self) -> str:
        """The URL without a user, password, query string or fragment: what messages and logs may
        show (a base URL can carry credentials, e.g. ``https://user:token@host/v1?key=...``)."""
        parts = urllib.parse.urlsplit(self.url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def api_key(self) -> str | None:
        key = os.environ.get(self.api_key_env, "").strip()
        return key or None


def cache_key(base_url: str, model: str, messages: Sequence[dict[str, str]], temperature: float) -> str:
    """sha256 of the request's identity: endpoint, model, messages, temperature (never the key)."""
    payload = json.dumps(
        {
            "base_url": base_url.rstrip("/"),
            "model": model,
            "messages": list(messages),
            "temperature": float(temperature),
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class LabelCache:
    """Responses on disk as JSON lines ``{"key": sha256, "model": ..., "content": ...}``.

    Append-only, so concurrent writers at worst duplicate an entry; a torn last line (a crash
    mid-write) is skipped on load. Only the hash, the model name and the reply are written:
    not the URL (it may carry a token) and never the key. ``path=None`` keeps it in memory.
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._entries: dict[str, str] = {}
        self._lock = threading.Lock()
        if self.path is not None and self.path.exists():
            with self.path.open(encoding="utf-8") as handle:
                for line in handle:
                    try:
                        record = json.loads(line)
                        self._entries[str(record["key"])] = str(record["content"])
                    except (ValueError, KeyError, TypeError):
                        continue

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> str | None:
        return self._entries.get(key)

    def put(self, key: str, content: str, *, model: str | None = None) -> None:
        with self._lock:
            self._entries[key] = content
            if self.path is None:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            record = {"key": key, "model": model, "content": content}
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")


class HTTPClient(Protocol):
    """What ``LLMLabeler`` needs from an injected client; ``httpx.Client`` and
    ``requests.Session`` both fit."""

    def post(self, url: str, *, json: Any, headers: dict[str, str], timeout: float) -> Any: ...


def _redact(text: str, secret: str | None, url: str = "") -> str:
    """``text`` without the key, and without the URL's credentials and query string wherever a
    library's message repeats the full URL."""
    if url:
        parts = urllib.parse.urlsplit(url)
        for private in (parts.password, parts.username, parts.query):
            if private:
                text = text.replace(private, "***")
    return text.replace(secret, "***") if secret else text
