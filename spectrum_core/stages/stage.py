"""The ``Stage`` interface and ``run_stage``, the one function that runs any stage.

For every stage: key the inputs → reuse a published artifact → create or adopt the job row → record
running / stopped / failed → write the job's ``config.yaml`` (what ``--resume`` runs again) → log
progress → run into a private staging folder → publish it under its key → mark the job succeeded.
Under several processes, every process prepares and runs; only the main one records and publishes.
"""

from __future__ import annotations

import shutil
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..constants import CONFIG_FILE
from ..jobs import job_dir, recording
from ..progress import Progress, ProgressLog, combine, quiet
from ..workspace import JobRecord, Workspace, artifact_key
from ..workspace.workspace import utc_now
from .distributed import distributed_state


@dataclass(frozen=True)
class JobLinks:
    """What a stage's job row points at (the pages list runs by these)."""

    dataset_id: int | None = None
    parent_job_id: int | None = None  # the audit a run or an evaluation belongs to
    plan_id: int | None = None


@dataclass
class StageContext:
    workspace: Workspace
    job_id: int | None
    job_folder: Path | None  # the job's own working files (checkpoints, resumable state)
    staging: Path  # where the artifact is written; published under its key when ``run`` returns
    progress: Progress
    state: Any = None  # accelerate's PartialState under several processes

    @property
    def is_main(self) -> bool:
        return self.state is None or bool(self.state.is_main_process)

    def barrier(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()


@dataclass
class StageOutcome:
    folder: Path
    key: str
    job_id: int | None  # the job that produced the artifact (or adopted the finished one)
    reused: bool


class Stage(ABC):
    kind: ClassVar[str]  # job kind and artifact kind
    progress_interval: ClassVar[float] = 0.0  # seconds between progress lines per sub-stage
    # A request answered by an existing artifact still gets a (succeeded) job row, so the request is
    # on record; a stage whose decisions attach to the producing job turns this off.
    record_reuse: ClassVar[bool] = True

    def prepare(self, workspace: Workspace) -> None:  # noqa: B027 (optional hook, nothing to do by default)
        """Resolve what the key needs (runs once per process, the main process first)."""

    @abstractmethod
    def inputs(self, workspace: Workspace) -> dict:
        """What the result depends on; hashed into the artifact key."""

    def links(self, workspace: Workspace) -> JobLinks:
        return JobLinks()

    def job_config(self) -> str | None:
        """YAML that ``--resume`` reads back to run this job again (None: nothing to resume)."""
        return None

    @abstractmethod
    def run(self, context: StageContext) -> None:
        """Do the work, writing the artifact into ``context.staging`` (main process)."""

    def key(self, workspace: Workspace) -> tuple[str, dict]:
        inputs = self.inputs(workspace)
        return artifact_key(self.kind, inputs), inputs


def create_stage_job(workspace: Workspace, stage: Stage, *, user: str | None = None) -> int:
    """A queued job row for ``stage`` (the app and the multi-process launcher start it later)."""
    stage.prepare(workspace)
    return workspace.create_job(stage.kind, stage.key(workspace)[1], **asdict(stage.links(workspace)), user=user)


def stage_status(workspace: Workspace, stage: Stage) -> tuple[Path | None, JobRecord | None]:
    """The published artifact of ``stage`` if there is one, else its job under way if any."""
    from ..jobs import refresh

    stage.prepare(workspace)
    key, inputs = stage.key(workspace)
    finished = workspace.find_newest_artifact(key)
    if finished is not None:
        return finished, None
    running = workspace.find_job(stage.kind, inputs, statuses=("running", "queued"))
    running = refresh(workspace, running.id) if running is not None else None
    return None, running if running is not None and running.active else None


def _producer(workspace: Workspace, kind: str, key: str) -> int | None:
    produced = [job.id for job in workspace.jobs(kind) if job.artifact_key == key and job.status == "succeeded"]
    return min(produced) if produced else None


def run_stage(
    workspace: Workspace,
    stage: Stage,
    *,
    job_id: int | None = None,
    progress: Progress | None = None,
    force: bool = False,
) -> StageOutcome | None:
    """Run ``stage`` (or reuse its published artifact). Returns None in helper processes."""
    state = distributed_state()
    if state is None:
        stage.prepare(workspace)
    else:
        with state.main_process_first():  # e.g. the main process adds a dataset, the others find it
            stage.prepare(workspace)
    key, inputs = stage.key(workspace)
    newest = workspace.newest_artifact(key)  # a version still on disk
    existing = workspace.artifact_path(newest) if newest else None
    if state is not None and not state.is_main_process:
        if existing is None or force:
            staging = workspace.staging_path(key)
            folder = job_dir(workspace, job_id) if job_id is not None else None
            stage.run(StageContext(workspace, job_id, folder, staging, progress or quiet, state))
            shutil.rmtree(staging, ignore_errors=True)
        return None
    if existing is not None and not force:
        assert newest is not None
        if job_id is None and stage.record_reuse:
            job_id = workspace.create_job(stage.kind, inputs, **asdict(stage.links(workspace)))
        if job_id is not None:
            workspace.update_job(job_id, status="succeeded", artifact_key=newest, finished_at=utc_now())
        return StageOutcome(existing, newest, job_id or _producer(workspace, stage.kind, newest), True)
    # A forced rerun never overwrites: it publishes the next version beside the ones before, so a
    # decision made on an earlier version still reads the concepts it was made on.
    key = workspace.next_artifact_version(key) if force else key
    if job_id is None:
        job_id = workspace.create_job(stage.kind, inputs, **asdict(stage.links(workspace)))
    folder = job_dir(workspace, job_id)
    staging = workspace.staging_path(key)
    try:
        with recording(workspace, job_id) as progress_path:
            document = stage.job_config()
            if document is not None and not (folder / CONFIG_FILE).exists():
                (folder / CONFIG_FILE).write_text(document)
            log = combine(progress, ProgressLog(progress_path, interval=stage.progress_interval))
            stage.run(StageContext(workspace, job_id, folder, staging, log, state))
            published = workspace.publish_artifact(staging, key, stage.kind, inputs)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone once published; a failed run's leftovers
    workspace.update_job(job_id, status="succeeded", artifact_key=key, finished_at=utc_now())
    return StageOutcome(published, key, job_id, False)
