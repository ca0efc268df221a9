"""The Audit form's time estimate comes from this workspace's last audit, not a constant; so does a
running audit's whole-job time left, corrected by how this run's finished steps compare."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from spectrum_core.audit.report import AuditReport
from spectrum_core.audit.timing import MeasuredRate, audit_estimate, estimate_left, measured_rate
from spectrum_core.progress import ProgressLog, read_progress
from spectrum_core.workspace import Workspace


def test_the_estimate_is_the_last_audits_time_per_pair(small_audit, tmp_path):
    workspace, outcome = small_audit
    rate = measured_rate(workspace)
    report = AuditReport.read(workspace.find_artifact(outcome.artifact_key))
    assert rate is not None and rate.job_id == outcome.job_id and rate.n_pairs == report.n_pairs
    assert rate.minutes == pytest.approx(sum(report.timings.values()) / 60)
    assert rate.estimate_minutes(report.n_pairs) == pytest.approx(rate.minutes)
    assert rate.estimate_minutes(10 * report.n_pairs) == pytest.approx(10 * rate.minutes)
    assert rate.timings == report.timings and list(rate.timings)[0] == "load_model"  # run order, for the job panel
    assert rate.settings == workspace.job(outcome.job_id).settings and rate.settings["max_pairs"] == 60
    assert measured_rate(Workspace(tmp_path / "new")) is None


# An earlier audit of 100 pairs: its seconds per step, in run order (as report.timings holds them).
TIMINGS = {"load_model": 10.0, "activations": 100.0, "sae": 50.0, "features": 20.0, "heads": 10.0, "write": 10.0}
RATE = MeasuredRate(2.0, 100, 200 / 60, 7, TIMINGS, {"modes": ["token"], "max_pairs": 100})


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    """(log, clock, records): a progress log written on a controlled clock, and its records."""
    clock = [1000.0]
    monkeypatch.setattr("spectrum_core.progress.time.time", lambda: clock[0])
    path = tmp_path / "progress.jsonl"
    return ProgressLog(path, interval=0), clock, lambda: read_progress(path)


def run_stage(log, clock, stage: str, seconds: float, upto: int = 4, total: int = 4) -> None:
    log(stage, 0, total)
    for done in range(1, upto + 1):
        clock[0] += seconds / total
        log(stage, done, total)


def test_the_steps_to_come_scaled_by_pairs_and_by_this_runs_finished_steps(recorded):
    log, clock, records = recorded
    # 200 pairs: that audit's steps x 2. Activations took 100 s here against 200 expected: this run
    # goes twice as fast, so the steps to come count half.
    run_stage(log, clock, "activations", 100)
    run_stage(log, clock, "sae", 40, upto=2)  # half way, 20 s in: its own measured 20 s left
    estimate = estimate_left(RATE, 200, records(), now=clock[0])
    assert estimate.seconds == pytest.approx(20 + (20 + 10 + 10) * 2 * 0.5)
    assert "audit job 7" in estimate.basis and "0.50" in estimate.basis


def test_before_any_step_reports_the_whole_audit_scaled_by_pairs(recorded):
    _, clock, records = recorded
    estimate = estimate_left(RATE, 50, records(), now=clock[0])
    assert estimate.seconds == pytest.approx(100.0) and "not yet corrected" in estimate.basis


def test_between_reporting_steps_the_time_since_counts_against_what_is_to_come(recorded):
    log, clock, records = recorded
    run_stage(log, clock, "activations", 200)
    run_stage(log, clock, "sae", 100)  # as that audit, scaled: correction 1
    left = (20 + 10 + 10) * 2
    assert estimate_left(RATE, 200, records(), now=clock[0] + 30).seconds == pytest.approx(left - 30)
    past = estimate_left(RATE, 200, records(), now=clock[0] + left + 1)
    assert past.seconds is None and "past what" in past.basis  # no number that pretends to know


def test_the_workspace_estimate_counts_the_jobs_pairs_and_names_differing_settings(monkeypatch, recorded):
    from spectrum_core.audit import timing

    _, clock, records = recorded

    class Workspace:
        def dataset(self, dataset_id):
            return {"rows_kept": 300}

    job = SimpleNamespace(dataset_id=1, settings={"modes": ["token", "difference"], "max_pairs": 150})
    monkeypatch.setattr(timing, "measured_rate", lambda workspace: RATE)
    estimate = audit_estimate(Workspace(), job, records(), now=clock[0])
    assert estimate.seconds == pytest.approx(200 * 1.5) and "modes" in estimate.basis
    monkeypatch.setattr(timing, "measured_rate", lambda workspace: None)
    estimate = audit_estimate(Workspace(), job, records(), now=clock[0])
    assert estimate.seconds is None and "no audit has finished" in estimate.basis
