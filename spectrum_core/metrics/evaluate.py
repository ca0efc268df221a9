"""An evaluation as a stage: the base model or a tuned run → every metric → ``eval-<hash>/``.

The artifact is keyed by the model (spec, and the run's adapter artifact), the evaluation settings
and the audit whose SAE reads the generations, so asking again for the same evaluation reuses it.
A tuned run's evaluation first makes (or reuses) the base model's evaluation with the same
settings: concept prevalence and the reward's win rate compare the two on the same prompts. Every
progress record names the model it is about (``"base: coverage"``, ``"run 5 (dpo): coverage"``,
and ``model`` in the record), so a job that evaluates several never shows an unlabelled line.

Artifact contents: ``report.json`` (ids, settings, every summary, runtimes), ``steerability.parquet``
(one row per output), ``alignment.parquet`` (one row per item and group), ``coverage.parquet`` (one
row per prompt, with its samples), ``generations/`` (responses to held-out prompts of the audited
dataset and their encoding at the audit's layer), ``prevalence.parquet`` (tuned runs: the plan's
decided concepts, base vs tuned), ``shifts.parquet`` (tuned runs: the audit's top families and the
decided concepts, predicted vs realised shift; see ``prediction.py``), ``checkpoint_shifts.parquet``
(tuned runs with suppressed concepts: their shift at every saved checkpoint),
``faithfulness.parquet`` (one row per checkpoint).
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import yaml

from ..artifacts import EvaluationArtifact
from ..constants import CONFIG_FILE
from ..jobs import job_dir, recording
from ..progress import Progress, ProgressLog, combine, labelled
from ..settings import plain
from ..stages import JobLinks, Stage, StageContext, run_stage
from ..workspace import Workspace, artifact_key
from .config import EvalConfig
from .sections import evaluate_model
from .targets import BASE, EvalTarget, resolve_target

# Part of every evaluation's key: raise it when a metric's definition changes, so evaluations made
# by the old definition are not reused for the new one.
METRICS_VERSION = 4  # 2: the prediction scatter and the checkpoint curves; 3: heads, intervals, baselines;
# 4: R² signed by its slope, figures per group of concepts


def eval_key(workspace: Workspace, target: EvalTarget, config: EvalConfig) -> tuple[str, dict]:
    audit = workspace.job(target.audit_job_id).artifact_key if target.audit_job_id else None
    inputs = {
        "model": target.model,
        "tune_artifact": target.tune_artifact,
        "audit": audit,
        "config": config.identity(),
        "metrics_version": METRICS_VERSION,
    }
    return artifact_key("eval", inputs), inputs


def job_document(runs: list[str], audit_job_id: int | None, config: EvalConfig) -> str:
    """What ``spectrum eval --resume`` reads back."""
    return yaml.safe_dump({"runs": runs, "audit_job_id": audit_job_id, "evaluation": plain(config)}, sort_keys=False)


class EvalStage(Stage):
    kind = "eval"

    def __init__(self, run: str | int, config: EvalConfig, audit_job_id: int | None = None):
        self.run_name, self.config, self.audit_job_id = str(run), config, audit_job_id
        self.target: EvalTarget | None = None

    def prepare(self, workspace: Workspace) -> None:
        self.target = resolve_target(workspace, self.run_name, self.audit_job_id)

    def inputs(self, workspace: Workspace) -> dict:
        assert self.target is not None, "prepare() first"
        return eval_key(workspace, self.target, self.config)[1]

    def links(self, workspace: Workspace) -> JobLinks:
        assert self.target is not None, "prepare() first"
        return JobLinks(parent_job_id=self.target.tune_job_id or self.target.audit_job_id)

    def job_config(self) -> str:
        return job_document([self.run_name], self.audit_job_id, self.config)

    def run(self, context: StageContext) -> None:
        target = self.target
        assert target is not None, "prepare() first"
        base_folder = None
        if not target.is_base and target.audit_job_id is not None:
            # The base evaluation with the same settings: prevalence and win rate compare against it
            # (its own stage labels its records "base: ...").
            base_folder = run_evaluation(
                context.workspace, BASE, self.config, audit_job_id=target.audit_job_id, progress=context.progress
            )
        log = labelled(context.progress, target.name)
        report = evaluate_model(context.workspace, target, self.config, context.staging, base_folder, log)
        EvaluationArtifact(context.staging).write_report({**report, "job_id": context.job_id})


def run_evaluation(
    workspace: Workspace,
    run: str | int,
    config: EvalConfig,
    *,
    audit_job_id: int | None = None,
    job_id: int | None = None,
    progress: Progress | None = None,
) -> Path:
    """Evaluate the base model or a tuning run (reusing a finished identical evaluation); returns
    the artifact folder."""
    outcome = run_stage(workspace, EvalStage(run, config, audit_job_id), job_id=job_id, progress=progress)
    assert outcome is not None  # evaluations run in one process
    return outcome.folder


def evaluate_runs(
    workspace: Workspace,
    runs: list[str],
    config: EvalConfig,
    audit_job_id: int | None,
    job_id: int | None,
    progress: Progress | None = None,
) -> list[Path]:
    """Evaluate several models in turn (one ``spectrum eval`` job). With a job id, the earlier
    models log into that job's progress too (each record labelled with its model by its stage), a
    failure of any of them ends the job, and the last model's evaluation is the job itself."""
    if job_id is not None:
        folder = job_dir(workspace, job_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).write_text(job_document(runs, audit_job_id, config))
    folders = []
    with recording(workspace, job_id) if job_id is not None and len(runs) > 1 else nullcontext() as progress_path:
        log = ProgressLog(progress_path, interval=0.0) if progress_path else None
        for run in runs[:-1]:
            folders.append(
                run_evaluation(workspace, run, config, audit_job_id=audit_job_id, progress=combine(progress, log))
            )
    folders.append(
        run_evaluation(workspace, runs[-1], config, audit_job_id=audit_job_id, job_id=job_id, progress=progress)
    )
    return folders
