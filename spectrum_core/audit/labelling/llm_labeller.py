"""LLM labels for SAE features: the LLM proposes candidate labels from contrasting examples, then
annotates held-out texts with each candidate, and ``fidelity`` scores how well those annotations
track the feature's real activations. The endpoint is asked through the ``openai`` client."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import openai
from sklearn.metrics import roc_auc_score

from .llm_client import MAX_RETRIES, LabelCache, LabelingError, LLMEndpoint, _redact, cache_key, redacted_logs
from .parsing import MAX_LABEL_WORDS, parse_annotations, parse_label_list

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

logger = logging.getLogger(__name__)

# How much of a reply body an error message quotes: enough to tell a server's error from, say,
# a proxy's login page, short enough for a one-line warning.
SHOWN_BODY_CHARS = 300


def _truncate(text: str, max_chars: int) -> str:
    text = str(text).strip()
    return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "…"


def _failure_reason(exc: Exception, timeout: float) -> str:
    """What went wrong, in words, for an exception from the openai client (or its transport)."""
    if isinstance(exc, openai.APIStatusError):
        try:
            body = exc.response.text
        except Exception:  # a body that was never read
            body = ""
        return f"HTTP {exc.status_code}: {_truncate(body, SHOWN_BODY_CHARS)}"
    if isinstance(exc, openai.APITimeoutError):
        return f"no reply within {timeout:g} s, {1 + MAX_RETRIES} attempts"
    reason = f"{type(exc).__name__}: {exc}"
    # openai's connection errors say only "Connection error."; their cause (httpx's) says why.
    cause = exc.__cause__
    if isinstance(exc, openai.APIConnectionError) and cause is not None:
        reason += f" ({type(cause).__name__}: {cause})"
    return reason


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
    """Proposes feature labels with an LLM and measures how faithful each one is."""

    temperature = 0.0
    candidates = 3  # labels proposed per feature, each scored on held-out responses

    def __init__(
        self,
        endpoint: LLMEndpoint,
        cache_path: str | Path | None,
        *,
        timeout: float = 60,
        batch_size: int = 10,
        max_example_chars: int = 800,
    ) -> None:
        self.endpoint = endpoint
        self.cache = LabelCache(cache_path)
        self.timeout = float(timeout)  # seconds per attempt; the client makes 1 + MAX_RETRIES
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
        """One chat completion. Every failure (no connection, a timeout, an HTTP error, a body
        that is not a completion, no text) is a LabelingError naming the display URL and the
        reason, with the key and the URL's credentials and query string redacted."""
        api_key = self.endpoint.api_key()

        def fail(reason: str) -> LabelingError:
            shown = self.endpoint.display_url
            return LabelingError(_redact(f"LLM endpoint {shown} failed: {reason}", api_key, self.endpoint.base_url))

        try:
            with (
                redacted_logs(api_key, self.endpoint.base_url),
                self.endpoint.open_client(api_key, self.timeout) as client,
            ):
                raw = client.chat.completions.with_raw_response.create(
                    model=self.endpoint.model,
                    messages=cast("list[ChatCompletionMessageParam]", messages),
                    temperature=self.temperature,
                )
                body = raw.http_response.text
        except Exception as exc:  # openai's errors, and httpx's InvalidURL for a malformed base URL
            raise fail(_failure_reason(exc, self.timeout)) from None
        try:
            content = raw.parse().choices[0].message.content
        except (openai.OpenAIError, ValueError, AttributeError, TypeError, IndexError, KeyError):
            # Not JSON, or JSON without choices[0].message: the client's lenient parse keeps any shape.
            raise fail(f"unexpected response body: {_truncate(body, SHOWN_BODY_CHARS)}") from None
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
