"""The Tuning page through AppTest: plan choice, configuration and command, a run started as a
job and watched to the end, the run history."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from spectrum_core import jobs
from spectrum_core.audit.review import AuditView
from spectrum_core.interventions import compile_plan, save_plan, shape_pairs


@pytest.fixture
def page(audited_page):
    at, workspace, outcome = audited_page("tuning")
    yield at, workspace, outcome
    for job in workspace.jobs("tune"):
        jobs.stop_job(workspace, job.id, grace_seconds=2)


def test_without_a_saved_plan_the_page_says_so(page):
    at, _, _ = page
    at.run()
    assert not at.exception, at.exception
    assert "No saved plan" in at.info[0].value


def test_configure_start_and_watch_a_run(page):
    at, workspace, outcome = page
    view = AuditView.load(workspace.find_artifact(outcome.artifact_key))
    workspace.decide(outcome.job_id, view.concepts.sort_values("rank")["concept_id"].iloc[0], "suppress")
    plan = compile_plan(workspace, outcome.job_id, view)
    dataset = workspace.load_dataset(workspace.job(outcome.job_id).dataset_id)
    saved = save_plan(
        workspace, plan, shape_pairs(plan, pd.Index(dataset.pairs["pair_id"]), view.pair_ids, view.delta_array), dataset
    )
    at.run()
    assert not at.exception, at.exception
    # CAFT's settings do nothing while CAFT is off: hidden until it is switched on.
    assert "cfg-dpo-cpu-demo-caft_mode" not in [w.key for w in at.selectbox]
    at.checkbox(key="cfg-dpo-cpu-demo-caft").check()
    at.button[0].click()
    at.run()
    assert "cfg-dpo-cpu-demo-caft_mode" in [w.key for w in at.selectbox]
    at.checkbox(key="cfg-dpo-cpu-demo-caft").uncheck()
    at.number_input(key="cfg-dpo-cpu-demo-max_steps").set_value(2)
    at.number_input(key="cfg-dpo-cpu-demo-max_length").set_value(512)
    at.button[0].click()  # the form's submit
    at.run()
    assert any("Checked: all" in s.value for s in at.success)
    command = at.code[0].value
    assert command == (
        f"spectrum tune --plan {saved.plan_id} --method dpo --preset cpu-demo --max-steps 2 --max-length 512"
    )
    next(b for b in at.button if b.label == "Start").click()
    at.run()
    job = workspace.jobs("tune")[0]
    assert job.plan_id == saved.plan_id and job.parent_job_id == outcome.job_id
    deadline = time.time() + 600
    while jobs.refresh(workspace, job.id).status in jobs.ACTIVE and time.time() < deadline:
        time.sleep(1)
    assert workspace.job(job.id).status == "succeeded", jobs.view(workspace, job.id).log_tail
    at.run()
    assert not at.exception, at.exception
    assert any("Adapter and configuration" in s.value for s in at.success)
    assert at.dataframe[0].value["status"].tolist() == ["succeeded"]
    assert len(at.get("plotly_chart")) == 1  # the loss and margin curves
    # Beside each method, the latest method benchmark's line (bench/methods/results/, committed).
    assert not any("Latest benchmark" in c.value for c in at.caption)  # weighted DPO has none
    at.radio[0].set_value("reset").run()
    assert not at.exception, at.exception
    # (the headline is markdown-escaped in the caption)
    assert any(c.value.startswith("Latest benchmark:") and "constraints satisfied" in c.value for c in at.caption)


def watch_script(root: str, job_id: int) -> None:
    from app_pages.job_panel import watch
    from spectrum_core.workspace import Workspace

    watch(Workspace(root), job_id)


def test_the_panel_shows_the_whole_runs_time_left_and_what_it_rests_on(tmp_path, monkeypatch):
    """A running tuning job's panel: the prepare stage's step by name, the training stage's own
    time left, beside it the whole run's, and a caption naming what that figure comes from."""
    import os

    from streamlit.testing.v1 import AppTest

    from spectrum_core.progress import ProgressLog, StepsReport
    from spectrum_core.workspace import Workspace
    from tests.conftest import ROOT

    monkeypatch.chdir(ROOT)
    workspace = Workspace(tmp_path / "ws")
    job_id = workspace.create_job("tune", {"config": {"method": "dpo", "max_steps": 30}})
    progress = jobs.job_dir(workspace, job_id) / "progress.jsonl"
    workspace.update_job(
        job_id, status="running", pid=os.getpid(), progress_path=str(progress.relative_to(workspace.root))
    )
    clock = [1000.0]
    monkeypatch.setattr("spectrum_core.progress.time.time", lambda: clock[0])
    log = ProgressLog(progress, interval=0)
    with StepsReport(log, "prepare", ["loading the model", "tokenizing pairs"], heartbeat=0) as steps:
        steps.begin("loading the model")
        steps.count(120, 300, "pairs", step="tokenizing pairs")
    at = AppTest.from_function(watch_script, args=(str(workspace.root), job_id), default_timeout=30).run()
    assert not at.exception, at.exception
    texts = [element.proto.text for element in at.get("progress")]
    assert texts == ["prepare: tokenizing pairs 120 / 300 pairs · 0 s so far (step 2 of 2)"]
    assert at.caption[0].value.startswith("No whole-job estimate: this run's first training steps")
    steps.finish()
    log("train", 0, 30, unit="steps", started_at_step=0)
    for step in range(1, 11):
        clock[0] += 6.0
        log("train", step, 30, unit="steps")
    at = AppTest.from_function(watch_script, args=(str(workspace.root), job_id), default_timeout=30).run()
    texts = [element.proto.text for element in at.get("progress")]
    assert texts[-1] == "train: 10 / 30 steps · about 2 min left in this stage · about 2 min left for the whole job"
    assert at.caption[0].value == (
        "Whole job's time left: based on 6.0 s per step over this run's last 10 steps here × 20 steps left."
    )
