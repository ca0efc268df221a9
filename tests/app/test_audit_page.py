"""The Audit page through AppTest: the command shown, a real audit job started and watched to
the end, and a finished configuration recognised as reusable."""

from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest

from spectrum_core import jobs
from spectrum_core.audit.report import AuditReport
from spectrum_core.workspace import Workspace
from tests.conftest import LLAMAFACTORY_FILE, ROOT


@pytest.fixture
def page(tmp_path, monkeypatch, bundled_model):
    monkeypatch.setenv("SPECTRUM_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.chdir(ROOT)
    workspace = Workspace(tmp_path / "ws")
    record = workspace.add_dataset(LLAMAFACTORY_FILE)
    at = AppTest.from_file(str(ROOT / "app_pages" / "audit.py"), default_timeout=60)
    yield at, workspace, record
    for job in workspace.jobs("audit"):  # never leave a job running after the test
        jobs.stop_job(workspace, job.id, grace_seconds=2)


def test_start_watch_and_reuse(page):
    at, workspace, record = page
    at.run()
    assert not at.exception, at.exception
    at.number_input[1].set_value(30)  # pairs to audit
    # Under "More settings": no seed check, topics or null runs, the audit's slowest optional steps.
    for name in ("sae_seeds", "topics", "null_runs"):
        at.number_input(key=f"audit-{name}").set_value(0)
    # Every field is named in words, not by its code name.
    assert not [w.label for w in (*at.number_input, *at.selectbox, *at.text_input, *at.checkbox) if "_" in w.label]
    at.button[0].click()  # the form's submit button
    at.run()
    command = at.code[0].value
    assert command.startswith(f"spectrum audit {record['id']} --max-pairs 30 ")
    assert all(f" {flags} " in f"{command} " for flags in ("--sae-seeds 0", "--topics 0", "--null-runs 0", "--dtype"))
    [b for b in at.button if b.label == "Start audit"][0].click()
    at.run()
    job = workspace.jobs("audit")[0]
    assert job.status in ("queued", "running")
    deadline = time.time() + 600
    while time.time() < deadline and workspace.job(job.id).status in ("queued", "running"):
        time.sleep(2)
        at.run()
    assert workspace.job(job.id).status == "succeeded"
    at.run()
    assert not at.exception, at.exception
    assert "already run with this configuration" in at.success[0].value
    assert any(m.label == "Concepts with q < 0.05" for m in at.metric)
    assert len(at.dataframe) == 1
    # The finished audit's sentences: the review queue and what the held-out pairs confirm.
    report = AuditReport.read(workspace.artifact_path(workspace.job(job.id).artifact_key))
    assert any(c.value == report.heads.sentence() for c in at.caption)
    shown = [m.value for m in (*at.success, *at.info)]
    assert report.confirmation.sentence() in shown
