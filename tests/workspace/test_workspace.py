"""The workspace database: concurrent processes, migrations, append-only log, reused artifacts."""

from __future__ import annotations

import multiprocessing
import sqlite3
import traceback
from pathlib import Path

import pytest

from spectrum_core.workspace import SCHEMA_VERSION, Workspace, WorkspaceVersionError, artifact_key
from spectrum_core.workspace.database import connect
from tests.conftest import HH_FILE, LLAMAFACTORY_FILE

N_PER_PROCESS = 150


def _reporting(target, report: str, *args) -> None:
    """Run ``target`` in a child process; on failure leave its traceback in ``report`` (a child's
    stderr is not in the test's output, so a bare exit code 1 would be all CI shows)."""
    try:
        target(*args)
    except BaseException:
        with open(report, "w") as handle:
            handle.write(traceback.format_exc())
        raise


def _failures(reports: list[Path]) -> str:
    return "\n".join(path.read_text() for path in reports if path.exists())


def _decide_many(root: str, name: str, start_event) -> None:
    start_event.wait()
    workspace = Workspace(root, user=name)  # both processes may migrate a brand-new database
    job = workspace.create_job("audit", {"writer": name})
    for i in range(N_PER_PROCESS):
        workspace.decide(
            job, f"feature-{i}", "suppress" if i % 2 else "keep", reason=f"{name} {i}", stats={"q": i / 1000}
        )


N_SHARED = 200  # decisions per user on the shared audit


def _review(root: str, name: str, audit_job_id: int, first: int, start_event) -> None:
    """An app session: ``name`` decides on ``N_SHARED`` concepts of one audit, reading the
    decisions back now and then as a page does."""
    start_event.wait()
    workspace = Workspace(root, user=name)
    for i in range(first, first + N_SHARED):
        workspace.decide(audit_job_id, f"token:{i}", "suppress" if i % 2 else "keep", reason=f"{name} {i}")
        if i % 25 == 0:
            workspace.current_decisions(audit_job_id)


def _run_job(root: str, start_event) -> None:
    """A CLI audit at the same time: its job marked running, progress written, an artifact
    registered and the job marked done."""
    from spectrum_core.jobs import recording
    from spectrum_core.progress import ProgressLog
    from spectrum_core.workspace.workspace import utc_now

    start_event.wait()
    workspace = Workspace(root, user="cli")
    job = workspace.create_job("audit", {"writer": "cli"})
    with recording(workspace, job) as progress_path:
        log = ProgressLog(progress_path, interval=0.0)
        for done in range(1, N_SHARED + 1):
            log("activations", done, N_SHARED, unit="pairs")
            if done % 20 == 0:
                workspace.update_job(job, error=None)
        key = artifact_key("audit", {"writer": "cli"})
        workspace.artifact_path(key).mkdir(parents=True)
        workspace.register_artifact(key, "audit", {"writer": "cli"})
    workspace.update_job(job, status="succeeded", artifact_key=key, finished_at=utc_now())


def test_two_users_deciding_on_one_audit_while_a_job_runs_lose_nothing(tmp_path):
    """Two app sessions make 200 decisions each on one audit while a CLI audit writes progress
    into the same workspace: every decision is kept, attributed to its user in the decisions and
    the audit log, and the job's progress and result are all there."""
    root = str(tmp_path / "shared")
    audit = Workspace(root, user="setup").create_job("audit", {"writer": "setup"})
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    reports = {name: tmp_path / f"failure-{name}.txt" for name in ("ana", "ben", "cli")}
    processes = [
        context.Process(target=_reporting, args=(_review, str(reports["ana"]), root, "ana", audit, 0, start)),
        context.Process(target=_reporting, args=(_review, str(reports["ben"]), root, "ben", audit, N_SHARED, start)),
        context.Process(target=_reporting, args=(_run_job, str(reports["cli"]), root, start)),
    ]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(timeout=180)
    assert [process.exitcode for process in processes] == [0, 0, 0], _failures(list(reports.values()))
    workspace = Workspace(root)
    decisions = workspace.decisions(audit)
    assert len(decisions) == 2 * N_SHARED and len(workspace.current_decisions(audit)) == 2 * N_SHARED
    for decision in decisions:
        index = int(decision["concept_id"].split(":")[1])
        assert decision["decided_by"] == ("ana" if index < N_SHARED else "ben")
        assert decision["reason"] == f"{decision['decided_by']} {index}"
    log = workspace.audit_log("decision")
    assert sorted(entry["user"] for entry in log) == ["ana"] * N_SHARED + ["ben"] * N_SHARED
    (job,) = [j for j in workspace.jobs("audit") if j.config.get("writer") == "cli"]
    assert job.status == "succeeded" and workspace.find_artifact(job.artifact_key) is not None
    lines = (workspace.root / job.progress_path).read_text().splitlines()
    assert len(lines) == N_SHARED


def _open_when_told(root: str, start_event) -> None:
    start_event.wait()
    Workspace(root, user="opener")


def test_many_processes_opening_a_new_workspace_at_once_all_succeed(tmp_path):
    """Switching a brand-new database to WAL cannot wait on SQLite's busy handler; CI once saw one
    of two processes fail there with "database is locked". Thirty rounds of six openers each."""
    # forkserver: children fork from a clean server that imported this module once (180 openers in
    # seconds, and none inherits the test process's threads)
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    for round_ in range(30):
        root = str(tmp_path / f"new-{round_}")
        start = context.Event()
        reports = [tmp_path / f"failure-{round_}-{i}.txt" for i in range(6)]
        openers = [
            context.Process(target=_reporting, args=(_open_when_told, str(report), root, start)) for report in reports
        ]
        for opener in openers:
            opener.start()
        start.set()
        for opener in openers:
            opener.join(timeout=60)
        assert [opener.exitcode for opener in openers] == [0] * 6, f"round {round_}\n{_failures(reports)}"
        assert Workspace(root).current_schema_version() == SCHEMA_VERSION


def test_two_processes_at_once_lose_nothing(tmp_path):
    root = str(tmp_path / "shared")
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    reports = [tmp_path / f"failure-{name}.txt" for name in ("ana", "ben")]
    workers = [
        context.Process(target=_reporting, args=(_decide_many, str(report), root, name, start))
        for name, report in zip(("ana", "ben"), reports)
    ]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0, _failures(reports)
    workspace = Workspace(root)
    assert workspace.current_schema_version() == SCHEMA_VERSION
    jobs = workspace.jobs("audit")
    assert len(jobs) == 2
    for job in jobs:
        decisions = workspace.decisions(job.id)
        assert len(decisions) == N_PER_PROCESS
        assert {d["decided_by"] for d in decisions} == {job.config["writer"]}
    log = workspace.audit_log("decision")
    assert len(log) == 2 * N_PER_PROCESS
    with connect(workspace.db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migration_from_an_older_schema_keeps_data(tmp_path):
    old = Workspace(tmp_path, migrate_to=1, user="old")
    assert old.current_schema_version() == 1
    record = old.add_dataset(LLAMAFACTORY_FILE)
    with connect(old.db_path) as conn:
        # Written as version-1 code wrote it: the jobs table had no plan_id then.
        job = conn.execute(
            "INSERT INTO jobs (kind, config_json, config_hash, dataset_id, created_at, created_by) "
            "VALUES ('audit', '{\"layer\":15}', 'h', ?, '2026-01-01', 'old')",
            (record["id"],),
        ).lastrowid
        conn.execute(
            "INSERT INTO audit_log (at, user, action, entity_type, entity_id) "
            "VALUES ('2026-01-01', 'old', 'job.create', 'job', ?)",
            (job,),
        )
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "concept_decisions" not in tables

    new = Workspace(tmp_path, user="new")
    assert new.current_schema_version() == SCHEMA_VERSION == 3
    assert new.datasets()[0]["rows_kept"] == 295
    assert new.job(job).config == {"layer": 15} and new.job(job).plan_id is None
    decision = new.decide(job, "feature-7", "amplify", strength=2.0, reason="wanted")
    assert new.current_decisions(job)["feature-7"]["id"] == decision
    assert new.current_decisions(job)["feature-7"]["artifact_key"] is None  # that job published nothing
    assert [e["action"] for e in new.audit_log()] == ["dataset.add", "job.create", "decision.add"]


def test_newer_schema_is_refused(tmp_path):
    Workspace(tmp_path)
    with connect(tmp_path / "spectrum.db") as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(WorkspaceVersionError, match="newer"):
        Workspace(tmp_path)


def test_audit_log_is_append_only(tmp_path):
    workspace = Workspace(tmp_path)
    workspace.log("note", "workspace", payload={"text": "hello"})
    with connect(workspace.db_path) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE audit_log SET user = 'mallory'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM audit_log")
    assert workspace.audit_log()[0]["payload"] == {"text": "hello"}


def test_undo_is_logged_and_the_previous_decision_stays_on_record(tmp_path):
    workspace = Workspace(tmp_path, user="ana")
    job = workspace.create_job("audit", {})
    first = workspace.decide(job, "f1", "suppress", reason="refusal bias", stats={"q": 1e-9})
    workspace.undo_decision(first, reason="misread the card", user="ben")
    assert workspace.current_decisions(job) == {}
    with pytest.raises(ValueError, match="already undone"):
        workspace.undo_decision(first)
    second = workspace.decide(job, "f1", "keep")
    assert workspace.current_decisions(job)["f1"]["id"] == second
    history = workspace.decisions(job)
    assert history[0]["undone_by"] == "ben" and history[0]["stats"] == {"q": 1e-9}
    actions = [(e["action"], e["user"]) for e in workspace.audit_log("decision")]
    assert actions == [("decision.add", "ana"), ("decision.undo", "ben"), ("decision.add", "ana")]
    with pytest.raises(ValueError, match="Unknown action"):
        workspace.decide(job, "f1", "delete")


def test_same_dataset_twice_reuses_the_first_load(tmp_path):
    workspace = Workspace(tmp_path)
    first = workspace.add_dataset(HH_FILE)
    assert not first["reused"] and first["rows_kept"] == 2303
    again = workspace.add_dataset(HH_FILE)
    assert again["reused"] and again["id"] == first["id"]
    other = workspace.add_dataset(HH_FILE, held_out_fraction=0.5)
    assert not other["reused"] and other["artifact_key"] != first["artifact_key"]
    assert len(workspace.datasets()) == 2
    loaded = workspace.load_dataset(first["id"])
    assert len(loaded) == 2303 and loaded.report.rows_read == 2312


def test_artifact_keys_depend_only_on_content():
    a = artifact_key("audit", {"layer": 15, "model": "bundled", "sae": {"k": 32, "width": 2048}})
    b = artifact_key("audit", {"sae": {"width": 2048, "k": 32}, "model": "bundled", "layer": 15})
    c = artifact_key("audit", {"layer": 16, "model": "bundled", "sae": {"k": 32, "width": 2048}})
    assert a == b != c and a.startswith("audit-")


def test_jobs_are_found_by_configuration(tmp_path):
    workspace = Workspace(tmp_path)
    config = {"dataset": 1, "layer": 15}
    job = workspace.create_job("audit", config)
    assert workspace.find_job("audit", config).id == job  # queued counts as reusable
    workspace.update_job(job, status="failed", error="out of memory")
    assert workspace.find_job("audit", config) is None
    assert workspace.job(job).error == "out of memory"
    with pytest.raises(ValueError, match="Unknown job status"):
        workspace.update_job(job, status="exploded")
    with pytest.raises(ValueError, match="Cannot set"):
        workspace.update_job(job, kind="tune")


def test_jobs_are_numbered_per_kind_for_people(tmp_path):
    """Audits, tuning runs and evaluations share one id sequence; people count each kind apart,
    so the first tuning run after an audit is "Tuning run 1", not run #2."""
    workspace = Workspace(tmp_path)
    ids = [workspace.create_job(kind, {"n": n}) for n, kind in enumerate(["audit", "tune", "audit", "eval", "tune"])]
    assert [workspace.job_title(i) for i in ids] == [
        "Audit 1",
        "Tuning run 1",
        "Audit 2",
        "Evaluation 1",
        "Tuning run 2",
    ]


def test_workspace_location_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECTRUM_WORKSPACE", str(tmp_path / "from-env"))
    assert Workspace().root == (tmp_path / "from-env").resolve()
    assert (tmp_path / "from-env" / "spectrum.db").is_file()


def test_labels_and_plans(tmp_path):
    workspace = Workspace(tmp_path)
    job = workspace.create_job("audit", {})
    workspace.set_label(job, "f3", "refuses politely", source="auto")
    workspace.set_label(job, "f3", "deflects the request")
    assert workspace.labels(job) == {"f3": "deflects the request"}
    plan_id = workspace.save_plan(job, "concepts:\n  f3: suppress\n")
    run = workspace.create_job("tune", {"method": "dpo"}, parent_job_id=job, plan_id=plan_id)
    assert (workspace.job(run).plan_id, workspace.job(run).parent_job_id) == (plan_id, job)


def test_stale_staging_is_cleaned_and_live_staging_kept(tmp_path):
    import os
    import subprocess
    import sys
    import time

    workspace = Workspace(tmp_path / "ws")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process that no longer exists
    staging = workspace.artifacts_dir / ".staging"
    dead_old = staging / f"audit-0123456789abcdef-{gone.pid}-1"
    dead_new = staging / f"eval-0123456789abcdef-{gone.pid}-2"
    live = workspace.staging_path("tune-0123456789abcdef")  # this process: alive
    for folder in (dead_old, dead_new):
        folder.mkdir(parents=True)
    hours_ago = time.time() - 7 * 3600
    os.utime(dead_old, (hours_ago, hours_ago))
    os.utime(live, (hours_ago, hours_ago))
    Workspace(tmp_path / "ws")  # opening the workspace cleans
    assert not dead_old.exists()  # dead owner, untouched for hours
    assert dead_new.exists()  # dead owner, but recent: maybe another machine's job
    assert live.exists()  # owner alive
    assert workspace.remove_staging(gone.pid) == 1 and not dead_new.exists()


def test_workspace_info_refreshes_a_dead_job(tmp_path, capsys):
    import subprocess
    import sys

    from spectrum_core.cli import main

    workspace = Workspace(tmp_path / "ws")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    job_id = workspace.create_job("audit", {"x": 1})
    workspace.update_job(job_id, status="running", pid=gone.pid)
    (workspace.artifacts_dir / ".staging" / f"audit-0123456789abcdef-{gone.pid}-1").mkdir(parents=True)
    assert main(["--workspace", str(workspace.root), "workspace", "info"]) == 0
    assert f"job {job_id}: audit failed" in capsys.readouterr().out
    assert workspace.job(job_id).status == "failed"
    assert not any((workspace.artifacts_dir / ".staging").iterdir())  # its half-built artifact is gone
