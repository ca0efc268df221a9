"""Applying a plan's data interventions to the audited pairs, and measuring what they do.

Every intervention works on Δ = concept(chosen) − concept(rejected) per pair, oriented so that
a positive "agreement" e = s·Δ means the pair agrees with the audit's finding (s = +1 when chosen
responses had more of the concept, −1 when rejected ones had). A concept predicts the label when
agreeing pairs outnumber disagreeing ones; each intervention removes that imbalance:

- **drop**: drop the agreeing pairs with the largest agreement (where the concept most plausibly
  decided the label) until agreeing and disagreeing pairs are equally many;
- **flip**: swap chosen and rejected in half that excess, again largest agreement first, which
  balances the two directions while keeping every pair;
- **reweight**: weights that balance the total weight of agreeing and disagreeing pairs within
  quantile bins of |Δ|, so neither the sign nor the size of Δ predicts the label. With several
  reweighted concepts the weights are found by raking (iterative proportional fitting) so that all
  balances hold together;
- **upweight** (amplify): agreeing pairs' weights × (1 + strength).

Order: drops, then flips, then upweights, then raking; weights are finally scaled to mean 1 over
the kept pairs. Pairs outside a sampled audit (a pair limit) are shaped too once a scoring job
(``audit/scoring.py``) has measured the decided concepts on them (``scored``); pairs neither
audited nor scored are never changed and say so.

Raking is a few lines of numpy; no maintained library does weighted balancing on this
pair-oriented layout, so it is written here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .plan import ConceptChoice, InterventionPlan, PlanError

if TYPE_CHECKING:
    from ..audit.scores import PairScores

DeltaSource = Callable[[str], np.ndarray]  # concept id -> Δ for every audited pair, in order

RAKING_ROUNDS = 100
RAKING_TOLERANCE = 1e-4


@dataclass
class ShapedPairs:
    """Per-pair outcome of a plan: one row per pair of the dataset (audited or not)."""

    table: pd.DataFrame  # pair_id, audited, kept, flipped, weight, changed_by
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        t = self.table
        kept = t[t["kept"]]
        weights = kept["weight"].to_numpy()
        return {
            "pairs": int(len(t)),
            "audited": int(t["audited"].sum()),
            "not_audited": int((~t["audited"]).sum()),
            "scored": int(t["scored"].sum()),  # outside the audit, measured by a scoring job
            "unscored": int((~t["audited"] & ~t["scored"]).sum()),  # neither: left unchanged
            "dropped": int((~t["kept"]).sum()),
            "flipped": int(t["flipped"].sum()),
            "reweighted": int((kept["weight"].sub(1.0).abs() > 1e-6).sum()),
            "changed": int(((~t["kept"]) | t["flipped"] | (t["weight"].sub(1.0).abs() > 1e-6)).sum()),
            "effective_pairs": float(weights.sum() ** 2 / np.square(weights).sum()) if len(weights) else 0.0,
            "notes": list(self.notes),
        }

    def changed(self) -> pd.DataFrame:
        t = self.table
        return t[(~t["kept"]) | t["flipped"] | (t["weight"].sub(1.0).abs() > 1e-6)]


def _sign(direction: str) -> float:
    return {"chosen": 1.0, "rejected": -1.0}.get(direction, 0.0)


def _balance_bins(agreement: np.ndarray, mask: np.ndarray, n_bins: int) -> np.ndarray | None:
    """Bin index per pair (−1 outside ``mask`` or where Δ = 0), with as many quantile bins of |Δ|
    as keep both directions in every bin; None when even one bin has only one direction."""
    differ = mask & (agreement != 0)
    if not differ.any():  # no kept pair differs in the concept: nothing to balance, no bins
        return np.full(len(agreement), -1)
    magnitude = np.abs(agreement[differ])
    for bins in range(max(1, n_bins), 0, -1):
        edges: np.ndarray | list[float] = (
            np.unique(np.quantile(magnitude, np.linspace(0, 1, bins + 1)[1:-1])) if bins > 1 else []
        )
        index = np.full(len(agreement), -1)
        index[differ] = np.searchsorted(edges, magnitude, side="right")
        ok = True
        for b in np.unique(index[differ]):
            in_bin = index == b
            if not ((agreement[in_bin] > 0).any() and (agreement[in_bin] < 0).any()):
                ok = False
                break
        if ok:
            return index
    return None


def choice_delta(choice: ConceptChoice, deltas: DeltaSource, n_pairs: int) -> np.ndarray:
    """The chosen concept's Δ: for a family, the weighted sum of its members' Δ."""
    return sum((weight * deltas(member) for member, weight in choice.parts()), np.zeros(n_pairs))


class CoveredDeltas:
    """Δ on every pair a plan can act on: the audit's own for its pairs (``audited``, in that
    order), then a scoring job's for the pairs it scored outside the audit (``extra``).

    Every statistic that decides what an intervention does (the |Δ| quantile bins, the excess
    of agreeing pairs that drop and flip remove, the totals raking balances) is computed on all
    of these pairs together, not on the audited sample alone. The goal is that the concept no
    longer predicts the label in the data a trainer sees, which is every covered pair; balancing
    the sample and carrying its factors to the rest would leave the rest balanced only up to the
    sample's noise (a 200-pair sample setting weights for 2,000 pairs), and the audit chose its
    concepts on its discovery pairs, where their lean is inflated by that choice (the winner's
    curse), while the scored pairs are an unbiased measure of it. What stays the audit's is the
    hypothesis itself: each concept's direction (``ConceptChoice.direction``)."""

    def __init__(self, audited: pd.Index, deltas: DeltaSource, scored: PairScores | None = None):
        self.audited, self.deltas, self.scores = audited, deltas, scored
        outside = ~scored.pair_ids.isin(audited) if scored is not None else np.zeros(0, bool)
        self.extra = scored.pair_ids[outside] if scored is not None else pd.Index([])
        self.positions = np.flatnonzero(outside)  # the extra pairs' places in the scores

    @property
    def pair_ids(self) -> pd.Index:
        return self.audited.append(self.extra)

    def __call__(self, concept_id: str) -> np.ndarray:
        audited = self.deltas(concept_id)
        if self.scores is None or not len(self.extra):
            return audited
        return np.concatenate([audited, self.scores.delta_array(concept_id)[self.positions]])


def shape_pairs(
    plan: InterventionPlan,
    all_pair_ids: pd.Index,
    audited_pair_ids: pd.Index,
    deltas: DeltaSource,
    scored: PairScores | None = None,
) -> ShapedPairs:
    """Apply the plan's data interventions. ``deltas(concept_id)`` gives Δ in ``audited_pair_ids``
    order; ``scored`` (a scoring job's, ``plan.with_scores``) adds the pairs it scored outside the
    audit, so the plan covers them too."""
    covered = CoveredDeltas(audited_pair_ids, deltas, scored)
    state = _Shaping(plan, covered, len(covered.pair_ids))
    state.drop()
    state.flip()
    state.upweight()
    state.rake(state.reweight_targets())
    state.normalise()
    return _shaped_table(state, all_pair_ids, covered)


class _Shaping:
    """The audited pairs while a plan is applied: which are kept, which flipped, their weights,
    which interventions changed each, and the notes for the user. Each step reads what the steps
    before it left (agreement is measured on the kept pairs, in their current orientation)."""

    def __init__(self, plan: InterventionPlan, deltas: DeltaSource, n: int):
        self.plan = plan
        self.deltas = deltas
        self.n = n
        self.kept = np.ones(n, dtype=bool)
        self.orientation = np.ones(n)  # −1 where chosen and rejected were swapped
        self.weight = np.ones(n)
        self.changed_by: list[list[str]] = [[] for _ in range(n)]
        self.notes: list[str] = []

    def agreement(self, choice: ConceptChoice) -> np.ndarray:
        return _sign(choice.direction) * self.orientation * choice_delta(choice, self.deltas, self.n)

    def active(self, action: str, intervention: str) -> list[ConceptChoice]:
        """The plan's concepts with this action and intervention that have a direction to act on
        (a note for each that has none)."""
        chosen = [c for c in self.plan.concepts if c.action == action and c.intervention == intervention]
        for choice in chosen:
            if _sign(choice.direction) == 0:
                self.notes.append(
                    f"{choice.concept_id}: no direction in the audit, so {intervention} has nothing to act on"
                )
        return [c for c in chosen if _sign(c.direction) != 0]

    def mark(self, indices: np.ndarray, change: str) -> None:
        for i in indices:
            self.changed_by[i].append(change)

    def excess_agreeing(self, choice: ConceptChoice, divisor: int) -> np.ndarray:
        """The kept pairs agreeing with ``choice`` beyond the disagreeing ones (that excess, divided
        by ``divisor``), largest agreement first."""
        e = self.agreement(choice)
        agree = np.flatnonzero(self.kept & (e > 0))
        n = (len(agree) - int((self.kept & (e < 0)).sum())) // divisor
        return agree[np.argsort(-e[agree], kind="stable")[: max(n, 0)]]

    def drop(self) -> None:
        """Drop the excess of agreeing pairs, largest agreement first."""
        for choice in self.active("suppress", "drop"):
            victims = self.excess_agreeing(choice, 1)
            self.kept[victims] = False
            self.mark(victims, f"drop:{choice.concept_id}")

    def flip(self) -> None:
        """Swap chosen and rejected in half the excess of agreeing pairs, largest agreement first
        (each flip moves a pair from agreeing to disagreeing: half the excess balances them)."""
        for choice in self.active("suppress", "flip"):
            victims = self.excess_agreeing(choice, 2)
            self.orientation[victims] *= -1
            self.mark(victims, f"flip:{choice.concept_id}")

    def upweight(self) -> None:
        for choice in self.active("amplify", "upweight"):
            e = self.agreement(choice)
            factor = 1.0 + float(choice.strength if choice.strength is not None else 1.0)
            boosted = np.flatnonzero(self.kept & (e > 0))
            self.weight[boosted] *= factor
            self.mark(boosted, f"upweight:{choice.concept_id}")

    def reweight_targets(self) -> list[tuple[ConceptChoice, np.ndarray, np.ndarray]]:
        """(concept, agreement, bins) for each reweighted concept that raking can balance. One whose
        differing pairs all agree cannot be balanced: its agreeing pairs get weight 0 instead."""
        kept, weight = self.kept, self.weight
        balanced = []
        for choice in self.active("suppress", "reweight"):
            e = self.agreement(choice)
            bins = _balance_bins(e, kept, self.plan.balance_bins)
            if bins is None:
                agreeing = kept & (e > 0)
                if agreeing.any():
                    self.notes.append(
                        f"{choice.concept_id}: every kept pair where it differs agrees with the "
                        f"label, so weights cannot balance it; its {int(agreeing.sum())} agreeing "
                        "pairs get weight 0"
                    )
                    weight[agreeing] = 0.0
                    self.mark(np.flatnonzero(agreeing), f"reweight:{choice.concept_id}")
                continue
            if not (bins >= 0).any():
                self.notes.append(f"{choice.concept_id}: no kept pair differs in it, so there is nothing to reweight")
                continue
            balanced.append((choice, e, bins))
            self.mark(np.flatnonzero(bins >= 0), f"reweight:{choice.concept_id}")
        return balanced

    def rake(self, balanced: list[tuple[ConceptChoice, np.ndarray, np.ndarray]]) -> None:
        """Iterative proportional fitting: scale agreeing and disagreeing weight to equal totals in
        every bin of every concept in turn, until the worst imbalance is under the tolerance."""
        weight = self.weight
        for _ in range(RAKING_ROUNDS):
            worst = 0.0
            for _choice, e, bins in balanced:
                for b in np.unique(bins[bins >= 0]):
                    agree = (bins == b) & (e > 0)
                    disagree = (bins == b) & (e < 0)
                    w_agree, w_disagree = weight[agree].sum(), weight[disagree].sum()
                    if w_agree <= 0 or w_disagree <= 0:
                        continue
                    total = w_agree + w_disagree
                    worst = max(worst, abs(w_agree - w_disagree) / total)
                    weight[agree] *= total / (2 * w_agree)
                    weight[disagree] *= total / (2 * w_disagree)
            if worst < RAKING_TOLERANCE:
                break
        else:
            if balanced:
                self.notes.append(
                    f"raking stopped after {RAKING_ROUNDS} rounds with an imbalance of "
                    f"{worst:.1%}: the reweighted concepts pull against each other"
                )

    def normalise(self) -> None:
        """Weights scaled to mean 1 over the kept pairs; 0 for the dropped ones."""
        kept, weight = self.kept, self.weight
        if kept.any() and weight[kept].sum() > 0:
            weight[kept] *= kept.sum() / weight[kept].sum()
        weight[~kept] = 0.0


def _shaped_table(state: _Shaping, all_pair_ids: pd.Index, covered: CoveredDeltas) -> ShapedPairs:
    """One row per pair of the dataset, in its order: the audited and scored pairs as shaped, the
    rest (outside the audit's pair limit, not scored) unchanged with weight 1."""
    notes, audited_pair_ids, n_audited = state.notes, covered.audited, len(covered.audited)
    shaped = pd.DataFrame(
        {
            "pair_id": covered.pair_ids,
            "audited": np.arange(len(covered.pair_ids)) < n_audited,
            "scored": np.arange(len(covered.pair_ids)) >= n_audited,
            "kept": state.kept,
            "flipped": state.orientation < 0,
            "weight": state.weight,
            "changed_by": [", ".join(c) for c in state.changed_by],
        }
    )
    missing = all_pair_ids.difference(covered.pair_ids, sort=False)
    rest = pd.DataFrame(
        {
            "pair_id": missing,
            "audited": False,
            "scored": False,
            "kept": True,
            "flipped": False,
            "weight": 1.0,
            "changed_by": "",
        }
    )
    notes.extend(_coverage_notes(len(covered.extra), len(missing)))
    strangers = covered.pair_ids.difference(all_pair_ids, sort=False)
    if len(strangers):
        where = "audited" if strangers[0] in audited_pair_ids else "scored"
        raise PlanError(
            f"{len(strangers)} {where} pairs (e.g. {strangers[0]}) are not in the dataset: "
            f"the {'audit' if where == 'audited' else 'scoring'} was made on a different dataset"
        )
    table = pd.concat([shaped, rest], ignore_index=True).set_index("pair_id", drop=False)
    table = table.loc[all_pair_ids].reset_index(drop=True)
    _apply_control(table, state.plan, notes)
    return ShapedPairs(table=table, notes=notes)


def _apply_control(table: pd.DataFrame, plan: InterventionPlan, notes: list[str]) -> None:
    """Swap chosen and rejected on top of the decisions: in every pair (``label_flip``), or in a
    random half drawn from ``control_seed`` in the dataset's pair order (``shuffle``)."""
    if plan.control == "none":
        return
    if plan.control == "label_flip":
        swap = np.ones(len(table), dtype=bool)
    else:
        swap = np.random.default_rng(plan.control_seed).random(len(table)) < 0.5
    table["flipped"] = table["flipped"].to_numpy(dtype=bool) ^ swap
    table.loc[swap, "changed_by"] = [
        ", ".join(filter(None, (c, f"control:{plan.control}"))) for c in table.loc[swap, "changed_by"]
    ]
    notes.append(
        f"control plan ({plan.control}): chosen and rejected swapped in {int(swap.sum()):,} of {len(table):,} pairs "
        "after the decisions; train on it only to check the prediction"
    )


def _coverage_notes(n_scored: int, n_missing: int) -> list[str]:
    notes = []
    if n_scored:
        notes.append(
            f"{n_scored:,} pairs outside the audit were scored for the decided concepts by a scoring job "
            "and are shaped with the audited ones"
        )
    if n_missing:
        notes.append(
            f"{n_missing:,} pairs were outside the audit (its pair limit) and not scored, so they are exported "
            "unchanged with weight 1; score them for the decided concepts to shape them too"
        )
    return notes


def association(delta: np.ndarray, weight: np.ndarray | None = None, orientation: np.ndarray | None = None) -> dict:
    """How strongly a concept predicts the label under pair weights and flips.

    ``share_chosen_more``: weighted share of pairs (where the concept differs) in which the chosen
    response has more of it: 0.5 means it no longer predicts the label. ``effect``: weighted mean Δ
    over weighted standard deviation (a standardised mean difference)."""
    weight = np.ones_like(delta) if weight is None else weight
    d = delta * (1.0 if orientation is None else orientation)
    differ = (d != 0) & (weight > 0)
    w = weight[differ]
    total = w.sum()
    share = float(w[d[differ] > 0].sum() / total) if total > 0 else float("nan")
    live = weight > 0
    if live.any() and weight[live].sum() > 0:
        mean = np.average(d[live], weights=weight[live])
        sd = np.sqrt(np.average((d[live] - mean) ** 2, weights=weight[live]))
        effect = float(mean / sd) if sd > 0 else 0.0
    else:
        effect = float("nan")
    return {"share_chosen_more": share, "effect": effect, "n_differ": int(differ.sum())}


def association_table(
    shaped: ShapedPairs, audited_pair_ids: pd.Index, deltas: DeltaSource, concept_ids: list[str]
) -> pd.DataFrame:
    """Before / after association for each concept on the audited pairs."""
    rows = shaped.table.set_index("pair_id").reindex(audited_pair_ids)
    weight = rows["weight"].to_numpy(dtype=float)
    orientation = np.where(rows["flipped"].to_numpy(dtype=bool), -1.0, 1.0)
    records = []
    for concept_id in concept_ids:
        delta = deltas(concept_id)
        before = association(delta)
        after = association(delta, weight, orientation)
        records.append(
            {
                "concept_id": concept_id,
                "share_before": before["share_chosen_more"],
                "share_after": after["share_chosen_more"],
                "effect_before": before["effect"],
                "effect_after": after["effect"],
                "n_differ_before": before["n_differ"],
                "n_differ_after": after["n_differ"],
            }
        )
    return pd.DataFrame.from_records(
        records,
        columns=[
            "concept_id",
            "share_before",
            "share_after",
            "effect_before",
            "effect_after",
            "n_differ_before",
            "n_differ_after",
        ],
    )
