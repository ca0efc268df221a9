"""The Concepts page through AppTest on a real (small) audit: the family queue, family and member
cards, decisions (a family's reaching the plan), undo, labels."""

from __future__ import annotations

import re

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from spectrum_core.audit.review import AuditView
from spectrum_core.interventions import compile_plan, shape_pairs
from tests.conftest import ROOT


@pytest.fixture
def page(audited_page):
    return audited_page("concepts")


def listed(concepts):
    """What the page lists by default: the heads (the review queue), or the families when the audit
    found no head, best ranked first (its filter hides those with no direction)."""
    kind = "head" if (concepts["kind"] == "head").any() else "family"
    rows = concepts[concepts["kind"] == kind]
    return rows[rows["direction"] != "none"].sort_values("rank")


def families(concepts):
    rows = concepts[concepts["kind"] == "family"]
    return rows[rows["direction"] != "none"].sort_values("rank")


def test_card_and_decisions_are_written_at_once(page):
    at, workspace, outcome = page
    at.run()
    assert not at.exception, at.exception
    first = listed(outcome.concepts).iloc[0]["concept_id"]
    assert at.subheader[0].value == first
    assert any(m.label == "Pairs where it differs" for m in at.metric)
    # The Δ histogram, and in the families' view with prompt topics the heatmap and per-topic bars.
    topics = AuditView.load(outcome.folder).topics
    family_view = first.startswith("family:")
    assert len(at.get("plotly_chart")) == (3 if len(topics) > 1 and family_view else 1)
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


def _review(at, view: str):
    next(r for r in at.radio if r.label == "Review").set_value(view)
    at.run()


def test_a_view_switch_keeps_the_concept_selected_not_its_row(page):
    """A row picked in one listing opens that concept; switching the view (whose table lists other
    rows) keeps the card, and its decision buttons, on it: Streamlit keeps a table's selection as a
    row number, which used to open the same row of the new listing, a concept never looked at."""
    at, workspace, outcome = page
    at.run()
    _review(at, "All concepts")
    table = at.dataframe[0]
    picked = table.value["concept_id"].iloc[2]
    at.session_state[table.key] = {"selection": {"rows": [2], "columns": []}}
    at.run()
    assert at.subheader[0].value == picked
    for view in ("Families", "All concepts"):
        _review(at, view)
        assert not at.exception, at.exception
        assert at.subheader[0].value == picked, view
    at.button(key=f"amplify-{picked}").click()
    at.run()
    assert at.button(key=f"amplify-{picked}").label == f"Amplify {picked}"
    assert list(workspace.current_decisions(outcome.job_id)) == [picked]
    assert f"Current decision: amplify on {picked}" in at.info[0].value


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
    first = listed(outcome.concepts)["concept_id"].iloc[0]
    ids = [first, next(c for c in families(outcome.concepts)["concept_id"] if c != first)]
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


def shaded_examples(at) -> list[str]:
    """The card's HTML blocks with at least one token shaded above nothing."""
    blocks = [element.proto.body for element in at.get("html")]
    return [b for b in blocks if any(float(a) > 0 for a in re.findall(r"rgba\(\d+,\d+,\d+,([0-9.]+)\)", b))]


def test_family_card_lists_members_and_a_member_links_back(page):
    """A family card: its members, its strongest answers shaded by its token members (every
    card shows evidence), the silent contrast, the label check beside the label."""
    at, workspace, outcome = page
    ranked = families(outcome.concepts)
    with_tokens = ranked[[any(m.startswith("token:") for m in members) for members in ranked["members"]]]
    family = with_tokens.iloc[0]
    at.session_state["concept"] = family["concept_id"]
    at.run()
    assert at.subheader[0].value == family["concept_id"]
    assert any(f"**{int(family['n_members'])} members**" in m.value for m in at.markdown)
    assert any(m.label == "Effect size" for m in at.metric)
    assert any("weighted as the family's score weights them" in m.value for m in at.markdown)
    assert len(shaded_examples(at)) >= 1
    view = AuditView.load(outcome.folder)
    has_silent = len(view.card(family["concept_id"], role="silent")) > 0
    silent_line = (
        "**Where it is silent**: the pair where" if has_silent else "**Where it is silent**: none in this audit"
    )
    assert any(silent_line in m.value for m in at.markdown)
    assert any(c.value.startswith("Label check") for c in at.caption) or len(at.warning)
    member = family["members"][-1]
    at.session_state["concept"] = member
    at.run()
    assert at.subheader[0].value == member
    assert any(f"Member of {family['concept_id']}" in c.value for c in at.caption)
    at.button(key=f"open-{family['concept_id']}").click()
    at.run()
    assert at.subheader[0].value == family["concept_id"]


def test_a_card_without_a_silent_pair_says_so(page):
    """A concept above zero on both answers wherever it is on has no silent contrast: its card says
    there is none, instead of leaving the section out."""
    at, workspace, outcome = page
    view = AuditView.load(outcome.folder)
    fires = set(view.cards.loc[view.cards["role"] == "fires", "concept_id"])
    silent = set(view.cards.loc[view.cards["role"] == "silent", "concept_id"])
    without = sorted(fires - silent)
    assert without and silent  # the fixture's audit has cards of both kinds (probes are rarely zero)
    at.session_state["concept"] = without[0]
    at.run()
    assert not at.exception, at.exception
    assert any("**Where it is silent**: none in this audit: no audited pair has it" in m.value for m in at.markdown)


def test_a_family_decision_reaches_the_plan_for_every_member(page):
    at, workspace, outcome = page
    family = families(outcome.concepts).iloc[0]
    at.session_state["concept"] = family["concept_id"]
    at.run()
    at.button(key=f"suppress-{family['concept_id']}").click()
    at.run()
    view = AuditView.load(outcome.folder)
    plan = compile_plan(workspace, outcome.job_id, view)
    (choice,) = plan.concepts
    assert choice.concept_id == family["concept_id"] and choice.action == "suppress"
    assert sorted(choice.members) == sorted(family["members"])
    # The plan's Δ for the family is its score's Δ, rebuilt from the members.
    shaped = shape_pairs(plan, view.pair_ids, view.pair_ids, view.delta_array)
    acted = shaped.table["changed_by"].map(lambda reasons: f"reweight:{family['concept_id']}" in reasons)
    assert acted.any() or any(family["concept_id"] in note for note in shaped.notes)
    members = view.concepts[view.concepts["family"] == family["concept_id"]]
    expected = sum(w * view.delta_array(m) for m, w in zip(members["concept_id"], members["family_weight"]))
    np.testing.assert_allclose(view.delta_array(family["concept_id"]), expected)
    # A member decided on its own leaves the family's choice; its own decision wins.
    if len(family["members"]) > 1:
        own = family["members"][0]
        workspace.decide(outcome.job_id, own, "keep", user="test")
        plan = compile_plan(workspace, outcome.job_id, view)
        by_id = {c.concept_id: c for c in plan.concepts}
        assert own not in by_id[family["concept_id"]].members and by_id[own].action == "keep"


def test_the_list_says_what_its_filters_hide(page):
    """ "181 of 196 families" says why 15 are missing: each filter with the rows it hides."""
    at, _, outcome = page
    at.run()
    next(r for r in at.radio if r.label == "Review").set_value("All concepts")
    at.run()
    singles = outcome.concepts[outcome.concepts["kind"].isin(["sae", "probe"])]
    no_direction = int((singles["direction"] == "none").sum())
    caption = next(c.value for c in at.caption if "Select one to open its card" in c.value)
    assert caption.startswith(f"{len(singles) - no_direction:,} of {len(singles):,} concepts")
    if no_direction:
        assert f"{no_direction:,} direction not chosen or rejected" in caption
    else:
        assert "hidden" not in caption


def test_the_card_opened_by_default_stays_open_across_views(page):
    """Nothing picked yet: the card the page opened first stays open when the view changes
    (it used to follow the new list's first row, family:0 becoming token:423)."""
    at, _, _ = page
    at.run()
    first = at.subheader[0].value
    for view in ("All concepts", "Families"):
        _review(at, view)
        assert at.subheader[0].value == first, view
