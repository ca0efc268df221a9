"""The evaluations of several models of one audit, side by side (what the Results page shows and
exports): their reports, and concept prevalence for the union of the runs' decided concepts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..artifacts import EvaluationArtifact
from ..constants import CHECKPOINT_SHIFTS_FILE, GENERATIONS_DIR, SHIFTS_FILE
from ..workspace import JobRecord, Workspace
from .config import PRESETS, EvalConfig, eval_config_from_dict, eval_preset
from .errors import EvaluationError
from .evaluate import eval_key
from .prevalence import Generations, compare_prevalence
from .report import load_report
from .targets import BASE, plan_concepts, resolve_target


def tuning_runs(workspace: Workspace, audit_job_id: int | None) -> list[JobRecord]:
    """Finished tuning runs of an audit, newest first, one per trained model: a later request for
    the same run only reused it, so the job that trained it stands for it."""
    first: dict[str, JobRecord] = {}
    for job in workspace.jobs("tune"):  # newest first: the last one kept per key is the oldest
        if (
            job.status == "succeeded"
            and job.artifact_key
            and (audit_job_id is None or job.parent_job_id == audit_job_id)
        ):
            first[job.artifact_key] = job
    return sorted(first.values(), key=lambda j: -j.id)


def evaluation_settings(workspace: Workspace) -> tuple[dict[str, EvalConfig], str | None]:
    """The presets, then every other setting the workspace holds evaluations for (e.g. from
    `spectrum eval --set ...`), labelled by the job that made them; and the label of the newest
    evaluation's settings (None when there is none)."""
    settings = {name: eval_preset(name) for name in PRESETS}
    labels = {str(c.identity()): name for name, c in settings.items()}
    newest = None
    for job in workspace.jobs("eval"):  # newest first
        folder = workspace.find_artifact(job.artifact_key) if job.artifact_key else None
        if folder is None or not EvaluationArtifact(folder).complete:
            continue
        config = eval_config_from_dict(load_report(folder)["evaluation"])
        identity = str(config.identity())
        if identity not in labels:
            labels[identity] = f"custom (eval job #{job.id})"
            settings[labels[identity]] = config
        newest = newest or labels[identity]
    return settings, newest


@dataclass
class Comparison:
    folders: dict[str, Path | None]  # model name → its evaluation (None: not evaluated yet)
    reports: list[dict] = field(default_factory=list)
    report_folders: dict[str, Path] = field(default_factory=dict)  # a report's target name → its folder
    prevalence: dict[str, pd.DataFrame] = field(default_factory=dict)  # tuned model → table vs base
    base_prevalence: pd.DataFrame | None = None  # base only: the audit's current decisions
    shifts: dict[str, pd.DataFrame] = field(default_factory=dict)  # tuned model → predicted vs realised
    curves: dict[str, pd.DataFrame] = field(default_factory=dict)  # tuned model → suppressed over checkpoints

    @property
    def missing(self) -> list[str]:
        return [name for name, folder in self.folders.items() if folder is None]


def gather(
    workspace: Workspace, runs: list[str], config: EvalConfig, audit_job_id: int | None, saes: dict | None = None
) -> Comparison:
    """The base model and ``runs`` (tuning job ids): which are evaluated with ``config``, their
    reports, and prevalence tables over the union of the runs' decided concepts."""
    targets = {}
    for run in [BASE, *[str(r) for r in runs if str(r) != BASE]]:
        target = resolve_target(workspace, run, audit_job_id)
        if not target.is_base and audit_job_id is not None and target.audit_job_id != audit_job_id:
            raise EvaluationError(f"run {run} was tuned on audit {target.audit_job_id}, not {audit_job_id}")
        targets[run] = target
    folders = {run: workspace.find_newest_artifact(eval_key(workspace, t, config)[0]) for run, t in targets.items()}
    comparison = Comparison(folders=folders)
    names = {}  # run → its report's target name
    for run, folder in folders.items():
        if folder is not None:
            report = load_report(folder)
            comparison.reports.append(report)
            comparison.report_folders[report["target"]] = folder
            names[run] = report["target"]
    for name, folder in comparison.report_folders.items():
        if (folder / SHIFTS_FILE).exists():
            comparison.shifts[name] = pd.read_parquet(folder / SHIFTS_FILE)
        if (folder / CHECKPOINT_SHIFTS_FILE).exists():
            comparison.curves[name] = pd.read_parquet(folder / CHECKPOINT_SHIFTS_FILE)
    base_folder = folders[BASE]
    if saes is None or base_folder is None or not (base_folder / GENERATIONS_DIR).exists():
        return comparison
    tuned = [run for run in names if run != BASE]
    concepts: dict[str, dict] = {}
    for run in tuned:
        for concept in plan_concepts(workspace, targets[run]):
            concepts.setdefault(concept["concept_id"], concept)  # the first run's decision labels it
    base = Generations.load(base_folder / GENERATIONS_DIR)
    for run in tuned:
        folder = folders[run]
        assert folder is not None  # a tuned run in ``names`` has its report, so its folder
        comparison.prevalence[names[run]] = compare_prevalence(
            base, Generations.load(folder / GENERATIONS_DIR), list(concepts.values()), saes
        )
    if not tuned:
        current = plan_concepts(workspace, targets[BASE])
        if current:
            comparison.base_prevalence = compare_prevalence(base, None, current, saes)
    return comparison
