"""Long work as jobs: each runs the ``spectrum`` command line in its own process group.

The app starts a job and forgets it: the child records its own progress (a JSON-lines file) and
status (in the workspace database), so a page reload, a second tab or a restarted app finds it
again. Stop ends the whole process tree. A job whose process is gone without having said how it
ended (killed, machine restarted) is marked failed the next time anyone looks.

Every page reads a job's state through ``state`` (or ``view``, which uses the same reading), so the
job panel and the runs lists cannot disagree about what a job is doing; ``estimate`` gives the
time left for the whole job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import constants as names
from .progress import JobEstimate, ProgressFollower
from .workspace import JobRecord, Workspace
from .workspace.workspace import ACTIVE_STATUSES, utc_now

ACTIVE = ACTIVE_STATUSES


@dataclass
class JobView:
    """What a page shows about a job: its row, latest progress per stage, and its log's tail."""

    job: JobRecord
    stages: dict[str, dict] = field(default_factory=dict)
    current: dict | None = None
    log_tail: str = ""
    records: list[dict] = field(default_factory=list)  # every progress record so far, in order

    @property
    def status(self) -> str:
        return self.job.status

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


def job_dir(workspace: Workspace, job_id: int) -> Path:
    return workspace.root / "jobs" / str(job_id)


@contextmanager
def recording(workspace: Workspace, job_id: int):
    """Inside the job's own process: mark the job running (this pid), yield its progress-log
    path, and mark it stopped (Ctrl-C / KeyboardInterrupt) or failed (any other exception, with
    the message) if the work raises. The caller marks success once its result is published."""
    folder = job_dir(workspace, job_id)
    folder.mkdir(parents=True, exist_ok=True)
    progress_path = folder / names.PROGRESS_FILE
    workspace.update_job(
        job_id,
        status="running",
        pid=os.getpid(),
        started_at=utc_now(),
        error=None,
        finished_at=None,
        progress_path=str(progress_path.relative_to(workspace.root)),
    )
    try:
        yield progress_path
    except KeyboardInterrupt:
        workspace.update_job(job_id, status="stopped", finished_at=utc_now())
        raise
    except BaseException as exc:
        workspace.update_job(job_id, status="failed", finished_at=utc_now(), error=f"{type(exc).__name__}: {exc}")
        raise


def start_job(
    workspace: Workspace,
    kind: str,
    cli_args: list[str],
    config: dict,
    *,
    dataset_id: int | None = None,
    parent_job_id: int | None = None,
    plan_id: int | None = None,
    env: dict | None = None,
    user: str | None = None,
) -> int:
    """Create the job row and start ``spectrum --workspace ROOT <cli_args> --job-id N`` detached
    in a new session (its own process group), with stdout and stderr going to the job's log."""
    job_id = workspace.create_job(
        kind, config, dataset_id=dataset_id, parent_job_id=parent_job_id, plan_id=plan_id, user=user
    )
    _spawn(workspace, job_id, cli_args, env)
    return job_id


def resume_job(workspace: Workspace, job_id: int, cli_args: list[str], *, env: dict | None = None) -> None:
    """Start a stopped or failed job's command again under the same job id (it resumes from
    whatever it left on disk, e.g. a training checkpoint)."""
    job = refresh(workspace, job_id)
    if job.status in ACTIVE:
        raise ValueError(f"job {job_id} is still {job.status}")
    workspace.update_job(job_id, status="queued", error=None, finished_at=None)
    _spawn(workspace, job_id, cli_args, env)


def _spawn(workspace: Workspace, job_id: int, cli_args: list[str], env: dict | None) -> None:
    folder = job_dir(workspace, job_id)
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / names.LOG_FILE
    command = [
        sys.executable,
        "-m",
        "spectrum_core.cli",
        "--workspace",
        str(workspace.root),
        *cli_args,
        "--job-id",
        str(job_id),
    ]
    with open(log_path, "ab") as log:
        log.write(("$ " + " ".join(command) + "\n").encode())
        log.flush()
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            cwd=str(Path(__file__).resolve().parent.parent),
        )
    workspace.update_job(
        job_id,
        pid=process.pid,
        log_path=str(log_path.relative_to(workspace.root)),
        progress_path=str((folder / names.PROGRESS_FILE).relative_to(workspace.root)),
    )


def _reap(pid: int) -> None:
    """Collect an exited child of this process so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def process_alive(pid: int | None) -> bool:
    if not pid:
        return False
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie still answers kill(0); /proc says it is dead
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def refresh(workspace: Workspace, job_id: int) -> JobRecord:
    """The job row, after marking it failed if its process died without reporting."""
    job = workspace.job(job_id)
    pid = job.pid
    if job.status in ACTIVE and pid and not process_alive(pid):
        # Read again: the process may have written its final status just before exiting.
        job = workspace.job(job_id)
        if job.status in ACTIVE:
            workspace.update_job(
                job_id,
                status="failed",
                finished_at=utc_now(),
                error="the job's process ended without reporting a result "
                "(killed, or the machine restarted); see its log",
            )
            workspace.remove_staging(pid)  # its half-built artifact
            job = workspace.job(job_id)
    return job


def state(workspace: Workspace, job_id: int) -> str:
    """The job's state as every page shows it (queued, running, succeeded, failed or stopped):
    its row, after marking it failed if its process died without reporting (``refresh``)."""
    return refresh(workspace, job_id).status


def estimate(workspace: Workspace, job_view: JobView, now: float | None = None) -> JobEstimate:
    """Time left for the whole of an active job, from this machine's measured rates: a tuning run's
    seconds per step (and per round), an audit's steps to come at the last finished audit's
    timings corrected by this run's; for other jobs, and where nothing is measured yet, no figure
    and the reason."""
    now = time.time() if now is None else now
    kind, records = job_view.job.kind, job_view.records
    if kind == "tune":
        from .tuning.timing import tuning_estimate

        return tuning_estimate(records, int(job_view.job.settings.get("rounds") or 1))
    if kind == "audit":
        from .audit.timing import audit_estimate

        return audit_estimate(workspace, job_view.job, records, now)
    return JobEstimate(None, f"{kind} jobs have none; each stage shows its own time left")


def view(workspace: Workspace, job_id: int, log_lines: int = 30, follower: ProgressFollower | None = None) -> JobView:
    """The job's row, progress and log tail. Pass the same ``follower`` (for the job's progress
    file) to every poll and only what was written since the last one is read."""
    job = refresh(workspace, job_id)
    if follower is None:
        follower = ProgressFollower(workspace.root / job.progress_path) if job.progress_path else None
    if follower is not None:
        follower.update()
    records = follower.records if follower is not None else []
    stages = dict(follower.stages) if follower is not None else {}
    tail = ""
    if job.log_path:
        path = workspace.root / job.log_path
        if path.exists():
            with open(path, "rb") as handle:
                handle.seek(max(0, path.stat().st_size - 64_000))
                text = handle.read().decode("utf-8", "replace")
            # Progress bars redraw with carriage returns; keep each line's last state.
            lines = [line.split("\r")[-1] for line in text.splitlines()]
            tail = "\n".join(line for line in lines if line.strip())
            tail = "\n".join(tail.splitlines()[-log_lines:])
    return JobView(job=job, stages=stages, current=records[-1] if records else None, log_tail=tail, records=records)


def stop_job(workspace: Workspace, job_id: int, *, grace_seconds: float = 10.0) -> JobRecord:
    """End the job's whole process tree (SIGTERM, then SIGKILL after a grace period) and mark it
    stopped. Its finished activation shards stay, so running it again resumes."""
    job = workspace.job(job_id)
    pid = job.pid
    # Only an active job's process is ended: a finished job's pid may belong to anything by now
    # (another program, or the process that ran the job in-line and is still running).
    if job.status in ACTIVE and pid and process_alive(pid):
        try:
            pgid = os.getpgid(pid)
        except ProcessLookupError:
            pgid = None
        if pgid is not None:
            os.killpg(pgid, signal.SIGTERM)
            deadline = time.time() + grace_seconds
            while time.time() < deadline and process_alive(pid):
                time.sleep(0.1)
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.waitpid(pid, 0)  # our own child: collect it, so nothing of the group lingers
        except ChildProcessError:  # started by another process (an earlier app): wait it out
            while process_alive(pid):
                time.sleep(0.05)
    job = workspace.job(job_id)
    if job.status in ACTIVE:
        workspace.update_job(job_id, status="stopped", finished_at=utc_now())
    return workspace.job(job_id)
