"""The Concepts page through AppTest on a real (small) audit: card, decisions, undo, labels."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT


@pytest.fixture
def page(audited_page):
    return audited_page("concepts")


def listed(concepts):
    """The concepts the page lists by default, best ranked first (its filter hides those with no
    direction)."""
    return concepts[concepts["direction"] != "none"].sort_values("rank")


def test_card_and_decisions_are_written_at_once(page):
    at, workspace, outcome = page
    at.run()
    assert not at.exception, at.exception
    first = listed(outcome.concepts).iloc[0]["concept_id"]
    assert at.subheader[0].value == first
    assert any(m.label == "Pairs where it differs" for m in at.metric)
    assert len(at.get("plotly_chart")) == 1
    at.text_input(key=f"reason-{first}").input("prefers refusals for the wrong reason")
    at.button(key=f"suppress-{first}").click()
    at.run()
    decision = workspace.current_decisions(outcome.job_id)[first]
    assert decision["action"] == "suppress" and decision["reason"] == "prefers refusals for the wrong reason"
    assert decision["stats"]["q_value"] == pytest.approx(listed(outcome.concepts).iloc[0]["q_value"])
    assert "Current decision: suppress" in at.info[0].value
    # Undo from the audit log; the undo is recorded too.
    at.button(key=f"undo-{decision['id']}").click()
    at.run()
    assert first not in workspace.current_decisions(outcome.job_id)
    assert [e["action"] for e in workspace.audit_log("decision")][-2:] == ["decision.add", "decision.undo"]


def test_label_edit_persists(page):
    at, workspace, outcome = page
    at.run()
    first = listed(outcome.concepts).iloc[0]["concept_id"]
    at.text_input(key=f"label-{first}").input("apologises before answering")
    at.run()
    assert workspace.labels(outcome.job_id)[first] == "apologises before answering"
    again = AppTest.from_file(str(ROOT / "app_pages" / "concepts.py"), default_timeout=60)
    again.run()
    assert again.text_input(key=f"label-{first}").value == "apologises before answering"


def test_two_sessions_deciding_at_once_lose_nothing(page):
    """Two browser sessions, each drawn before the other decided, decide on different concepts
    and on the same one; every decision is kept and each session then shows the other's."""
    _, workspace, outcome = page
    ids = list(listed(outcome.concepts)["concept_id"][:2])
    sessions = {}
    for user in ("ana", "ben"):
        at = AppTest.from_file(str(ROOT / "app_pages" / "concepts.py"), default_timeout=60)
        at.session_state["user"] = user
        at.run()
        sessions[user] = at
    for user, action in (("ana", "suppress"), ("ben", "keep")):
        at = sessions[user]
        at.button(key=f"{action}-{ids[0]}").click()  # both on the first concept, from stale pages
        at.run()
    sessions["ben"].session_state["concept"] = ids[1]
    sessions["ben"].run()
    sessions["ben"].button(key=f"amplify-{ids[1]}").click()
    sessions["ben"].run()
    history = workspace.decisions(outcome.job_id)
    assert [(d["decided_by"], d["action"], d["concept_id"]) for d in history] == [
        ("ana", "suppress", ids[0]),
        ("ben", "keep", ids[0]),
        ("ben", "amplify", ids[1]),
    ]
    ana = sessions["ana"]
    ana.run()
    assert "Current decision: keep" in ana.info[0].value and "by ben" in ana.info[0].value
