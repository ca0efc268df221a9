"""run_stage on a toy stage: publish, reuse, job records, the job's config.yaml, failures."""

from __future__ import annotations

import pytest

from spectrum_core.constants import CONFIG_FILE, PROGRESS_FILE
from spectrum_core.jobs import job_dir
from spectrum_core.progress import read_progress
from spectrum_core.stages import JobLinks, Stage, StageContext, run_stage, stage_status
from spectrum_core.workspace import Workspace


class Squares(Stage):
    """Writes the squares of 0..n-1; fails on request."""

    kind = "squares"

    def __init__(self, n: int, fail: bool = False):
        self.n, self.fail, self.runs = n, fail, 0

    def inputs(self, workspace: Workspace) -> dict:
        return {"n": self.n}

    def links(self, workspace: Workspace) -> JobLinks:
        return JobLinks(plan_id=None)

    def job_config(self) -> str:
        return f"n: {self.n}\n"

    def run(self, context: StageContext) -> None:
        self.runs += 1
        for i in range(self.n):
            context.progress("squares", i + 1, self.n, unit="numbers")
        (context.staging / "squares.txt").write_text(" ".join(str(i * i) for i in range(self.n)))
        if self.fail:
            raise RuntimeError("the toy stage failed on purpose")


def test_runs_once_then_reuses(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    stage = Squares(4)
    first = run_stage(workspace, stage)
    assert first is not None and not first.reused and stage.runs == 1
    assert (first.folder / "squares.txt").read_text() == "0 1 4 9"
    assert first.folder.name == first.key and first.key.startswith("squares-")
    job = workspace.job(first.job_id)
    assert job.status == "succeeded" and job.artifact_key == first.key and job.config == {"n": 4}
    assert (job_dir(workspace, first.job_id) / CONFIG_FILE).read_text() == "n: 4\n"
    records = read_progress(job_dir(workspace, first.job_id) / PROGRESS_FILE)
    assert records[-1]["done"] == records[-1]["total"] == 4
    again = run_stage(workspace, Squares(4))
    assert again is not None and again.reused and again.folder == first.folder
    assert again.job_id != first.job_id and workspace.job(again.job_id).artifact_key == first.key  # on record
    Squares.record_reuse = False
    try:
        quiet = run_stage(workspace, Squares(4))
        assert quiet.reused and quiet.job_id == first.job_id  # the job that produced it, no new row
    finally:
        Squares.record_reuse = True
    assert len(workspace.jobs("squares")) == 2
    assert stage_status(workspace, Squares(4)) == (first.folder, None)
    assert stage_status(workspace, Squares(5)) == (None, None)


def test_a_started_job_adopts_a_finished_result(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    done = run_stage(workspace, Squares(3))
    queued = workspace.create_job("squares", {"n": 3})
    outcome = run_stage(workspace, Squares(3), job_id=queued)
    assert outcome.reused and outcome.job_id == queued
    assert workspace.job(queued).status == "succeeded" and workspace.job(queued).artifact_key == done.key


def test_failure_is_recorded_and_leaves_no_staging(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    with pytest.raises(RuntimeError, match="on purpose"):
        run_stage(workspace, Squares(2, fail=True))
    job = workspace.jobs("squares")[0]
    assert job.status == "failed" and "on purpose" in job.error
    assert not list((workspace.artifacts_dir / ".staging").iterdir())
    assert workspace.find_artifact(Squares(2).key(workspace)[0]) is None


def test_force_replaces_the_result(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    first = run_stage(workspace, Squares(2))
    (first.folder / "squares.txt").write_text("stale")
    forced = run_stage(workspace, Squares(2), force=True)
    assert not forced.reused and (forced.folder / "squares.txt").read_text() == "0 1"
