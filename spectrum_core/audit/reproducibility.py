"""Do two audits of the same data tell the same story? Families matched across audits.

Two runs of one audit on the same machine with the same thread count agree to the last bit. With
another thread count they do not: oneDNN's bfloat16 matrix products split their sums by thread, so
the activations round differently (about two thirds of the values differ by a bfloat16 step or
two), the SAE trained on them ends in other latents, and feature numbers cannot be compared. What
must agree is the finding: the families, their direction and their order. Families are compared by
what they measure, not by number: a family of one audit is matched to the family of the other whose
family-score Δ over the same pairs correlates best with its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .families import cross_correlation
from .review import AuditView

# Two families are "the same" when their family-score Δ correlate at least this much over the
# pairs both audits read (docs/audit.md, 'Reproducibility').
SAME_FAMILY_R = 0.8


@dataclass
class FamilyMatch:
    family: str  # in the first audit
    rank: int
    label: str
    matched: str  # the best-correlated family of the second audit
    matched_rank: int
    r: float
    same_direction: bool

    @property
    def same(self) -> bool:
        return self.r >= SAME_FAMILY_R and self.same_direction


def family_deltas(view: AuditView, family_ids: list[str], pair_ids: pd.Index) -> np.ndarray:
    """pairs × families Δ of the family scores, on ``pair_ids``."""
    positions = view.pair_ids.get_indexer(pair_ids)
    return np.column_stack([view.delta_array(f)[positions] for f in family_ids])


def match_families(first: AuditView, second: AuditView, top: int = 10) -> list[FamilyMatch]:
    """For each of the first audit's ``top`` families (significant first, as ranked): its best
    match among all the second audit's families, with the correlation of their Δ."""
    pair_ids = first.pair_ids.intersection(second.pair_ids, sort=False)
    ours = first.concepts[first.concepts["kind"] == "family"].head(top)
    theirs = second.concepts[second.concepts["kind"] == "family"]
    if len(ours) == 0 or len(theirs) == 0:
        return []
    r = cross_correlation(
        family_deltas(first, list(ours["concept_id"]), pair_ids),
        family_deltas(second, list(theirs["concept_id"]), pair_ids),
    )
    matches = []
    for i, (_, row) in enumerate(ours.iterrows()):
        j = int(np.argmax(r[i]))
        other = theirs.iloc[j]
        matches.append(
            FamilyMatch(
                family=row["concept_id"],
                rank=int(row["rank"]),
                label=str(row["label"]),
                matched=str(other["concept_id"]),
                matched_rank=int(other["rank"]),
                r=float(r[i, j]),
                same_direction=row["direction"] == other["direction"],
            )
        )
    return matches
