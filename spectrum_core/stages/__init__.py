"""Stages: the long pieces of work (audit, tuning run, evaluation) run one way.

A stage is a configuration, the inputs its artifact is keyed by, and a ``run`` that writes the
artifact into a staging folder; ``run_stage`` owns everything around that (reuse, the job record,
the progress log, barriers between processes, publishing). New stages plug in the same way.
"""

from .distributed import distributed_state
from .stage import JobLinks, Stage, StageContext, StageOutcome, create_stage_job, run_stage, stage_status

__all__ = [
    "JobLinks",
    "Stage",
    "StageContext",
    "StageOutcome",
    "create_stage_job",
    "distributed_state",
    "run_stage",
    "stage_status",
]
