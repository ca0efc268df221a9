"""Concept prevalence in generations (the closed loop): responses sampled on held-out prompts of
the audited dataset are read at the audit's layer by the audit's model and encoded by its SAE,
exactly as the audit read chosen and rejected responses, and each concept is measured on them.

Per concept: the firing rate (share of responses where it is active) and the mean activation,
base vs tuned, with 95% intervals, and the paired difference over prompts (both models answer
the same prompts). What "active" means depends on the concept's kind (``present_when``): a
token-mode SAE feature fires when its max-pooled activation is > 0 (the encoder clamps it at 0);
a difference-mode concept (a direction, measured as the pooled residual's component along it), a
probe, or a family holding either, when its value exceeds its median on the base model's
generations for the same prompts (so the base rate is ~0.5 by construction and the tuned rate says
which way the generations moved).

The mean "activation" of a difference-mode concept is that component: a signed dot product, not
centred, so it can sit well below 0 (−5 for every response) whatever the response says; a family
is the sum of its members' values over their standard deviations, so it inherits the sign. Read
its change from the base (``shift``), not its level.

A suppressed concept is flagged when the tuned model's mean activation rose: the 95% interval of
the paired difference lies above zero. ``shift`` is the same paired difference in standard
deviations (the root of the mean of the base and tuned variances), so concepts of any scale can
share one axis (the prediction scatter).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from .. import constants as names
from ..reward.encoder import EncodedResponses, ResponseEncoder
from ..reward.shaped import TOKEN_SAE, parts_activation


def held_out_prompts(pairs: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """Up to ``n`` distinct prompts of the dataset's held-out split (seeded), with their pair ids."""
    held = pairs[pairs["split"] != "train"].copy()
    held["prompt_key"] = held["prompt"].map(lambda p: repr([(m["role"], m["content"]) for m in p]))
    held = held.drop_duplicates("prompt_key")
    if len(held) > n:
        held = held.sample(n=n, random_state=seed)
    return held[["pair_id", "prompt"]].reset_index(drop=True)


@dataclass
class Generations:
    """Responses with their encoding at the audit's layer (what concept values are read from)."""

    prompts: list[list[dict]]
    responses: list[str]
    encoded: EncodedResponses

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"prompt": self.prompts, "response": self.responses}).to_parquet(folder / names.GENERATIONS_FILE)
        sp.save_npz(folder / "features.npz", self.encoded.features)
        np.save(folder / "pooled.npy", self.encoded.pooled)
        np.save(folder / "lengths.npy", self.encoded.lengths)

    @classmethod
    def load(cls, folder: Path) -> Generations:
        frame = pd.read_parquet(folder / names.GENERATIONS_FILE)
        encoded = EncodedResponses(
            features=sp.load_npz(folder / "features.npz").tocsr(),
            pooled=np.load(folder / "pooled.npy"),
            lengths=np.load(folder / "lengths.npy"),
        )
        return cls([list(p) for p in frame["prompt"]], frame["response"].tolist(), encoded)


def encode_generations(
    loaded, saes: dict, layer: int, prompts: list[list[dict]], responses: list[str], progress=None
) -> Generations:
    encoder = ResponseEncoder(loaded, saes[TOKEN_SAE], layer)
    return Generations(prompts, responses, encoder.encode(prompts, responses, progress))


def concept_values(generations: Generations, concept: dict, saes: dict) -> np.ndarray:
    """The concept's value on every generation (for a family, the weighted sum of its members')."""
    parts = concept.get("parts") or [(concept["concept_id"], 1.0)]
    return parts_activation(parts, generations.encoded, generations.responses, saes)


def wilson_interval(successes: int, n: int) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    interval = stats.binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(interval.low), float(interval.high)


def mean_interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and its 95% t interval."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean()) if len(values) else float("nan")
    if len(values) < 2 or values.std() == 0:
        return mean, mean, mean
    low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=stats.sem(values))
    return mean, float(low), float(high)


# What "fires" (is present) means for a concept, in the tables' ``present_when`` column.
ABOVE_ZERO, ABOVE_BASE_MEDIAN = "above 0", "above the base model's median"


def fires_above_zero(concept: dict) -> bool:
    """Token-mode SAE features (and families of them only) have a zero point: the SAE's activation
    is clamped at 0, and above 0 the feature is active."""
    parts = concept.get("parts") or [(concept["concept_id"], 1.0)]
    return all(str(c).startswith("token:") for c, _ in parts)


def firing_threshold(concept: dict, base_values: np.ndarray) -> float:
    """Token-mode features fire when above 0; anything else (a difference-mode projection, a
    probe, a family holding either) when above its median on the base model's generations."""
    return 0.0 if fires_above_zero(concept) else float(np.median(base_values))


def compare_prevalence(base: Generations, tuned: Generations | None, concepts: list[dict], saes: dict) -> pd.DataFrame:
    """One row per concept (``concepts``: dicts with concept_id, label, action). With no tuned
    generations, the base columns only. Base and tuned must answer the same prompts, in order."""
    if tuned is not None and [repr(p) for p in base.prompts] != [repr(p) for p in tuned.prompts]:
        raise ValueError(
            "base and tuned generations answer different prompts; evaluate both with the same evaluation settings"
        )
    rows = []
    for concept in concepts:
        concept_id = concept["concept_id"]
        base_values = concept_values(base, concept, saes)
        threshold = firing_threshold(concept, base_values)
        row = {
            "concept_id": concept_id,
            "label": concept.get("label", concept_id),
            "action": concept.get("action", ""),
            "threshold": threshold,
            "present_when": ABOVE_ZERO if fires_above_zero(concept) else ABOVE_BASE_MEDIAN,
        }
        sides = [("base", base_values)]
        if tuned is not None:
            sides.append(("tuned", concept_values(tuned, concept, saes)))
        for side, values in sides:
            fired = int((values > threshold).sum())
            row[f"{side}_rate"] = fired / len(values) if len(values) else float("nan")
            row[f"{side}_rate_low"], row[f"{side}_rate_high"] = wilson_interval(fired, len(values))
            row[f"{side}_mean"], row[f"{side}_mean_low"], row[f"{side}_mean_high"] = mean_interval(values)
        if tuned is not None:
            difference = sides[1][1] - base_values
            row["difference"], row["difference_low"], row["difference_high"] = mean_interval(difference)
            scale = (
                float(np.sqrt((base_values.var(ddof=1) + sides[1][1].var(ddof=1)) / 2)) if len(difference) > 1 else 0.0
            )
            row["scale"] = scale
            for name in ("", "_low", "_high"):
                row[f"shift{name}"] = row[f"difference{name}"] / scale if scale > 0 else 0.0
            row["p_value"] = float(stats.ttest_rel(sides[1][1], base_values).pvalue) if difference.std() > 0 else 1.0
            row["rose"] = bool(row["difference_low"] > 0)
            row["fell"] = bool(row["difference_high"] < 0)
            row["flagged"] = bool(row["action"] == "suppress" and row["rose"])
        rows.append(row)
    return pd.DataFrame(rows)
