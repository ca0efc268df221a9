"""Decisions carried from one audit to a newer one (a forced rerun, another SAE seed, more pairs).

Never by concept id: after retraining, ``token:123`` is another latent. Each decided concept of
the older audit is matched to the concept of the newer one, of the same kind and mode, whose
per-pair Δ correlates best with its own over the pairs both audits read (the measure
``reproducibility.match_families`` uses). A match is offered only at ``CARRY_R`` or more and in
the same direction; the researcher sees the table (``propose_carry``) before anything is written
(``carry_decisions``), and each carried decision says where it came from.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from ..workspace import Workspace
from .families import cross_correlation
from .reproducibility import SAME_FAMILY_R
from .review import AuditView

# The same bar as "the same family" across two audits of the same data (docs/audit.md,
# 'Reproducibility'): below it, the newer audit's best match measures something else.
CARRY_R = SAME_FAMILY_R


@dataclass
class CarryMatch:
    decision_id: int  # the older audit's decision
    concept_id: str
    label: str
    action: str
    matched: str | None  # the newer audit's best-correlated concept of the same kind and mode
    matched_label: str
    r: float
    same_direction: bool
    already_decided: bool  # the newer audit has its own decision on ``matched``: it is kept

    @property
    def carried(self) -> bool:
        """Whether ``carry_decisions`` writes this one."""
        return self.matched is not None and self.r >= CARRY_R and self.same_direction and not self.already_decided

    @property
    def why_not(self) -> str:
        if self.matched is None:
            return "nothing of its kind in the newer audit"
        if self.r < CARRY_R:
            return f"best match r = {self.r:.2f} < {CARRY_R}"
        if not self.same_direction:
            return "its best match leans the other way"
        if self.already_decided:
            return "decided there already"
        return ""


def propose_carry(
    older: AuditView, newer: AuditView, decisions: dict[str, dict], decided_in_newer: Collection[str] = ()
) -> list[CarryMatch]:
    """One ``CarryMatch`` per current decision of the older audit (``decisions``: concept id →
    decision row, as ``Workspace.current_decisions`` gives them), in decision order."""
    pairs = older.pair_ids.intersection(newer.pair_ids, sort=False)
    ours, theirs = older.pair_ids.get_indexer(pairs), newer.pair_ids.get_indexer(pairs)
    table, other = older.concepts, newer.concepts
    matches = []
    for concept_id, decision in sorted(decisions.items(), key=lambda item: item[1]["id"]):
        row = table.loc[concept_id] if concept_id in table.index else None
        label = str(row["label"]) if row is not None else concept_id
        candidates = (
            other[(other["kind"] == row["kind"]) & (other["mode"] == row["mode"])]
            if row is not None
            else other.iloc[:0]
        )
        best, r, same_direction = None, float("nan"), False
        if len(candidates) and len(pairs) > 2:
            mine = older.delta_array(concept_id)[ours][:, None]
            deltas = np.column_stack([newer.delta_array(c)[theirs] for c in candidates["concept_id"]])
            correlation = np.nan_to_num(cross_correlation(mine, deltas)[0])
            j = int(np.argmax(correlation))
            best, r = str(candidates["concept_id"].iloc[j]), float(correlation[j])
            same_direction = row is not None and row["direction"] == candidates["direction"].iloc[j]
        matches.append(
            CarryMatch(
                decision_id=int(decision["id"]),
                concept_id=concept_id,
                label=label,
                action=str(decision["action"]),
                matched=best,
                matched_label=str(other.loc[best, "label"]) if best is not None else "",
                r=r,
                same_direction=bool(same_direction),
                already_decided=best in decided_in_newer,
            )
        )
    return matches


def carry_proposal(workspace: Workspace, older_job: int, newer_job: int) -> list[CarryMatch]:
    """``propose_carry`` for two audit jobs of a workspace."""
    older, newer = (AuditView.load(workspace.job_artifact(job)) for job in (older_job, newer_job))
    decided = set(workspace.current_decisions(newer_job))
    return propose_carry(older, newer, workspace.current_decisions(older_job), decided)


def carry_decisions(
    workspace: Workspace, older_job: int, newer_job: int, matches: list[CarryMatch], *, user: str | None = None
) -> list[int]:
    """Write the carried matches as decisions on ``newer_job`` (the action, strength and
    intervention of the older decision; its reason prefixed by where it came from); returns
    the new decision ids."""
    older = {d["id"]: d for d in workspace.decisions(older_job)}
    written = []
    for match in matches:
        if not match.carried:
            continue
        source = older[match.decision_id]
        note = f"carried from audit #{older_job}'s {match.concept_id} (r = {match.r:.2f})"
        written.append(
            workspace.decide(
                newer_job,
                str(match.matched),
                match.action,
                strength=source["strength"],
                intervention=source["intervention"],
                reason=f"{note}: {source['reason']}" if source["reason"] else note,
                stats={
                    **source["stats"],
                    "carried_from": {
                        "audit_job_id": older_job,
                        "artifact_key": source.get("artifact_key"),
                        "concept_id": match.concept_id,
                        "decision_id": match.decision_id,
                        "r": match.r,
                    },
                },
                user=user,
            )
        )
    return written
