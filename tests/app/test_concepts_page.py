"""The Concepts page through AppTest on a real (small) audit: card, decisions, undo, labels."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from spectrum_core.audit.pipeline import AuditConfig
from spectrum_core.audit.runner import run_audit_in_workspace
from spectrum_core.workspace import Workspace
from tests.conftest import LLAMAFACTORY_FILE, ROOT

SMALL = AuditConfig(max_pairs=60, max_prompt_tokens=96, max_response_tokens=96, sae_training_tokens=60_000)


@pytest.fixture(scope="module")
def audited(tmp_path_factory, bundled_model):
    root = tmp_path_factory.mktemp("ws")
    workspace = Workspace(root)
    outcome = run_audit_in_workspace(workspace, LLAMAFACTORY_FILE, SMALL, log=lambda m: None)
    return root, workspace, outcome


@pytest.fixture
def page(audited, monkeypatch):
    root, workspace, outcome = audited
    monkeypatch.setenv("SPECTRUM_WORKSPACE", str(root))
    monkeypatch.chdir(ROOT)
    return AppTest.from_file(str(ROOT / "pages" / "concepts.py"), default_timeout=60), workspace, outcome


def test_card_and_decisions_are_written_at_once(page):
    at, workspace, outcome = page
    at.run()
    assert not at.exception, at.exception
    first = outcome.concepts.iloc[0]["concept_id"]
    assert at.subheader[0].value == first
    assert any(m.label == "Pairs where it differs" for m in at.metric)
    assert len(at.get("plotly_chart")) == 1
    at.text_input(key=f"reason-{first}").input("prefers refusals for the wrong reason")
    at.button(key=f"suppress-{first}").click()
    at.run()
    decision = workspace.current_decisions(outcome.job_id)[first]
    assert decision["action"] == "suppress" and decision["reason"] == "prefers refusals for the wrong reason"
    assert decision["stats"]["q_value"] == pytest.approx(outcome.concepts.iloc[0]["q_value"])
    assert "Current decision: suppress" in at.info[0].value
    # Undo from the audit log; the undo is recorded too.
    at.button(key=f"undo-{decision['id']}").click()
    at.run()
    assert first not in workspace.current_decisions(outcome.job_id)
    assert [e["action"] for e in workspace.audit_log("decision")][-2:] == ["decision.add", "decision.undo"]


def test_label_edit_persists(page):
    at, workspace, outcome = page
    at.run()
    first = outcome.concepts.iloc[0]["concept_id"]
    at.text_input(key=f"label-{first}").input("apologises before answering")
    at.run()
    assert workspace.labels(outcome.job_id)[first] == "apologises before answering"
    again = AppTest.from_file(str(ROOT / "pages" / "concepts.py"), default_timeout=60)
    again.run()
    assert again.text_input(key=f"label-{first}").value == "apologises before answering"
