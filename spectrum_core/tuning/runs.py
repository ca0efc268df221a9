"""A tuning run as a stage: plan + configuration → ``tune-<hash>/``.

The run logs its progress (step, loss, learning rate, reward margins, time left) to the job's
progress file and keeps checkpoints in the job's folder, so running the same job again resumes from
the last one. The artifact holds the adapter in peft format (or the full model), the tokenizer,
``config.yaml``, ``run.json`` (what it trained on) and the method's extras (held-out tasks, the
shaped reward, ReSet's kept rounds).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .. import constants as names
from ..interventions import SavedPlan, load_plan
from ..progress import Progress, StepsReport
from ..stages import JobLinks, Stage, StageContext, run_stage
from ..workspace import Workspace
from .config import TuningConfig
from .trainers import TRAINERS

SAVE_STAGE = "save"


class TuneStage(Stage):
    kind = "tune"

    def __init__(self, config: TuningConfig):
        self.config = config
        self.saved: SavedPlan | None = None

    def prepare(self, workspace: Workspace) -> None:
        self.saved = load_plan(workspace, self.config.plan_id)

    @property
    def plan(self):
        assert self.saved is not None, "prepare() first"
        return self.saved.plan

    def inputs(self, workspace: Workspace) -> dict:
        return {"plan": self.plan.plan_hash, "config": self.config.identity()}

    def links(self, workspace: Workspace) -> JobLinks:
        return JobLinks(
            dataset_id=self.plan.dataset_id, parent_job_id=self.plan.audit_job_id, plan_id=self.config.plan_id
        )

    def job_config(self) -> str:
        return self.config.to_yaml()

    def run(self, context: StageContext) -> None:
        config, folder = self.config, context.job_folder
        assert folder is not None, "a tuning run needs its job's folder for checkpoints"
        model, tokenizer = TRAINERS[config.method](
            context.workspace, config, folder / names.CHECKPOINTS_DIR, context.progress if context.is_main else None
        )
        context.barrier()  # every process has finished training before the main one saves
        if not context.is_main:
            return
        with StepsReport(context.progress, SAVE_STAGE, ["saving the weights", "copying the run's files"]) as steps:
            steps.begin("saving the weights")
            weights = context.staging / (names.MODEL_DIR if config.full_finetune else names.ADAPTER_DIR)
            model.save_pretrained(weights)
            tokenizer.save_pretrained(weights)
            steps.begin("copying the run's files")
            self._write_run_files(context, folder)
            steps.finish()

    def _write_run_files(self, context: StageContext, folder: Path) -> None:
        """The configuration, ``run.json``, the progress log and the method's extras, into staging."""
        config, staging = self.config, context.staging
        (staging / names.CONFIG_FILE).write_text(config.to_yaml())
        plan = self.plan
        (staging / names.RUN_FILE).write_text(
            json.dumps(
                {
                    "job_id": context.job_id,
                    "plan_id": config.plan_id,
                    "plan_hash": plan.plan_hash,
                    "audit_job_id": plan.audit_job_id,
                    "dataset_id": plan.dataset_id,
                    "model": config.model,
                    "method": config.method,
                },
                indent=1,
            )
        )
        shutil.copy(folder / names.PROGRESS_FILE, staging / names.PROGRESS_FILE)
        for extra in (names.HELD_OUT_TASKS_FILE, names.REWARD_DIR):
            if (folder / extra).is_dir():
                shutil.copytree(folder / extra, staging / extra)
            elif (folder / extra).exists():
                shutil.copy(folder / extra, staging / extra)
        for kept in sorted(folder.glob(names.RESET_ROUND_GLOB)):
            shutil.copy(kept, staging / kept.name)


def run_tuning(
    workspace: Workspace, config: TuningConfig, *, job_id: int | None = None, progress: Progress | None = None
) -> Path:
    """Run (or resume, or reuse) a tuning run; returns the artifact folder (in every process)."""
    stage = TuneStage(config)
    outcome = run_stage(workspace, stage, job_id=job_id, progress=progress)
    return outcome.folder if outcome is not None else workspace.artifact_path(stage.key(workspace)[0])
