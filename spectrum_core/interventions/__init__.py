"""From concept decisions to interventions on the data: the plan, its application, its export."""

from .export import SavedPlan, load_plan, save_plan, shaped_records
from .plan import (
    CONTROLS,
    DATA_INTERVENTIONS,
    INTERVENTION_HELP,
    ConceptChoice,
    InterventionPlan,
    PlanError,
    compile_plan,
    default_intervention,
    with_scores,
)
from .shaping import CoveredDeltas, ShapedPairs, association, association_table, shape_pairs

__all__ = [
    "CONTROLS",
    "DATA_INTERVENTIONS",
    "INTERVENTION_HELP",
    "ConceptChoice",
    "CoveredDeltas",
    "InterventionPlan",
    "PlanError",
    "SavedPlan",
    "ShapedPairs",
    "association",
    "association_table",
    "compile_plan",
    "default_intervention",
    "load_plan",
    "save_plan",
    "shape_pairs",
    "shaped_records",
    "with_scores",
]
