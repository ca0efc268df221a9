"""Jobs: a real audit started in its own process group, watched, stopped, killed, finished."""

from __future__ import annotations

import os
import signal
import time

import pytest

from spectrum_core import jobs
from spectrum_core.progress import ProgressLog
from spectrum_core.workspace import Workspace
from tests.conftest import HH_FILE, LLAMAFACTORY_FILE

# A small audit: short texts, a small SAE, no seed check, topics or null runs (these tests are about jobs).
SMALL = ["--max-prompt-tokens", "64", "--max-response-tokens", "64", "--training-tokens", "40000"]
SMALL += ["--sae-seeds", "0", "--topics", "0", "--null-runs", "0"]


def wait_for(predicate, timeout: float = 240, interval: float = 0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out waiting")


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.fixture
def workspace(tmp_path, bundled_model):
    workspace = Workspace(tmp_path / "ws")
    yield workspace
    for job in workspace.jobs():  # never leave a job running after the test
        jobs.stop_job(workspace, job.id, grace_seconds=2)


def test_job_runs_to_the_end_and_reports(workspace):
    record = workspace.add_dataset(LLAMAFACTORY_FILE)
    job_id = jobs.start_job(
        workspace,
        "audit",
        ["audit", str(record["id"]), "--max-pairs", "30", *SMALL],
        {"test": "finish"},
        dataset_id=record["id"],
    )
    final = wait_for(lambda: (v := jobs.view(workspace, job_id)) and not v.active and v)
    assert final.status == "succeeded", final.log_tail
    assert workspace.find_artifact(final.job.artifact_key) is not None
    assert {"activations", "sae", "statistics"} <= set(final.stages)
    assert final.stages["statistics"]["done"] == final.stages["statistics"]["total"]
    # The job is marked succeeded when its artifact is published; the CLI prints its summary just
    # after, so the log is read once the process has exited.
    wait_for(lambda: not jobs.process_alive(final.job.pid))
    assert "Audit finished" in (workspace.root / final.job.log_path).read_text()
    assert final.log_tail  # the page shows the log's end


def test_stop_ends_the_process_tree_and_resume_continues(workspace):
    record = workspace.add_dataset(HH_FILE)
    args = ["audit", str(record["id"]), "--max-pairs", "600", *SMALL]
    job_id = jobs.start_job(workspace, "audit", args, {"test": "stop"}, dataset_id=record["id"])
    pid = workspace.job(job_id).pid
    pgid = os.getpgid(pid)

    def shards():
        return sorted(workspace.artifacts_dir.glob("activations-*/shard-*.safetensors"))

    wait_for(lambda: len(shards()) >= 1)
    stopped = jobs.stop_job(workspace, job_id)
    assert stopped.status == "stopped" and not group_alive(pgid)
    finished = shards()
    # The same audit again starts after the shards the stopped one finished: its first progress
    # record already counts them as done.
    again = jobs.start_job(workspace, "audit", args, {"test": "stop"}, dataset_id=record["id"])
    first = wait_for(lambda: jobs.view(workspace, again).stages.get("activations"))
    # A fresh start would report one batch (at most 2,048 tokens) first; a resumed one reports the
    # finished shards (512 responses each, tens of thousands of tokens) on top.
    assert first["done"] > 10_000
    assert all(p.exists() for p in finished)
    jobs.stop_job(workspace, again)


def test_killed_job_shows_as_failed(workspace):
    record = workspace.add_dataset(HH_FILE)
    job_id = jobs.start_job(
        workspace,
        "audit",
        ["audit", str(record["id"]), "--max-pairs", "600", *SMALL],
        {"test": "kill"},
        dataset_id=record["id"],
    )
    wait_for(lambda: workspace.job(job_id).status == "running")
    os.killpg(os.getpgid(workspace.job(job_id).pid), signal.SIGKILL)
    job = wait_for(lambda: (j := jobs.refresh(workspace, job_id)).status == "failed" and j)
    assert "ended without reporting" in job.error


def test_stop_leaves_the_process_of_a_finished_job_alone(tmp_path):
    """A finished job's pid may belong to another process by now (or to the one that ran the job
    in-line): stopping the job must not touch it."""
    import subprocess

    workspace = Workspace(tmp_path / "ws")
    other = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        job_id = workspace.create_job("eval", {"test": "finished"})
        workspace.update_job(job_id, status="succeeded", pid=other.pid)
        assert jobs.stop_job(workspace, job_id, grace_seconds=0.5).status == "succeeded"
        assert other.poll() is None  # still running
    finally:
        other.kill()
        other.wait()


def test_a_jobs_state_is_read_in_one_place_and_a_dead_process_shows_as_failed(tmp_path):
    import subprocess

    workspace = Workspace(tmp_path / "ws")
    queued = workspace.create_job("tune", {"test": "queued"})
    assert jobs.state(workspace, queued) == "queued"
    gone = subprocess.Popen(["true"])
    gone.wait()
    running = workspace.create_job("tune", {"test": "died"})
    workspace.update_job(running, status="running", pid=gone.pid)
    # The row still says running; the one reading of the state sees the process is gone.
    assert workspace.job(running).status == "running" and jobs.state(workspace, running) == "failed"
    assert jobs.view(workspace, running).status == "failed"


def test_the_whole_job_estimate_of_a_tuning_run_comes_from_its_recorded_progress(tmp_path, monkeypatch):
    workspace = Workspace(tmp_path / "ws")
    job_id = workspace.create_job("tune", {"config": {"method": "dpo", "max_steps": 30}})
    progress = jobs.job_dir(workspace, job_id) / "progress.jsonl"
    workspace.update_job(
        job_id, status="running", pid=os.getpid(), progress_path=str(progress.relative_to(workspace.root))
    )
    clock = [1000.0]
    monkeypatch.setattr("spectrum_core.progress.time.time", lambda: clock[0])
    log = ProgressLog(progress, interval=0)
    log("prepare", 0, 3, step="loading the model", eta=None)
    estimate = jobs.estimate(workspace, jobs.view(workspace, job_id))
    assert estimate.seconds is None and "not been measured" in estimate.basis
    log("train", 0, 30, unit="steps", started_at_step=0)
    for step in range(1, 11):
        clock[0] += 3.0
        log("train", step, 30, unit="steps")
    assert jobs.estimate(workspace, jobs.view(workspace, job_id)).seconds == pytest.approx(3.0 * 20)
    evaluation = workspace.create_job("eval", {"runs": ["base"]})
    assert jobs.estimate(workspace, jobs.view(workspace, evaluation)).seconds is None
