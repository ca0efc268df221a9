"""The OpenAI-compatible endpoint the LLM labeller talks to: where it is, the ``openai`` client
for it, its on-disk reply cache, and its one error type.

The endpoint comes from ``SPECTRUM_LLM_BASE_URL`` and ``SPECTRUM_LLM_MODEL``; the API key is read
from ``SPECTRUM_LLM_API_KEY`` at call time only, handed to a client that lives for that one call,
so it is never stored, cached, logged or printed. Every reply is cached on disk, keyed by what
was asked, so a re-run costs no calls.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import openai

from ...errors import SpectrumError

logger = logging.getLogger(__name__)

# Retries after the first attempt, with the openai client's own backoff (about 0.5 s, then 1 s)
# on a dropped connection, a timeout, a 408/409/429 or a 5xx: enough to ride out a blip, few
# enough that a dead endpoint costs the audit seconds before offline labels (one that hangs costs
# 1 + MAX_RETRIES timeouts).
MAX_RETRIES = 2

# The key sent when SPECTRUM_LLM_API_KEY is empty. The openai client insists on a key and always
# sends "Authorization: Bearer <key>"; local servers (vLLM, Ollama, llama.cpp) accept any. This one
# is plainly not a secret, and passing it keeps the client from reading OPENAI_API_KEY, a real key
# for another service, and sending it to this endpoint.
NO_KEY = "not-set"

# The loggers that repeat a request's URL: httpx2, the openai client's transport, logs every
# request at INFO with the full URL, its credentials and query string included.
URL_LOGGERS = ("httpx2",)

# A query value shorter than this is redacted only as part of the whole query string: a flag
# such as ``?stream=1`` is no secret, and blanking every "1" would garble "HTTP 401".
REDACT_MIN_CHARS = 4


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
        want e.g. ``?api-version=...``) after the path: the URL the client requests."""
        parts = urllib.parse.urlsplit(self.base_url.strip())
        path = parts.path.rstrip("/") + "/chat/completions"
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))

    @property
    def display_url(self) -> str:
        """The URL without a user, password, query string or fragment: what messages and logs may
        show (a base URL can carry credentials, e.g. ``https://user:token@host/v1?key=...``)."""
        try:
            parts = urllib.parse.urlsplit(self.url)
        except ValueError:  # e.g. an unclosed IPv6 bracket: nothing of it is safe to show
            return "<malformed URL>"
        netloc = parts.netloc.rpartition("@")[2]  # host[:port], as written
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def api_key(self) -> str | None:
        key = os.environ.get(self.api_key_env, "").strip()
        return key or None

    def open_client(self, api_key: str | None, timeout: float) -> openai.OpenAI:
        """An ``openai`` client for this endpoint, with the client's own retries and timeout.

        Open it for one call (``with endpoint.open_client(...) as client:``) so the key does not
        outlive the request. Credentials in the base URL go as HTTP basic auth (httpx's reading
        of ``user:password@``), in place of the key's Bearer header.
        """
        parts = urllib.parse.urlsplit(self.base_url.strip())
        client = openai.OpenAI(
            api_key=api_key or NO_KEY,
            base_url=urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", "")),
            # The client appends "chat/completions" to the base URL as text, which would land
            # after a query string: the base URL's query goes on every request instead.
            default_query=dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True)),
            timeout=timeout,
            max_retries=MAX_RETRIES,
        )
        # The client fills OpenAI-Organization and OpenAI-Project from OPENAI_ORG_ID and
        # OPENAI_PROJECT_ID: details of an OpenAI account that an endpoint elsewhere has no need of.
        client.organization = client.project = None
        return client


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


def _redact(text: str, secret: str | None, url: str = "") -> str:
    """``text`` without the key, and without the URL's credentials and query string (whole, each
    value, and as decoded) wherever a library's message repeats the full URL. The credentials go
    as the ``Basic`` header's base64 too, which a server's error body may echo."""
    private: set[str] = {secret} if secret else set()
    try:
        parts = urllib.parse.urlsplit(url)
        private |= {p for p in (parts.password, parts.username, parts.query) if p}
        private |= {v for _, v in urllib.parse.parse_qsl(parts.query) if len(v) >= REDACT_MIN_CHARS}
        if parts.username or parts.password:
            pair = f"{urllib.parse.unquote(parts.username or '')}:{urllib.parse.unquote(parts.password or '')}"
            private.add(base64.b64encode(pair.encode("utf-8")).decode("ascii"))
    except ValueError:  # a malformed URL: the key is still redacted
        pass
    private |= {urllib.parse.unquote(p) for p in private}
    for value in sorted(private, key=len, reverse=True):  # longest first: a query holds its values
        text = text.replace(value, "***")
    return text


class _RedactingFilter(logging.Filter):
    """Rewrites a log record through ``_redact`` before any handler sees it."""

    def __init__(self, secret: str | None, url: str) -> None:
        super().__init__()
        self.secret, self.url = secret, url

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = _redact(message, self.secret, self.url)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


@contextlib.contextmanager
def redacted_logs(secret: str | None, url: str) -> Iterator[None]:
    """While open, what ``URL_LOGGERS`` log has the key and the URL's credentials and query
    string redacted (the CLI logs at INFO, where httpx2 prints each request's URL)."""
    redactor = _RedactingFilter(secret, url)
    loggers = [logging.getLogger(name) for name in URL_LOGGERS]
    for each in loggers:
        each.addFilter(redactor)
    try:
        yield
    finally:
        for each in loggers:
            each.removeFilter(redactor)
