"""The Interventions page through AppTest on the real small audit: choose, preview, save, export."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from spectrum_core.audit.review import AuditView
from tests.conftest import ROOT


@pytest.fixture
def page(audited_page):
    return audited_page("interventions")


def metrics(at) -> dict:
    return {m.label: m.value for m in at.metric}


def test_without_decisions_the_page_says_what_to_do(page):
    at, _, _ = page
    at.run()
    assert not at.exception, at.exception
    assert "No concept has been kept" in at.info[0].value


def test_choose_preview_save_and_export(page):
    at, workspace, outcome = page
    view = AuditView.load(workspace.find_artifact(outcome.artifact_key))
    target = view.concepts[view.concepts["direction"] != "none"].sort_values("rank")["concept_id"].iloc[0]
    decision = workspace.decide(outcome.job_id, target, "suppress", reason="shortcut", user="ana")
    at.run()
    assert not at.exception, at.exception
    reweighted = metrics(at)
    assert int(reweighted["Reweighted"]) > 0 and reweighted["Dropped"] == "0"
    # The off-target chart lists the decided concept and ten undecided ones.
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert len(chart["data"][-1]["y"]) == 11

    at.selectbox(key=f"intervention-{decision}").set_value("drop")
    at.run()
    assert workspace.current_decisions(outcome.job_id)[target]["intervention"] == "drop"  # written at once
    dropped = metrics(at)
    assert int(dropped["Dropped"].replace(",", "")) > 0 and dropped["Reweighted"] == "0"

    at.button[0].click()  # Save plan
    at.run()
    assert not at.exception, at.exception
    plans = workspace.plans(outcome.job_id)
    assert len(plans) == 1 and plans[0]["created_by"]
    assert "intervention: drop" in plans[0]["plan_yaml"]
    assert [b.label for b in at.get("download_button")] == [
        "Download plan.yaml",
        "Download shaped.jsonl",
        "Download shaped.parquet",
    ]
    # A control of the plan for the prediction check, saved beside it.
    at.radio(key="control-kind").set_value("label_flip")
    at.button(key="save-control").click()
    at.run()
    assert not at.exception, at.exception
    plans = workspace.plans(outcome.job_id)
    assert len(plans) == 2 and "control: label_flip" in plans[0]["plan_yaml"]  # newest first
    assert any("Saved control plan" in s.value for s in at.success)
    # A fresh session (a reload) finds the choice and the saved plan.
    again = AppTest.from_file(str(ROOT / "app_pages" / "interventions.py"), default_timeout=60)
    again.run()
    assert again.selectbox(key=f"intervention-{decision}").value == "drop"
    assert "This plan is saved" in again.success[0].value


def test_a_sampled_audit_offers_to_score_the_other_pairs(page):
    """The small audit read 60 pairs: the page counts the rest and offers the scoring job, with
    the exact command for the decided concepts."""
    at, workspace, outcome = page
    view = AuditView.load(workspace.find_artifact(outcome.artifact_key))
    target = view.concepts[view.concepts["direction"] != "none"].sort_values("rank")["concept_id"].iloc[0]
    workspace.decide(outcome.job_id, target, "suppress", user="ana")
    at.run()
    assert not at.exception, at.exception
    n_rest = len(workspace.load_dataset(workspace.job(outcome.job_id).dataset_id)) - len(view.pair_ids)
    assert any(f"{n_rest:,} neither" in c.value for c in at.caption)
    assert f"Score the other {n_rest:,} pairs" in [b.label for b in at.button]
    assert any(f"score --audit {outcome.job_id} --concepts {target}" in c.value for c in at.code)
