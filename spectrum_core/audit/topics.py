"""Topic strata: does a family lean the same way whatever the prompt is about?

A concept that separates chosen from rejected overall may do so only for one kind of prompt
(refusals are preferred on harmful requests and dispreferred on harmless ones). The prompts are
clustered into topics by k-means (scikit-learn, seeded) on their sentence embeddings (the bundled
all-MiniLM-L6-v2, ``embeddings.embed``) of the user's turns; each topic is named by its most
distinctive words (class-based TF-IDF: the TF-IDF of the topic's prompts taken as one document
against the other topics'); and each family gets, per topic, the share of differing pairs where
chosen has more, with a 95% Wilson interval, and its effect size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

# Fewer pairs than this in a topic give intervals too wide to read: the number of topics is
# lowered until the average topic has at least this many.
MIN_PAIRS_PER_TOPIC = 30
TOPIC_WORDS = 3  # words naming a topic
USER_CHARS = 1000  # of the user's turns embedded (the embedder reads 256 word pieces at most)


@dataclass
class Topics:
    topic: np.ndarray  # per pair, 0 … n_topics − 1, largest topic first
    names: list[str]
    sizes: list[int]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame({"topic": range(len(self.names)), "label": self.names, "n_pairs": self.sizes})


def user_text(prompt) -> str:
    """The user's turns of a prompt (a list of chat messages, or plain text), joined."""
    if isinstance(prompt, str):
        return prompt[:USER_CHARS]
    turns = [str(m.get("content", "")) for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
    return " ".join(turns)[:USER_CHARS]


def find_topics(prompts: list, n_topics: int, seed: int, device: str = "cpu") -> Topics:
    """k-means topics of the prompts (at most ``n_topics``, fewer for few pairs)."""
    from sklearn.cluster import KMeans

    from ..embeddings import embed

    texts = [user_text(p) for p in prompts]
    k = int(min(n_topics, max(1, len(texts) // MIN_PAIRS_PER_TOPIC)))
    if k <= 1:
        return Topics(np.zeros(len(texts), dtype=np.int64), ["all prompts"], [len(texts)])
    vectors = embed(texts, device=device)
    labels = KMeans(n_clusters=k, random_state=seed, n_init=10).fit_predict(vectors)
    # Largest topic first, so the numbering reads the same way in every audit.
    order = np.argsort(-np.bincount(labels, minlength=k), kind="stable")
    renumber = np.empty(k, dtype=np.int64)
    renumber[order] = np.arange(k)
    topic = renumber[labels]
    names = _names(texts, topic, k)
    return Topics(topic, names, np.bincount(topic, minlength=k).tolist())


def _names(texts: list[str], topic: np.ndarray, k: int) -> list[str]:
    """Class-based TF-IDF: each topic's prompts as one document; its top words against the rest."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    documents = [" ".join(t for t, j in zip(texts, topic) if j == i) for i in range(k)]
    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True, token_pattern=r"(?u)\b[a-zA-Z]{3,}\b")
    try:
        matrix = vectorizer.fit_transform(documents).toarray()
    except ValueError:  # no word left after stop words: name topics by number
        return [f"topic {i + 1}" for i in range(k)]
    words = vectorizer.get_feature_names_out()
    return [
        " / ".join(words[np.argsort(-row, kind="stable")[:TOPIC_WORDS]]) or f"topic {i + 1}"
        for i, row in enumerate(matrix)
    ]


def topic_leans(family_delta: np.ndarray, family_ids: list[str], topics: Topics) -> pd.DataFrame:
    """One row per (family, topic): pairs, pairs where it differs, the share where chosen has more
    with its 95% Wilson interval, and the effect size (standardised mean Δ) within the topic."""
    rows = []
    delta = np.asarray(family_delta, dtype=np.float64)
    for t in range(len(topics.names)):
        inside = delta[topics.topic == t]
        positive, negative = (inside > 0).sum(axis=0), (inside < 0).sum(axis=0)
        mean, sd = inside.mean(axis=0), inside.std(axis=0)
        for f, family in enumerate(family_ids):
            n = int(positive[f] + negative[f])
            share, low, high = float("nan"), float("nan"), float("nan")
            if n:
                share = positive[f] / n
                interval = stats.binomtest(int(positive[f]), n).proportion_ci(method="wilson")
                low, high = float(interval.low), float(interval.high)
            rows.append(
                {
                    "concept_id": family,
                    "topic": t,
                    "n_pairs": len(inside),
                    "n_differ": n,
                    "share_chosen_more": share,
                    "share_low": low,
                    "share_high": high,
                    "effect_size": float(mean[f] / sd[f]) if sd[f] > 0 else 0.0,
                }
            )
    return pd.DataFrame(rows)
