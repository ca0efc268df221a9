"""The typed audit report: what the audit writes reads back field for field, old reports read with
their missing parts empty, and a report with a key this version does not know is refused by name."""

from __future__ import annotations

import json
import math

import pytest

from spectrum_core import constants as names
from spectrum_core.audit.report import AuditReport, FamilySummary, JointModelSummary, ReportError
from spectrum_core.audit.stats.power import PowerSummary

from .test_golden import GOLDEN


def golden_dict() -> dict:
    """The stored golden report, with the fields the golden test leaves out put back."""
    data = json.loads((GOLDEN / names.REPORT_FILE).read_text())
    return {
        **data,
        "model_path": "/models/tiny",
        "timings": {"activations": 1.5, "write": 0.1},
        "peak_memory_gb": {"activations": 1.2, "write": 0.9},
    }


def test_a_written_report_reads_back_field_for_field(tmp_path):
    data = golden_dict()
    report = AuditReport.from_dict(data)
    # the power of the discovery pairs' tests
    assert isinstance(report.power, PowerSummary) and report.power.n_pairs == data["confirmation"]["n_discovery"]
    assert isinstance(report.families, FamilySummary) and isinstance(report.families.joint_model, JointModelSummary)
    assert report.joint_models["token"].auc_held_out == data["joint_models"]["token"]["auc_held_out"]
    # Whole responses: cut at the golden audit's 64 tokens, 30 of the 40 pairs looked equally long.
    assert report.baselines is not None and report.baselines.length.pairs_with_length_difference == 40
    assert report.model == "bundled" and report.total_significant == sum(data["n_significant"].values())
    report.write(tmp_path)
    assert json.loads((tmp_path / names.REPORT_FILE).read_text()) == json.loads(json.dumps(data))
    assert AuditReport.read(tmp_path) == report


def test_an_older_report_reads_with_its_missing_parts_empty():
    data = golden_dict()
    for later in ("families", "baselines", "topics", "power", "verdict"):
        data.pop(later)
    report = AuditReport.from_dict(data)
    assert report.families is None and report.baselines is None and report.power is None
    assert report.topics == [] and report.verdict == ""


def test_an_unknown_key_is_refused_naming_the_file(tmp_path):
    (tmp_path / names.REPORT_FILE).write_text(json.dumps({**golden_dict(), "n_pairz": 3}))
    with pytest.raises(ReportError, match=r"report\.json.*n_pairz"):
        AuditReport.read(tmp_path)


def test_the_family_sentence_says_what_the_families_hold():
    families = AuditReport.from_dict(golden_dict()).families
    assert families is not None
    text = families.sentence()
    assert text.startswith(f"{families.n_families:,} families from {families.n_clustered:,} clustered concepts")
    assert "significant concepts" not in text  # none is significant in the golden audit
    families.n_significant_concepts, families.families_holding_90pct_of_significant = 12, 3
    assert "3 families hold 90% of the 12 significant concepts." in families.sentence()
    families.auc_gain_retained_by_top_families = math.nan
    assert "AUC gain" not in families.sentence()


def test_a_joint_model_that_could_not_be_fitted_keeps_nan():
    summary = JointModelSummary.from_fit({"auc_held_out": math.nan, "n_selected": 0, "coef": [0.0]})
    assert math.isnan(summary.auc_held_out) and summary.null_intercept is None
