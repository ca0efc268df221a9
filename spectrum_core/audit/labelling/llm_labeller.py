"""LLM labels for SAE features: the LLM proposes candidate labels from contrasting examples, then
annotates held-out texts with each candidate, and ``fidelity`` scores how well those annotations
track the feature's real activations."""

from __future__ import annotations

import json
import logging
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from .llm_client import HTTPClient, LabelCache, LabelingError, LLMEndpoint, _redact, cache_key
from .parsing import MAX_LABEL_WORDS, parse_annotations, parse_label_list

logger = logging.getLogger(__name__)


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
