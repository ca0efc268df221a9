"""The intervention plan: the researcher's concept decisions compiled into one reviewable object.

A plan names the audit and dataset it came from and, for every decided concept, the decision
(keep / suppress / amplify), its strength and reason, and how it acts on the data:

- ``suppress`` → ``reweight`` (default), ``drop``, ``flip`` or ``none`` (reward only);
- ``amplify`` → ``none`` (reward only, the default) or ``upweight``;
- ``keep`` → ``none``.

A decision on a concept family (``family:N``) acts on the family score, the weighted sum of its
members (``ConceptChoice.members``), everywhere downstream: the data interventions, the shaped
reward, CAFT's directions and prevalence in generations. A member decided on its own is left out
of its family's choice: the researcher's more specific decision wins.

The plan is saved as YAML in the workspace; the tuning stage reads it back with
:meth:`InterventionPlan.from_yaml` (the shaped reward uses the suppressed and amplified concepts,
the trainers the shaped pairs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, cast

import numpy as np
import yaml

from ..audit.review import is_composite
from ..audit.stats.length_control import share_side
from ..errors import SpectrumError
from ..workspace.artifacts import config_hash

if TYPE_CHECKING:
    from ..audit.review import AuditView
    from ..audit.scores import PairScores
    from ..workspace import Workspace

PLAN_VERSION = 1
DATA_INTERVENTIONS: dict[str, tuple[str, ...]] = {
    "suppress": ("reweight", "drop", "flip", "none"),
    "amplify": ("none", "upweight"),
    "keep": ("none",),
}
# Controls for the prediction check (metrics/prediction.py): a plan that must teach the opposite,
# or nothing. Applied after every decision, to every pair of the dataset.
CONTROLS = {
    "none": "the pairs as the decisions shape them",
    "label_flip": "chosen and rejected swapped in every pair: what tuning learns must reverse",
    "shuffle": "chosen and rejected swapped in a seeded random half of the pairs: tuning should learn nothing",
}
INTERVENTION_HELP = {
    "reweight": "reweight pairs so the concept no longer predicts the label",
    "drop": "drop the pairs where the concept decides the label",
    "flip": "flip the labels of pairs where the concept was preferred",
    "upweight": "give pairs that agree with the concept more weight (× 1 + strength)",
    "none": "leave the data alone (the decision acts through the reward)",
}


class PlanError(SpectrumError, ValueError):
    """A plan that cannot be applied as written (unknown action or intervention)."""


def default_intervention(action: str) -> str:
    return DATA_INTERVENTIONS[action][0]


@dataclass
class ConceptChoice:
    concept_id: str
    label: str
    action: str
    intervention: str
    direction: str  # the side with more of it in most audited pairs (raw_lean): chosen / rejected / none
    strength: float | None = None
    reason: str = ""
    decision_id: int | None = None
    decided_by: str = ""
    decided_at: str = ""
    stats: dict = field(default_factory=dict)
    # For a family: the members it acts on and their weights (its score is the weighted sum of
    # theirs); members with a decision of their own are left out, since theirs wins for them.
    members: dict[str, float] = field(default_factory=dict)

    @property
    def is_family(self) -> bool:
        """A family, or a head (which acts through its source's members)."""
        return is_composite(self.concept_id)

    def parts(self) -> list[tuple[str, float]]:
        """(concept id, weight) whose weighted sum is this choice's concept: its members for a
        family, else the concept itself."""
        return list(self.members.items()) if self.is_family else [(self.concept_id, 1.0)]

    def __post_init__(self):
        if self.action not in DATA_INTERVENTIONS:
            raise PlanError(f"concept {self.concept_id}: unknown action {self.action!r}")
        if self.intervention not in DATA_INTERVENTIONS[self.action]:
            raise PlanError(
                f"concept {self.concept_id}: {self.action} cannot use intervention "
                f"{self.intervention!r}; choose one of {DATA_INTERVENTIONS[self.action]}"
            )


@dataclass
class InterventionPlan:
    audit_job_id: int
    audit_artifact: str
    dataset_id: int | None
    dataset_artifact: str | None
    model: str
    layer: int
    hook_name: str
    concepts: list[ConceptChoice]
    balance_bins: int = 5  # |Δ| bins within which reweighting balances the two directions
    version: int = PLAN_VERSION
    # The scoring job's artifact whose Δ the plan uses on the pairs outside a sampled audit
    # (audit/scores.py); None: the plan acts on the audited pairs only.
    scores_artifact: str | None = None
    control: str = "none"  # a key of CONTROLS
    control_seed: int = 0  # which random half the shuffle control swaps

    def __post_init__(self):
        if self.control not in CONTROLS:
            raise PlanError(f"unknown control {self.control!r}; choose one of {', '.join(CONTROLS)}")

    def as_control(self, control: str, seed: int = 0) -> InterventionPlan:
        """The same plan with every pair's labels swapped (``label_flip``) or a seeded random half
        of them (``shuffle``) after its decisions: the prediction check's negative controls."""
        return replace(self, control=control, control_seed=seed)

    # --------------------------------------------------------------------------- selections
    def by_action(self, action: str) -> list[ConceptChoice]:
        return [c for c in self.concepts if c.action == action]

    @property
    def suppressed(self) -> list[ConceptChoice]:
        return self.by_action("suppress")

    @property
    def amplified(self) -> list[ConceptChoice]:
        return self.by_action("amplify")

    # --------------------------------------------------------------------------- YAML
    def to_dict(self) -> dict:
        data = asdict(self)
        # ``members`` only where there are some, so plans saved before families keep their hash.
        data["concepts"] = [{k: v for k, v in asdict(c).items() if k != "members" or v} for c in self.concepts]
        if data["scores_artifact"] is None:  # likewise: plans without scores keep their hash
            del data["scores_artifact"]
        if data["control"] == "none":  # and plans that are not controls
            del data["control"], data["control_seed"]
        return data

    def to_yaml(self, summary: dict | None = None) -> str:
        data = {"spectrum_plan": self.to_dict()}
        if summary is not None:
            data["data_summary"] = summary
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)

    @classmethod
    def from_yaml(cls, text: str) -> InterventionPlan:
        document = yaml.safe_load(text)
        if not isinstance(document, dict) or "spectrum_plan" not in document:
            raise PlanError("not a Spectrum plan: the YAML has no top-level 'spectrum_plan'")
        data = dict(document["spectrum_plan"])
        if data.get("version") != PLAN_VERSION:
            raise PlanError(f"plan version {data.get('version')!r}; this Spectrum reads version {PLAN_VERSION}")
        known = {f.name for f in fields(ConceptChoice)}
        data["concepts"] = [
            ConceptChoice(**{k: v for k, v in c.items() if k in known}) for c in data.get("concepts") or []
        ]
        return cls(**data)

    @property
    def plan_hash(self) -> str:
        return config_hash(self.to_dict())

    def data_concepts(self) -> set[str]:
        """The single concepts whose Δ the data interventions read (a family's undecided members)."""
        return {part for c in self.concepts if c.intervention != "none" for part, _ in c.parts()}


def raw_lean(row) -> str:
    """The side that has more of the concept in most audited pairs where it differs: what the data
    show a trainer, so what drop, flip and reweight balance. (The audit's ``direction`` is the
    length-aware test's, which can lean the other way for a concept that rides on length; a
    trainer sees the raw pairs.)"""
    return str(share_side([row.get("share_chosen_more", np.nan)])[0])


def compile_plan(
    workspace: Workspace, audit_job_id: int, view: AuditView, *, balance_bins: int = 5
) -> InterventionPlan:
    """The plan for an audit from the workspace's current (not undone) decisions.

    ``view`` is the finished audit (each concept's direction and label, the model and layer);
    labels the researcher edited win over the audit's own.
    """
    job = workspace.job(audit_job_id)
    concepts = view.concepts
    dataset = workspace.dataset(job.dataset_id) if job.dataset_id else None
    labels = workspace.labels(audit_job_id)
    table = concepts.set_index("concept_id", drop=False) if "concept_id" in concepts else concepts
    choices = []
    decisions = workspace.current_decisions(audit_job_id)
    for concept_id, decision in sorted(decisions.items(), key=lambda item: item[1]["id"]):
        row = table.loc[concept_id] if concept_id in table.index else None
        members = {
            member: weight for member, weight in view.family_members(concept_id).items() if member not in decisions
        }
        choices.append(
            ConceptChoice(
                concept_id=concept_id,
                label=labels.get(concept_id, str(row["label"]) if row is not None else concept_id),
                action=decision["action"],
                intervention=decision["intervention"] or default_intervention(decision["action"]),
                direction=raw_lean(row) if row is not None else "none",
                strength=decision["strength"],
                reason=decision["reason"],
                decision_id=decision["id"],
                decided_by=decision["decided_by"],
                decided_at=decision["decided_at"],
                stats=decision["stats"],
                members=members,
            )
        )
    return InterventionPlan(
        audit_job_id=audit_job_id,
        audit_artifact=cast(str, job.artifact_key),  # the audit is finished (``view``), so it has its artifact
        dataset_id=job.dataset_id,
        dataset_artifact=dataset["artifact_key"] if dataset else None,
        model=view.report.model,
        layer=view.report.layer,
        hook_name=view.report.hook_name,
        concepts=choices,
        balance_bins=balance_bins,
    )


def with_scores(workspace: Workspace, plan: InterventionPlan) -> tuple[InterventionPlan, PairScores | None]:
    """The plan with the newest scoring of its audit that covers every concept its data
    interventions read (recorded in ``scores_artifact``, so the saved plan names it), and those
    scores; the plan as it is and None when no scoring covers it."""
    from ..audit.scores import find_scores

    needed = plan.data_concepts()
    scores = find_scores(workspace, plan.audit_job_id, needed) if needed else None
    return replace(plan, scores_artifact=scores.key if scores is not None else None), scores
