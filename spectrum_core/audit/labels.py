"""Human-readable labels for SAE features: offline (n-grams, tokens, probes) and through an LLM.

Offline labels need nothing but the texts: ``contrastive_ngrams`` finds the n-grams that
separate a feature's high-activation texts from its low ones, ``top_activating_tokens``
summarises the tokens it fires on, and ``offline_label`` joins them (plus the nearest probe)
into one short string.

LLM labels go through any OpenAI-compatible ``/chat/completions`` endpoint: the LLM proposes
candidate labels from contrasting examples, then annotates held-out texts with each candidate,
and ``fidelity`` scores how well those annotations track the feature's real activations.
Every request is cached on disk, keyed by what was asked, so a re-run costs no calls. The API
key is read from the environment at call time only; it is never stored, cached or printed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer
from sklearn.metrics import roc_auc_score

from ..errors import SpectrumError

__all__ = [
    "LLMEndpoint",
    "LLMLabeler",
    "LabelCache",
    "LabelingError",
    "contrastive_ngrams",
    "offline_label",
    "parse_annotations",
    "parse_label_list",
    "top_activating_tokens",
]

logger = logging.getLogger(__name__)

# Words with inner apostrophes stay whole ("can't", "i'm"); \w is Unicode-aware, so any script works.
TOKEN_PATTERN = r"(?u)\b\w+(?:'\w+)*\b"
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\uff07": "'"})

PROBE_MIN_ABS_CORR = 0.3
MAX_LABEL_WORDS = 8


# --------------------------------------------------------------------------------------------
# Offline labels
# --------------------------------------------------------------------------------------------


def _normalise_text(text: Any) -> str:
    """Curly apostrophes become straight ones so "don’t" and "don't" count as one n-gram."""
    return str(text).translate(_APOSTROPHES) if text is not None else ""


def contrastive_ngrams(
    high_texts: Sequence[str],
    low_texts: Sequence[str],
    *,
    ngram_range: tuple[int, int] = (1, 2),
    top_k: int = 10,
    min_count: int = 2,
    prior_scale: float = 0.1,
) -> list[tuple[str, float]]:
    """The n-grams most over-represented in ``high_texts`` relative to ``low_texts``.

    Scored by the weighted log-odds ratio with an informative Dirichlet prior (Monroe,
    Colaresi & Quinn 2008, "Fightin' Words"). With ``y_w^g`` the count of n-gram ``w`` in
    group ``g``, ``n^g`` the group's total n-gram count and pooled counts ``c_w = y_w^high +
    y_w^low``, the prior is ``a_w = prior_scale * c_w`` (proportional to the pooled corpus
    frequency) with ``a_0 = sum_w a_w``, and

        delta_w = log((y_w^h + a_w) / (n^h + a_0 - y_w^h - a_w))
                - log((y_w^l + a_w) / (n^l + a_0 - y_w^l - a_w))
        z_w     = delta_w / sqrt(1 / (y_w^h + a_w) + 1 / (y_w^l + a_w)).

    The prior shrinks the log-odds of rare n-grams toward zero, so a word seen twice does not
    outrank a word seen two hundred times. All n-gram orders share one vocabulary (and so one
    ``n^g``), as in the usual implementations. Returns up to ``top_k`` ``(ngram, z)`` pairs
    with ``z > 0`` and pooled count ``>= min_count``, highest ``z`` first (ties by n-gram).
    """
    if prior_scale <= 0:
        raise ValueError(f"prior_scale must be > 0, got {prior_scale}")
    high = [_normalise_text(t) for t in high_texts]
    low = [_normalise_text(t) for t in low_texts]
    if top_k <= 0 or not (high or low):
        return []
    vectorizer = CountVectorizer(
        lowercase=True,
        token_pattern=TOKEN_PATTERN,
        ngram_range=ngram_range,
        dtype=np.int64,
    )
    try:
        counts = vectorizer.fit_transform(high + low)
    except ValueError:  # empty vocabulary: no text had a single word in it
        return []
    y_high = np.asarray(counts[: len(high)].sum(axis=0), dtype=np.float64).ravel()
    y_low = np.asarray(counts[len(high) :].sum(axis=0), dtype=np.float64).ravel()
    pooled = y_high + y_low
    alpha = prior_scale * pooled
    alpha_0 = alpha.sum()
    n_high, n_low = y_high.sum(), y_low.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = (np.log(y_high + alpha) - np.log(n_high + alpha_0 - y_high - alpha)) - (
            np.log(y_low + alpha) - np.log(n_low + alpha_0 - y_low - alpha)
        )
        z = delta / np.sqrt(1.0 / (y_high + alpha) + 1.0 / (y_low + alpha))
    keep = np.flatnonzero(np.isfinite(z) & (z > 0) & (pooled >= min_count))
    if keep.size == 0:
        return []
    terms = vectorizer.get_feature_names_out()
    # lexsort: last key is primary -> z descending, then the n-gram text for determinism.
    order = keep[np.lexsort((terms[keep], -z[keep]))][:top_k]
    return [(str(terms[i]), float(z[i])) for i in order]


_TOKEN_MARKERS = str.maketrans({"\u0120": " ", "\u2581": " ", "\u010a": " ", "\u0109": " "})


def normalise_token(token: str) -> str:
    """A token string without BPE/SentencePiece markers (Ġ, ▁, Ċ) or surrounding whitespace."""
    return str(token).translate(_TOKEN_MARKERS).strip()


def top_activating_tokens(
    token_records: Iterable[tuple[str, float]],
    top_k: int = 10,
) -> list[tuple[str, float]]:
    """The tokens with the highest *total* activation across a feature's top examples.

    Total (sum) rather than max: a label should name what the feature fires on consistently,
    and one spike on a rare token would otherwise outrank a token it fires on everywhere.
    Tokens are whitespace-normalised first (" sorry", "Ġsorry" and "▁sorry" are one token;
    case is kept), empty ones are skipped, and non-finite activations are ignored. Ties are
    broken by token string so the result is deterministic.
    """
    totals: dict[str, float] = {}
    for token, activation in token_records:
        name = normalise_token(token)
        value = float(activation)
        if not name or not math.isfinite(value):
            continue
        totals[name] = totals.get(name, 0.0) + value
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
    return ranked[: max(top_k, 0)]


# Words that carry no concept on their own: scikit-learn's English stop words and the pieces of
# contractions ("i'm", "you're", "it'd"), but not negations: "i don't" and "can't" are how
# refusals read.
NEGATIONS = frozenset({"no", "not", "nor", "never", "none", "nothing", "nobody", "nowhere", "neither", "cannot"})
CLITICS = frozenset({"s", "d", "ll", "re", "ve", "m"})
FUNCTION_WORDS = (ENGLISH_STOP_WORDS - NEGATIONS) | CLITICS
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")


def is_function_words(term: str) -> bool:
    """Whether a term is made only of function words (or of no words at all: punctuation)."""
    words = _WORD.findall(str(term).lower().replace("’", "'"))
    for word in words:
        if word.endswith("n't"):
            return False  # a negation
        if not all(part in FUNCTION_WORDS for part in word.split("'") if part):
            return False
    return True


def snippet(tokens: Sequence[str], activations: Sequence[float], radius: int = 8) -> str:
    """The text around a response's most active token (``radius`` tokens each side), with "…"
    where it was cut: a short quote that shows the concept at work."""
    if not len(tokens):
        return ""
    peak = int(np.argmax(np.asarray(activations, dtype=np.float64)))
    start, end = max(0, peak - radius), min(len(tokens), peak + radius + 1)
    text = " ".join("".join(tokens[start:end]).split())
    return ("…" if start else "") + text + ("…" if end < len(tokens) else "")


def _terms(items: Sequence[tuple[str, float]] | Sequence[str] | None) -> list[str]:
    """Term strings from ``(term, score)`` pairs or bare strings, empty ones dropped."""
    out: list[str] = []
    for item in items or []:
        term = item[0] if isinstance(item, (tuple, list)) else item
        term = " ".join(str(term).split())
        if term:
            out.append(term)
    return out


def _pick_phrases(ngrams: list[str], limit: int = 3, window: int = 6) -> list[str]:
    """The best 2-3 n-grams, preferring a phrase over the single words it contains.

    Among the top ``window`` n-grams, a term whose words all sit inside a longer candidate
    ("sorry" next to "i'm sorry") is skipped: the phrase says the same and more. Otherwise
    score order is kept.
    """
    candidates = list(dict.fromkeys(ngrams[:window]))
    token_lists = {c: c.lower().split() for c in candidates}

    def contained(short: list[str], long: list[str]) -> bool:
        n = len(short)
        return n < len(long) and any(long[i : i + n] == short for i in range(len(long) - n + 1))

    chosen: list[str] = []
    for term in candidates:
        if any(contained(token_lists[term], token_lists[other]) for other in candidates):
            continue
        chosen.append(term)
        if len(chosen) == limit:
            break
    return chosen


def offline_label(
    top_tokens: Sequence[tuple[str, float]] | Sequence[str] | None,
    ngrams: Sequence[tuple[str, float]] | Sequence[str] | None,
    nearest_probe: str | None,
    probe_corr: float | None,
) -> str:
    """A short deterministic label such as ``"sorry / can't help · ≈refusal (r=0.62)"``.

    Built from the 2-3 best n-grams (phrases preferred over the words inside them), falling
    back to the 3 top tokens when there are no n-grams; terms made only of function words are
    left out (never a label like "a / that / and"); the nearest probe is appended when
    ``|r| >= 0.3``. Never empty: with nothing at all it is ``"unlabelled"`` (or the probe part
    alone when only the probe is informative).
    """
    parts = _pick_phrases([t for t in _terms(ngrams) if not is_function_words(t)])
    if not parts:
        parts = list(dict.fromkeys(t for t in _terms(top_tokens) if not is_function_words(t)))[:3]
    text = " / ".join(parts)
    probe = ""
    if nearest_probe and probe_corr is not None:
        r = float(probe_corr)
        if math.isfinite(r) and abs(r) >= PROBE_MIN_ABS_CORR:
            probe = f"≈{' '.join(str(nearest_probe).split())} (r={r:.2f})"
    if text and probe:
        return f"{text} · {probe}"
    return text or probe or "unlabelled"


# --------------------------------------------------------------------------------------------
# LLM labels
# --------------------------------------------------------------------------------------------


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


def _truncate(text: str, max_chars: int) -> str:
    text = str(text).strip()
    return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "…"


_PROPOSE_SYSTEM = (
    "You interpret features of a sparse autoencoder trained on a language model's activations. "
    "You are shown texts where the feature is strongly active (HIGH) and texts where it is not "
    "(LOW). Name what the HIGH texts share that the LOW texts lack. Be concrete: a behaviour, "
    "topic, tone or phrasing, not a vague theme."
)
_ANNOTATE_SYSTEM = (
    "You are a careful annotator. For each numbered text, decide whether it clearly exhibits "
    "the given concept. Answer only in the requested format."
)


class LLMLabeler:
    """Proposes feature labels with an LLM and measures how faithful each one is.

    ``client`` may be any object with ``post(url, json=, headers=, timeout=)`` returning a
    response with ``status_code``, ``text`` and ``json()`` (an ``httpx.Client`` works); by
    default the standard library's ``urllib`` is used so no extra dependency is needed.
    """

    temperature = 0.0
    candidates = 3  # labels proposed per feature, each scored on held-out responses

    def __init__(
        self,
        endpoint: LLMEndpoint,
        cache_path: str | Path | None,
        *,
        timeout: float = 60,
        client: HTTPClient | None = None,
        batch_size: int = 10,
        max_example_chars: int = 800,
    ) -> None:
        self.endpoint = endpoint
        self.cache = LabelCache(cache_path)
        self.timeout = float(timeout)
        self.client = client
        self.batch_size = max(int(batch_size), 1)
        self.max_example_chars = int(max_example_chars)

    def __repr__(self) -> str:
        return f"LLMLabeler(endpoint={self.endpoint!r}, cache={str(self.cache.path)!r})"

    # -- transport ---------------------------------------------------------------------------

    def chat(self, messages: list[dict[str, str]]) -> str:
        """The reply to ``messages``, from the cache when this exact request was made before."""
        key = cache_key(self.endpoint.base_url, self.endpoint.model, messages, self.temperature)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        content = self._post(messages)
        self.cache.put(key, content, model=self.endpoint.model)
        return content

    def _post(self, messages: list[dict[str, str]]) -> str:
        url = self.endpoint.url
        api_key = self.endpoint.api_key()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        body = {"model": self.endpoint.model, "messages": messages, "temperature": self.temperature}

        def fail(reason: str) -> LabelingError:
            shown = self.endpoint.display_url
            return LabelingError(_redact(f"LLM endpoint {shown} failed: {reason}", api_key, self.endpoint.url))

        if self.client is not None:
            try:
                response = self.client.post(url, json=body, headers=headers, timeout=self.timeout)
            except Exception as exc:  # any client's timeout/connection error type
                raise fail(f"{type(exc).__name__}: {exc}") from None
            status = int(response.status_code)
            raw = str(response.text)
        else:
            request = urllib.request.Request(
                url,
                data=json.dumps(body).encode("utf-8"),
                headers=headers,
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    status = int(response.status)
                    raw = response.read().decode("utf-8", errors="replace")
            except urllib.error.HTTPError as exc:
                status = int(exc.code)
                raw = exc.read().decode("utf-8", errors="replace") if exc.fp else ""
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise fail(f"{type(exc).__name__}: {reason}") from None
        if status >= 400:
            raise fail(f"HTTP {status}: {_truncate(raw, 300)}")
        try:
            content = json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise fail(f"unexpected response body: {_truncate(raw, 300)}") from None
        if not isinstance(content, str):
            raise fail("response has no text content")
        return content

    # -- labelling ---------------------------------------------------------------------------

    def _examples(self, texts: Sequence[str]) -> str:
        return "\n".join(
            f"{i}. {' '.join(_truncate(t, self.max_example_chars).split())}" for i, t in enumerate(texts, 1)
        )

    def propose_labels(
        self,
        examples_high: Sequence[str],
        examples_low: Sequence[str],
        n_candidates: int = 3,
    ) -> list[str]:
        """Up to ``n_candidates`` short labels (<= 8 words) from one chat call."""
        user = (
            f"HIGH texts (feature active):\n{self._examples(examples_high)}\n\n"
            f"LOW texts (feature inactive):\n{self._examples(examples_low)}\n\n"
            f"Give {n_candidates} candidate labels, each at most {MAX_LABEL_WORDS} words, describing "
            "what the HIGH texts share that the LOW texts lack. Reply with a JSON list of strings "
            "and nothing else."
        )
        messages = [{"role": "system", "content": _PROPOSE_SYSTEM}, {"role": "user", "content": user}]
        return parse_label_list(self.chat(messages), limit=n_candidates)

    def _annotate_batch(self, label: str, texts: Sequence[str]) -> list[bool | None]:
        numbered = "\n\n".join(
            f"[{i}] {' '.join(_truncate(t, self.max_example_chars).split())}" for i, t in enumerate(texts, 1)
        )
        user = (
            f"Concept: {label}\n\nTexts:\n{numbered}\n\n"
            f"For each of the {len(texts)} texts, does it exhibit the concept? Reply with exactly "
            f"one line per text, in the form '<number>: yes' or '<number>: no', and nothing else."
        )
        messages = [{"role": "system", "content": _ANNOTATE_SYSTEM}, {"role": "user", "content": user}]
        return parse_annotations(self.chat(messages), len(texts))

    def annotate(self, label: str, texts: Sequence[str]) -> list[bool]:
        """Whether each text exhibits ``label``, asked ``batch_size`` texts per call.

        Texts the reply skipped are asked again in one follow-up batch; any still unanswered
        count as "no" (with a warning), so one sloppy reply does not sink a whole labelling run.
        """
        texts = list(texts)
        answers: list[bool | None] = []
        for start in range(0, len(texts), self.batch_size):
            answers += self._annotate_batch(label, texts[start : start + self.batch_size])
        missing = [i for i, a in enumerate(answers) if a is None]
        for chunk in range(0, len(missing), self.batch_size):
            indices = missing[chunk : chunk + self.batch_size]
            for i, answer in zip(indices, self._annotate_batch(label, [texts[i] for i in indices])):
                answers[i] = answer
        unanswered = sum(a is None for a in answers)
        if unanswered:
            logger.warning(
                "LLM gave no yes/no for %d of %d texts (label %r); counted as no", unanswered, len(texts), label
            )
        return [bool(a) for a in answers]

    def fidelity(self, label: str, texts: Sequence[str], activations: Sequence[float]) -> float:
        """How well the LLM's yes/no annotations for ``label`` predict the feature's activation.

        Defined as the ROC AUC of the annotations (yes=1, no=0, as scores) for predicting
        whether a text's activation is in the top half, i.e. strictly above the median of
        ``activations`` (so ties at the median, typically the zeros of a sparse feature, count
        as bottom half). 1.0 = annotations match the split, 0.5 = uninformative (also what a
        label that says yes to everything gets). NaN when undefined: no texts, or all
        activations on one side of the split.
        """
        values = np.asarray(activations, dtype=np.float64).ravel()
        if len(texts) != values.size:
            raise ValueError(f"{len(texts)} texts but {values.size} activations")
        if values.size == 0 or not np.all(np.isfinite(values)):
            return float("nan")
        target = values > np.median(values)
        if target.all() or not target.any():
            return float("nan")
        scores = np.asarray(self.annotate(label, texts), dtype=np.float64)
        return float(roc_auc_score(target, scores))

    def label_feature(
        self,
        high_texts: Sequence[str],
        low_texts: Sequence[str],
        heldout_texts: Sequence[str],
        heldout_activations: Sequence[float],
        *,
        n_candidates: int = 3,
    ) -> list[dict[str, Any]]:
        """Candidate labels with their fidelity, best first (NaN fidelities last)."""
        results = [
            {"label": label, "fidelity": self.fidelity(label, heldout_texts, heldout_activations)}
            for label in self.propose_labels(high_texts, low_texts, n_candidates=n_candidates)
        ]

        def order(result: dict[str, Any]) -> tuple[bool, float]:
            score = result["fidelity"]
            return (math.isnan(score), 0.0 if math.isnan(score) else -score)

        return sorted(results, key=order)
