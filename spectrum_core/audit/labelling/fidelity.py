"""Is a head's label true, and does it carry the head's effect? Scored on held-out responses.

A head's offline label is made of phrases (its most distinctive n-grams, written from the
discovery pairs' responses). Two checks, on the **confirmation** pairs' responses only, none of
which the label was written from:

- **Fidelity**: does the head's activation rank the responses that contain one of the label's
  phrases (for an LLM label: that the model says exhibit it, on a sample of 300) above those that
  do not? The Mann–Whitney AUC of the activation, present against absent,
  with a bootstrap 95% interval; at least ``MIN_RESPONSES`` responses, else not scored. 0.5 is a
  label unrelated to what the head measures; 1.0 a label that names it exactly.
- **The label as a hypothesis** (as HypotheSAEs tests its natural-language hypotheses): annotate
  both responses of every confirmation pair with the label (phrase present or not) and test whether
  the annotation difference predicts the preference (a sign test over the pairs where the two
  differ). A confirmed head whose label does not pass that test, the same way, is flagged: its
  effect is real but "the label does not explain it".

A head standing for a probe is named by what the probe measures; it is not scored here (NaN).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..stats.sign_test import sign_pvalues
from ..text import straighten_apostrophes

MIN_RESPONSES = 300  # held-out responses a fidelity score needs (the floor; HH has 1,384)
# An LLM label is annotated by the model on a seeded sample of this many confirmation pairs (both
# responses: MIN_RESPONSES texts), not on all: each text is a yes/no the endpoint is asked for.
LLM_PAIRS = MIN_RESPONSES // 2
BOOTSTRAP = 200  # resamples for the fidelity interval
MAX_PHRASES = 5  # the label's best n-grams that count as its phrases
FIDELITY_COLUMNS = {
    "label_fidelity": np.nan,
    "label_fidelity_low": np.nan,
    "label_fidelity_high": np.nan,
    "label_fidelity_n": 0,
    "label_n_differ": 0,
    "label_share_chosen_more": np.nan,
    "label_p": np.nan,
    "label_explains": np.nan,
}


def label_phrases(top_ngrams: str) -> list[str]:
    """The phrases of an offline label: its informative n-grams, best first."""
    return [g.strip() for g in str(top_ngrams or "").split(",") if g.strip()][:MAX_PHRASES]


def phrase_presence(texts: list[str], phrases: list[str]) -> np.ndarray:
    """Whether each text contains any of the phrases (whole words, case and apostrophes folded)."""
    if not phrases:
        return np.zeros(len(texts), dtype=bool)
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(p.lower()) for p in phrases) + r")(?!\w)")
    return np.array([bool(pattern.search(straighten_apostrophes(str(t)).lower())) for t in texts], dtype=bool)


def mann_whitney_auc(activation: np.ndarray, present: np.ndarray) -> float:
    """P(activation of a present response > that of an absent one), ties ½; NaN with one group."""
    n_present, n_absent = int(present.sum()), int((~present).sum())
    if not n_present or not n_absent:
        return float("nan")
    ranks = sps.rankdata(activation)
    return float((ranks[present].sum() - n_present * (n_present + 1) / 2) / (n_present * n_absent))


def fidelity(activation: np.ndarray, present: np.ndarray, seed: int) -> tuple[float, float, float]:
    """The AUC and its percentile bootstrap 95% interval (responses resampled)."""
    auc = mann_whitney_auc(activation, present)
    if np.isnan(auc):
        return auc, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = [
        mann_whitney_auc(activation[i], present[i]) for i in rng.integers(0, len(present), (BOOTSTRAP, len(present)))
    ]
    low, high = np.nanpercentile(draws, [2.5, 97.5])
    return auc, float(low), float(high)


def _annotated(annotate: Callable[[str, list[str]], list[bool]], label: str, texts: list[str]) -> np.ndarray:
    return np.asarray(annotate(label, texts), dtype=bool)


def check_head_labels(
    concepts: pd.DataFrame,
    head_chosen,
    head_rejected,
    texts: list[str],
    confirmation: np.ndarray,
    alpha: float,
    seed: int,
    annotate: Callable[[str, list[str]], list[bool]] | None = None,
) -> pd.DataFrame:
    """``concepts`` with the fidelity and label-hypothesis columns (``FIDELITY_COLUMNS``) filled for
    the heads with an offline label (phrase presence) or an LLM label when ``annotate`` (the
    labeller's yes/no per text) is given. ``head_chosen``/``head_rejected``: pairs × heads;
    ``texts``: every response (2i chosen, 2i+1 rejected); ``confirmation``: the held-out pairs."""
    table = concepts.assign(**FIDELITY_COLUMNS).astype({"label_explains": object})
    heads = np.flatnonzero((concepts["kind"] == "head").to_numpy())
    held_out = np.flatnonzero(confirmation)
    sample = np.sort(np.random.default_rng(seed).permutation(held_out)[:LLM_PAIRS])
    for index in heads:
        row = concepts.iloc[index]
        source = row.get("label_source")
        phrases = label_phrases(row.get("top_ngrams", ""))
        if source == "llm" and annotate is not None:
            pairs, marks = sample, partial(_annotated, annotate, str(row["label"]))
        elif source == "offline" and phrases:
            pairs, marks = held_out, partial(phrase_presence, phrases=phrases)
        else:
            continue
        column = int(row["feature"])
        chosen = np.asarray(head_chosen[pairs][:, [column]].todense()).ravel()
        rejected = np.asarray(head_rejected[pairs][:, [column]].todense()).ravel()
        present_c = marks([texts[2 * i] for i in pairs])
        present_r = marks([texts[2 * i + 1] for i in pairs])
        activation, present = np.concatenate([chosen, rejected]), np.concatenate([present_c, present_r])
        values: dict[str, object] = {"label_fidelity_n": len(present)}
        if len(present) >= MIN_RESPONSES:
            auc, low, high = fidelity(activation, present, seed + int(index))
            values.update(label_fidelity=auc, label_fidelity_low=low, label_fidelity_high=high)
        n_pos, n_neg = int((present_c & ~present_r).sum()), int((present_r & ~present_c).sum())
        p = float(sign_pvalues(np.array([n_pos]), np.array([n_neg]))[0])
        share = n_pos / (n_pos + n_neg) if n_pos + n_neg else float("nan")
        same_way = {"chosen": share > 0.5, "rejected": share < 0.5}.get(str(row["direction"]), False)
        values.update(label_n_differ=n_pos + n_neg, label_share_chosen_more=share, label_p=p)
        values["label_explains"] = bool(p < alpha and same_way)
        for name, value in values.items():
            table.iat[index, table.columns.get_loc(name)] = value
    return table
