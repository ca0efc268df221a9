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
of their variances (``prevalence.compare_prevalence``), with its 95% t interval. A family
*moved* when that interval excludes zero.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..audit.review import is_composite

# Families on the scatter besides every decided one: the audit's best-ranked (the queue a
# researcher reviews first; 50 keeps an evaluation's encoding cost small).
TOP_FAMILIES = 50
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


def predicted_shifts(concepts: list[dict], delta_of, pair_ids: pd.Index, training: pd.DataFrame) -> dict[str, float]:
    """``predicted_shift`` for every concept dict (concept_id, parts). ``delta_of(concept_id)``
    gives Δ for every audited pair in ``pair_ids`` order; ``training`` holds the pairs the run
    trained on (pair_id, weight, flipped); pairs outside the audit are left out."""
    positions = pair_ids.get_indexer(training["pair_id"])
    inside = positions >= 0
    positions = positions[inside]
    weights = training["weight"].to_numpy(dtype=np.float64)[inside]
    flipped = training["flipped"].to_numpy(dtype=bool)[inside]
    out = {}
    for concept in concepts:
        parts = concept.get("parts") or [(concept["concept_id"], 1.0)]
        delta = sum((float(w) * delta_of(c) for c, w in parts), np.zeros(len(pair_ids)))
        scale = float(delta.std()) if len(delta) else 0.0
        out[concept["concept_id"]] = predicted_shift(delta[positions], weights, flipped, scale)
    return out


def scatter_summary(table: pd.DataFrame, alpha: float) -> dict:
    """Agreement of prediction and realisation over the families of ``table`` (columns predicted,
    shift, shift_low, shift_high, q_value, concept_id, label): R² and slope of the least-squares
    line, Spearman's ρ, sign agreement among the families that moved, and the surprises."""
    valid = table.dropna(subset=["predicted", "shift"])
    predicted, realised = valid["predicted"].to_numpy(), valid["shift"].to_numpy()
    summary: dict = {"families": int(len(valid)), "r2": None, "slope": None, "spearman": None}
    if len(valid) >= 3 and predicted.std() > 0 and realised.std() > 0:
        fit = stats.linregress(predicted, realised)
        summary["r2"] = float(fit.rvalue**2)
        summary["slope"] = float(fit.slope)
        summary["spearman"] = float(stats.spearmanr(predicted, realised).statistic)
    moved = (valid["shift_low"] > 0) | (valid["shift_high"] < 0)
    summary["moved"] = int(moved.sum())
    signed = moved & (valid["predicted"] != 0)
    agree = np.sign(valid["predicted"]) == np.sign(valid["shift"])
    summary["sign_agreement"] = float(agree[signed].mean()) if signed.any() else None
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


def prediction_concepts(view, decided: list[dict]) -> list[dict]:
    """The scatter's concepts: the audit's ``TOP_FAMILIES`` best-ranked families (its best
    concepts when it has none), then every decided concept (concept dicts as ``plan_concepts``
    gives them; a decision keeps its plan's parts). Each dict also carries the audit's kind,
    q value, effect size, and whether it was decided."""
    table = view.concepts
    families = table[table["kind"] == "family"]
    # Heads stand for families or concepts already in the table; the scatter keeps to those.
    singles = table[table["kind"] != "head"]
    top = (families if len(families) else singles).sort_values("rank", kind="stable").head(TOP_FAMILIES)

    def audit_columns(concept_id: str) -> dict:
        if concept_id not in table.index:
            return {"kind": None, "q_value": float("nan"), "effect_size": float("nan")}
        row = table.loc[concept_id]
        return {"kind": row["kind"], "q_value": float(row["q_value"]), "effect_size": float(row.get("effect_size"))}

    out: dict[str, dict] = {}
    for concept_id, label in zip(top["concept_id"], top["label"]):
        members = view.family_members(concept_id) if is_composite(concept_id) else {}
        out[concept_id] = {
            "concept_id": concept_id,
            "label": label,
            "action": "",
            "parts": list(members.items()) or [(concept_id, 1.0)],
            "decided": False,
            **audit_columns(concept_id),
        }
    for concept in decided:
        out[concept["concept_id"]] = {**concept, "decided": True, **audit_columns(concept["concept_id"])}
    return list(out.values())
