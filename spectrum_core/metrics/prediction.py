"""Does the audit predict what tuning learns? Per concept family, the shift the audit predicted
from the data a run trained on against the shift its generations show relative to the base model.

**The predictor** (one function, ``predicted_shift``): the weighted mean standardised Δ over the
pairs the run trained on,

    predicted = Σ_i w_i s_i Δ_i / (σ Σ_i w_i),

with Δ_i = concept(chosen) − concept(rejected) on audited pair i (a family's is the weighted sum
of its members'), σ the standard deviation of Δ over every audited pair, w_i the pair's weight in
the plan, and s_i = −1 where the plan flipped the pair; dropped pairs are not there. For the
unshaped data this is the concept's effect size on the training pairs. Why this: DPO's gradient on
a pair raises the chosen response's likelihood against the rejected one's, so to first order the
policy moves along the weighted mean of their differences; drops, flips and weights enter exactly
as the trainer sees them. How far a run moves per unit of that signal (learning rate, steps, β,
method) is one number per run, not per family, so it is left to the fitted line: R² is the share
of the variance across families that a line through the scatter explains, and its slope is the
run's realised shift per predicted unit. For supervised methods (Spectrum Tuning, ReSet) the same
predictor reads the plan's chosen-minus-rejected contrast; it does not see what chosen and
rejected responses share, which supervised tuning also teaches.

**The realised shift** is the paired mean change of the concept's value in the tuned model's
generations against the base model's on the same held-out prompts, standardised by the average
of their variances (``prevalence.compare_prevalence``), with its 95% t interval. A concept
*moved* when that interval excludes zero.

**What is predicted** (``prediction_concepts``): every head of the audit (the confirmed queue a
researcher acts on; without heads, every significant family), a seeded random sample of as many
non-significant families (so the scatter spans the whole range, not only concepts the audit
already found to be large), and every decided concept. **How well** (``prediction_summary``):
R², Spearman's ρ and sign agreement over all of them with 95% bootstrap intervals over the
evaluation prompts (``agreement.py``), beside the same figures for predictors without the SAE
(length alone, a bag of words; ``baselines.py``) and with length partialled out of both sides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..audit.review import is_composite
from .agreement import (
    MIN_CONCEPTS,
    agreement,
    bootstrap,
    difference_interval,
    realised_shifts,
    resamples,
    summarise,
    without_length,
)
from .baselines import length_parts, word_counts, word_deltas

# What is left of Δ once length is taken out counts as nothing below this share of Δ's own SD.
NO_SPREAD = 1e-9
# Non-significant families sampled when the audit has nothing significant to set the sample's
# size by: enough for a scatter's R² to mean something.
MIN_SAMPLE = 20
GROUP_HEAD, GROUP_SIGNIFICANT, GROUP_SAMPLE, GROUP_DECIDED = (
    "head",
    "significant family",
    "non-significant family (random sample)",
    "decided",
)
# Why a family that moved is listed as a surprise.
SURPRISE_AGAINST = "moved against the prediction"
SURPRISE_UNSEEN = "moved while the audit saw nothing"


def predicted_shift(delta: np.ndarray, weights: np.ndarray, flipped: np.ndarray, scale: float) -> float:
    """The weighted mean of s·Δ/σ over the training pairs (``delta``, ``weights``, ``flipped``
    aligned, one entry per training pair); 0 when the concept never differs (σ = 0) or no pair."""
    weights = np.asarray(weights, dtype=np.float64)
    if scale <= 0 or not len(weights) or weights.sum() <= 0:
        return 0.0
    signs = np.where(np.asarray(flipped, dtype=bool), -1.0, 1.0)
    return float(np.sum(weights * signs * np.asarray(delta, dtype=np.float64)) / (scale * weights.sum()))


def training_positions(pair_ids: pd.Index, training: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions in ``pair_ids``, weights, flipped) of the training pairs the audit saw;
    ``training`` holds the pairs the run trained on (pair_id, weight, flipped)."""
    positions = pair_ids.get_indexer(training["pair_id"])
    inside = positions >= 0
    return (
        positions[inside],
        training["weight"].to_numpy(dtype=np.float64)[inside],
        training["flipped"].to_numpy(dtype=bool)[inside],
    )


def delta_matrix(concepts: list[dict], delta_of, n_pairs: int) -> np.ndarray:
    """Audited pairs × concepts: each concept's Δ (a family's is its parts' weighted sum)."""
    out = np.zeros((n_pairs, len(concepts)))
    for j, concept in enumerate(concepts):
        for part, weight in concept.get("parts") or [(concept["concept_id"], 1.0)]:
            out[:, j] += float(weight) * delta_of(part)
    return out


def predict(deltas: np.ndarray, scales: np.ndarray, training: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """``predicted_shift`` of every column of ``deltas`` over the training pairs (positions,
    weights, flipped), each over its own ``scales`` entry."""
    positions, weights, flipped = training
    return np.array(
        [predicted_shift(deltas[positions, j], weights, flipped, float(scales[j])) for j in range(deltas.shape[1])]
    )


def every_prediction(
    deltas: np.ndarray,
    training: tuple[np.ndarray, np.ndarray, np.ndarray],
    chosen: list[str],
    rejected: list[str],
    seed: int,
) -> dict[str, np.ndarray]:
    """The table's prediction columns for ``deltas`` (audited pairs × concepts; ``chosen`` and
    ``rejected``, the audited pairs' texts): the audit's, the baselines' (length alone, a bag of
    words; on the audit's scale, σ of Δ) and the one with length taken out (over its own σ)."""
    scales = deltas.std(axis=0)
    by_length, beyond_length = length_parts(deltas, word_counts(chosen) - word_counts(rejected))
    # A concept that is length and nothing else leaves rounding error: no spread, no prediction.
    beyond_scales = beyond_length.std(axis=0)
    beyond_scales[beyond_scales <= NO_SPREAD * scales] = 0.0
    return {
        "predicted": predict(deltas, scales, training),
        "predicted_length": predict(by_length, scales, training),
        "predicted_words": predict(word_deltas(deltas, chosen, rejected, seed), scales, training),
        "predicted_without_length": predict(beyond_length, beyond_scales, training),
    }


def predicted_shifts(concepts: list[dict], delta_of, pair_ids: pd.Index, training: pd.DataFrame) -> dict[str, float]:
    """``predicted_shift`` for every concept dict (concept_id, parts). ``delta_of(concept_id)``
    gives Δ for every audited pair in ``pair_ids`` order; ``training`` holds the pairs the run
    trained on (pair_id, weight, flipped); pairs outside the audit are left out."""
    deltas = delta_matrix(concepts, delta_of, len(pair_ids))
    predicted = predict(deltas, deltas.std(axis=0), training_positions(pair_ids, training))
    return {c["concept_id"]: float(p) for c, p in zip(concepts, predicted)}


def scatter_summary(table: pd.DataFrame, alpha: float) -> dict:
    """Agreement of prediction and realisation over the concepts of ``table`` (columns predicted,
    shift, shift_low, shift_high, q_value, concept_id, label): R² and slope of the least-squares
    line, Spearman's ρ and sign agreement over every concept (``agreement.agreement``), how many
    moved (their interval excludes 0), and the surprises among those."""
    valid = table.dropna(subset=["predicted", "shift"])
    summary: dict = {"concepts": int(len(valid)), **agreement(valid["predicted"], valid["shift"])}
    moved = (valid["shift_low"] > 0) | (valid["shift_high"] < 0)
    summary["moved"] = int(moved.sum())
    surprises = []
    for row in valid[moved].itertuples():
        if not row.q_value < alpha:
            why = SURPRISE_UNSEEN
        elif np.sign(row.predicted) != np.sign(row.shift):
            why = SURPRISE_AGAINST
        else:
            continue
        surprises.append(
            {
                "concept_id": row.concept_id,
                "label": row.label,
                "predicted": float(row.predicted),
                "shift": float(row.shift),
                "why": why,
            }
        )
    summary["surprises"] = surprises
    return summary


@dataclass
class PromptValues:
    """Every predicted concept's value on each evaluation prompt's generation (prompts ×
    concepts, base and tuned) and the generations' lengths in words: what the realised shifts and
    their bootstrap are computed from."""

    base: np.ndarray
    tuned: np.ndarray
    base_lengths: np.ndarray
    tuned_lengths: np.ndarray

    def without_length(self) -> PromptValues:
        """Length partialled out of every concept's values (one line per concept over base and
        tuned together, so a change in length is taken out of the change)."""
        values = without_length(
            np.vstack([self.base, self.tuned]), np.concatenate([self.base_lengths, self.tuned_lengths])
        )
        n = len(self.base)
        return PromptValues(values[:n], values[n:], self.base_lengths, self.tuned_lengths)


# The predictors compared, the table's column of each.
PREDICTORS = {"sae": "predicted", "length": "predicted_length", "words": "predicted_words"}


def prediction_summary(table: pd.DataFrame, values: PromptValues, alpha: float, seed: int) -> dict:
    """``scatter_summary`` with 95% bootstrap intervals over the prompts for the audit's predictor
    and the baselines (length alone, a bag of words), length partialled out of both sides, and the
    SAE's R² less the better baseline's with its paired interval. ``table`` rows are ``values``'
    columns, in order."""
    summary = scatter_summary(table, alpha)
    draws = resamples(len(values.base), seed)
    samples = {}
    for name, column in PREDICTORS.items():
        predicted = table[column].to_numpy(dtype=np.float64)
        point = agreement(predicted, realised_shifts(values.base, values.tuned))
        samples[name] = bootstrap(predicted, values.base, values.tuned, draws)
        figures = summarise(point, samples[name])
        if name == "sae":
            summary.update(figures)
        else:
            summary.setdefault("baselines", {})[name] = figures
    partial = values.without_length()
    predicted = table["predicted_without_length"].to_numpy(dtype=np.float64)
    summary["without_length"] = summarise(
        agreement(predicted, realised_shifts(partial.base, partial.tuned)),
        bootstrap(predicted, partial.base, partial.tuned, draws),
    )
    best = max(("length", "words"), key=lambda b: summary["baselines"][b]["r2"] or 0.0)
    low, high = difference_interval(samples["sae"]["r2"], samples[best]["r2"])
    sae_r2, best_r2 = summary["r2"], summary["baselines"][best]["r2"]
    summary["over_best_baseline"] = {
        "baseline": best,
        "r2_difference": None if sae_r2 is None else sae_r2 - (best_r2 or 0.0),
        "r2_difference_low": low,
        "r2_difference_high": high,
    }
    summary["by_group"] = by_group(table, values, draws)
    summary["prompts"] = int(len(values.base))
    return summary


def by_group(table: pd.DataFrame, values: PromptValues, draws: np.ndarray) -> dict[str, dict]:
    """The audit predictor's figures, with intervals on the same resamples, within each group of
    concepts (heads, the sampled non-significant families, decided ones) of at least
    ``MIN_CONCEPTS``: the heads' sign agreement is the claim that the audit's findings are taught;
    the sample's is near chance by construction (their predictions are small and their signs
    mostly noise), which is why the figure over all concepts sits between the two."""
    out: dict[str, dict] = {}
    if "group" not in table.columns:
        return out
    for group, rows in table.groupby("group", sort=False).indices.items():
        if len(rows) < MIN_CONCEPTS:
            continue
        predicted = table["predicted"].to_numpy(dtype=np.float64)[rows]
        base, tuned = values.base[:, rows], values.tuned[:, rows]
        out[str(group)] = {
            "concepts": int(len(rows)),
            **summarise(agreement(predicted, realised_shifts(base, tuned)), bootstrap(predicted, base, tuned, draws)),
        }
    return out


def reemerged(curve: pd.DataFrame) -> list[str]:
    """Concepts held down at some checkpoint and risen at a later one (``curve``: concept_id,
    position (training order, the final model last), rose). Held down: the 95% interval of the
    paired change did not lie above zero; risen: it did."""
    found = []
    for concept_id, points in curve.sort_values("position").groupby("concept_id", sort=False):
        rose = points["rose"].to_numpy(dtype=bool)
        held = np.flatnonzero(~rose)
        if len(held) and rose[held[0] + 1 :].any():
            found.append(str(concept_id))
    return found


def prediction_concepts(view, decided: list[dict], seed: int) -> list[dict]:
    """The scatter's concepts: every head of the audit (its significant families when it has no
    heads), a seeded random sample of as many non-significant families (at least ``MIN_SAMPLE``
    when nothing is significant), then every decided concept (concept dicts as ``plan_concepts``
    gives them; a decision keeps its plan's parts). Each dict also carries the audit's kind, q
    value, effect size, whether it was decided, and its ``group``."""
    table = view.concepts
    alpha = view.report.fdr_threshold
    families = table[table["kind"] == "family"]
    heads = table[table["kind"] == "head"].sort_values("rank", kind="stable")
    core = heads if len(heads) else families[families["q_value"] < alpha].sort_values("rank", kind="stable")
    sources = {view.head_source(h) for h in heads["concept_id"]} if len(heads) else set()
    pool = families[(families["q_value"] >= alpha) & ~families["concept_id"].isin(sources)]
    size = min(len(pool), max(len(core), 0 if len(core) else MIN_SAMPLE))
    sample = pool.sample(n=size, random_state=seed).sort_values("rank", kind="stable")

    def audit_columns(concept_id: str) -> dict:
        if concept_id not in table.index:
            return {"kind": None, "q_value": float("nan"), "effect_size": float("nan")}
        row = table.loc[concept_id]
        return {"kind": row["kind"], "q_value": float(row["q_value"]), "effect_size": float(row.get("effect_size"))}

    out: dict[str, dict] = {}
    group = GROUP_HEAD if len(heads) else GROUP_SIGNIFICANT
    for rows, name in ((core, group), (sample, GROUP_SAMPLE)):
        for concept_id, label in zip(rows["concept_id"], rows["label"]):
            members = view.family_members(concept_id) if is_composite(concept_id) else {}
            out[concept_id] = {
                "concept_id": concept_id,
                "label": label,
                "action": "",
                "parts": list(members.items()) or [(concept_id, 1.0)],
                "decided": False,
                "group": name,
                **audit_columns(concept_id),
            }
    for concept in decided:
        out[concept["concept_id"]] = {
            **concept,
            "decided": True,
            "group": GROUP_DECIDED,
            **audit_columns(concept["concept_id"]),
        }
    return list(out.values())
