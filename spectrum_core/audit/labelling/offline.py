"""Labels for SAE features from the texts alone, no model needed.

``contrastive_ngrams`` finds the n-grams that separate a feature's high-activation texts from its
low ones, ``top_activating_tokens`` summarises the tokens it fires on, and ``offline_label`` joins
them (plus the nearest probe) into one short string.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

from ..text import straighten_apostrophes

# Words with inner apostrophes stay whole ("can't", "i'm"); \w is Unicode-aware, so any script works.
TOKEN_PATTERN = r"(?u)\b\w+(?:'\w+)*\b"
PROBE_MIN_ABS_CORR = 0.3


def _normalise_text(text: Any) -> str:
    """Curly apostrophes become straight ones so "don’t" and "don't" count as one n-gram."""
    return straighten_apostrophes(str(text)) if text is not None else ""


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
