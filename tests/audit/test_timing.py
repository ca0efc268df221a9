"""The Audit form's time estimate comes from this workspace's last audit, not a constant."""

from __future__ import annotations

import pytest

from spectrum_core.audit.report import AuditReport
from spectrum_core.audit.timing import measured_rate
from spectrum_core.workspace import Workspace


def test_the_estimate_is_the_last_audits_time_per_pair(small_audit, tmp_path):
    workspace, outcome = small_audit
    rate = measured_rate(workspace)
    report = AuditReport.read(workspace.find_artifact(outcome.artifact_key))
    assert rate is not None and rate.job_id == outcome.job_id and rate.n_pairs == report.n_pairs
    assert rate.minutes == pytest.approx(sum(report.timings.values()) / 60)
    assert rate.estimate_minutes(report.n_pairs) == pytest.approx(rate.minutes)
    assert rate.estimate_minutes(10 * report.n_pairs) == pytest.approx(10 * rate.minutes)
    assert measured_rate(Workspace(tmp_path / "new")) is None
