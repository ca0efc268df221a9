"""The audit's labelling step: offline labels for the best-ranked concepts, LLM labels (with
fidelity and detection scores) on top when a labeller is configured, and names for the rest."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ... import constants as names
from ..config import AuditConfig
from ..responses import interleave, other_side, ranked, response_texts, side_first
from . import offline as labelling
from .detection import DETECTION_HELD_OUT, detection_score
from .llm_client import LabelingError, LLMEndpoint
from .llm_labeller import LLMLabeler
from .local_labeller import LocalLabeler

logger = logging.getLogger(__name__)
NGRAM_CANDIDATES = 30  # contrastive n-grams scored per concept before function words are dropped
# Labels quote whole phrases of one to four words ("hope this helps", "have a great day"): with
# pairs of words only, a planted sign-off read "2 / day / hope this".
PHRASE_WORDS = (1, 4)
SNIPPET_WORDS = 16  # words quoted from a response when there are no token activations to centre on


def label_concepts(
    concepts: pd.DataFrame,
    cards: pd.DataFrame,
    pairs: pd.DataFrame,
    mode_data: dict,
    config: AuditConfig,
    labeler: LLMLabeler | None,
    progress,
    warnings: list[str],
    writing: np.ndarray | None = None,
) -> pd.DataFrame:
    """Offline labels for the best-ranked SAE concepts; LLM labels on top when configured. An LLM
    endpoint that fails costs a warning (in ``warnings`` and the log) and the LLM labels, never the
    audit: every concept keeps its offline label. ``labeler``: from :func:`make_labeler` (None: offline only). Labels are written from the responses in
    ``writing`` (a mask over responses, default all): the audit passes the discovery pairs'
    responses, so every confirmation response is held out to score the label on (``fidelity.py``)."""
    concepts = _label_columns(concepts)
    sae_rows = concepts.index[concepts["kind"] == "family"][: config.labelled_concepts].append(
        concepts.index[concepts["kind"] == "sae"][: config.labelled_concepts]
    )
    strongest = cards[cards["role"] == "fires"] if "role" in cards.columns else cards  # not the silent contrast
    cards_by_concept = {cid: group for cid, group in strongest.groupby("concept_id")} if len(cards) else {}
    rng = np.random.default_rng(config.seed)
    texts = response_texts(pairs)
    # Responses × concepts, column-major so each feature is one slice.
    by_response = {mode: interleave(c, r).tocsc() for mode, (c, r) in mode_data.items() if mode != "probe"}
    writing = np.ones(len(texts), dtype=bool) if writing is None else np.asarray(writing, dtype=bool)
    for count, index in enumerate(sae_rows):
        row = concepts.loc[index]
        column = by_response[row["mode"]][:, int(row["feature"])].toarray().ravel()
        order = ranked(column)
        order = order[writing[order]]
        high = [texts[i] for i in order[:30] if column[i] > 0]
        zero = side_first(np.flatnonzero((column == 0) & writing))
        low_index = rng.choice(zero, size=min(200, len(zero)), replace=False) if len(zero) else order[-30:]
        for name, value in _offline_label(row, high, [texts[i] for i in low_index], cards_by_concept).items():
            concepts.at[index, name] = value
        if labeler is not None and count < config.llm_labelled_concepts and high:
            try:
                labelled = _llm_label(labeler, column, order, texts, low_index, rng, config.seed)
            except LabelingError as exc:
                _warn(warnings, f"LLM labels skipped, offline labels kept: {exc}")
                labeler, labelled = None, None
            if labelled is not None:
                score = labelled["detection"]
                concepts.loc[index, ["label", "label_source", "llm_fidelity"]] = [
                    labelled["label"],
                    "llm",
                    labelled["fidelity"],
                ]
                concepts.loc[index, ["detection", "detection_low", "detection_high"]] = [
                    score.score,
                    score.low,
                    score.high,
                ]
        if progress:
            progress("labels", count + 1, len(sae_rows), unit="concepts")
    return _name_the_rest(concepts)


def _label_columns(concepts: pd.DataFrame) -> pd.DataFrame:
    """The label columns, empty until a concept is labelled (probes are named by what they measure)."""
    return concepts.assign(
        label_source=np.where(concepts["kind"] == "probe", "probe", ""),
        top_ngrams="",
        top_tokens="",
        snippets=[[] for _ in range(len(concepts))],
        llm_fidelity=np.nan,
        detection=np.nan,
        detection_low=np.nan,
        detection_high=np.nan,
    )


def _offline_label(row: pd.Series, high: list[str], low: list[str], cards_by_concept: dict) -> dict[str, object]:
    """One concept's offline label and what it was made from: contrastive n-grams of its strongest
    responses (``high``) against silent ones (``low``), the tokens it fires on, its nearest probe,
    and up to three quotes."""
    # More candidates than shown: those made only of function words are left out of the label.
    ngrams = labelling.contrastive_ngrams(high, low, ngram_range=PHRASE_WORDS, top_k=NGRAM_CANDIDATES) if high else []
    informative = [(g, z) for g, z in ngrams if not labelling.is_function_words(g)][:8]
    # A family shows its representative's tokens when that is a token-mode feature.
    representative = str(row.get("representative") or "")
    card_id = representative if row["kind"] == "family" and representative.startswith("token:") else row["concept_id"]
    card = cards_by_concept.get(card_id)
    token_records: list[tuple[str, float]] = []
    if card is not None:
        for tokens, acts in zip(card["tokens"], card["token_activations"]):
            token_records.extend(zip(tokens, acts))
    top_tokens = labelling.top_activating_tokens(token_records, top_k=8) if token_records else []
    if card is not None and card_id.startswith("token:"):
        quotes = [labelling.snippet(tokens, acts) for tokens, acts in zip(card["tokens"], card["token_activations"])]
    else:  # difference mode has no token activations: the start of its strongest responses
        quotes = [" ".join(text.split()[:SNIPPET_WORDS]) + "…" for text in high]
    return {
        "label": labelling.offline_label(top_tokens, ngrams, row.get("nearest_probe") or None, row.get("probe_r")),
        "label_source": "offline",
        "top_ngrams": ", ".join(g for g, _ in informative),
        "snippets": [q for q in dict.fromkeys(quotes) if q][:3],
        "top_tokens": ", ".join(t for t, _ in top_tokens),
    }


def _name_the_rest(concepts: pd.DataFrame) -> pd.DataFrame:
    """SAE concepts beyond the labelled ones are named by mode and number; families beyond them
    take their representative's label."""
    unlabelled = (concepts["kind"] == "sae") & (concepts["label_source"] == "")
    concepts.loc[unlabelled, "label"] = [
        f"{m} feature {f}" for m, f in zip(concepts.loc[unlabelled, "mode"], concepts.loc[unlabelled, "feature"])
    ]
    concepts.loc[unlabelled, "label_source"] = "none"
    by_id = dict(zip(concepts["concept_id"], concepts["label"]))
    rest = (concepts["kind"] == "family") & (concepts["label_source"] == "")
    concepts.loc[rest, "label"] = [by_id.get(r, r) for r in concepts.loc[rest, "representative"]]
    concepts.loc[rest, "label_source"] = "representative"
    return concepts


def _warn(warnings: list[str], message: str) -> None:
    logger.warning(message)
    warnings.append(message)


def make_labeler(config: AuditConfig, out_dir: Path, warnings: list[str]) -> LLMLabeler | None:
    """The local labeller (``--labeller``), else the endpoint from the environment, else none.
    A local model that cannot be loaded costs a warning, never the audit."""
    if not config.llm_labelled_concepts:
        return None
    cache = out_dir / names.LLM_LABEL_CACHE_FILE
    if config.labeller:
        try:
            return LocalLabeler.load(config.labeller, cache, device=config.device)
        except LabelingError as exc:
            _warn(warnings, f"LLM labels skipped, offline labels kept: {exc}")
            return None
    endpoint = LLMEndpoint.from_env()
    return LLMLabeler(endpoint, cache) if endpoint else None


def _llm_label(
    labeler: LLMLabeler,
    column: np.ndarray,
    order: np.ndarray,
    texts: list[str],
    inactive: np.ndarray,
    rng: np.random.Generator,
    seed: int,
) -> dict | None:
    """An LLM label for one concept (``column``: its activation on every response): candidates proposed from its 10 strongest responses against hard negatives (the
    other side of the same pairs), the one whose yes/no annotations of 40 random responses track
    the activations best (fidelity), and that label's detection score on the next strongest
    responses, held out from the proposal, against responses where it is silent."""
    n_responses = len(texts)
    active = [int(i) for i in order[:30] if column[i] > 0]
    shown, held_active = active[:10], active[10 : 10 + DETECTION_HELD_OUT]
    negatives = [other_side(i) for i in shown]
    held = rng.choice(n_responses, size=min(40, n_responses), replace=False)
    candidates = labeler.label_feature(
        [texts[i] for i in shown],
        [texts[i] for i in negatives],
        [texts[i] for i in held],
        column[held].tolist(),
        n_candidates=labeler.candidates,
    )
    if not candidates or math.isnan(candidates[0]["fidelity"]):
        return None
    label = candidates[0]["label"]
    others = [int(i) for i in inactive[:DETECTION_HELD_OUT] if column[i] <= 0]
    detection = detection_score(
        labeler.annotate(label, [texts[i] for i in held_active]) if held_active else [],
        labeler.annotate(label, [texts[i] for i in others]) if others else [],
        seed=seed,
    )
    return {"label": label, "fidelity": candidates[0]["fidelity"], "detection": detection}
