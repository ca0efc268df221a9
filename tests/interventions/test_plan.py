"""Plans from real decisions on a real (small) audit: compile, YAML round trip, save, export."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from spectrum_core.audit.review import AuditView
from spectrum_core.interventions import InterventionPlan, PlanError, compile_plan, load_plan, save_plan, shape_pairs


@pytest.fixture
def decided(small_audit):
    workspace, outcome = small_audit
    view = AuditView.load(workspace.find_artifact(outcome.artifact_key))
    directed = view.concepts[view.concepts["direction"] != "none"].sort_values("rank")
    # Three concepts that do not overlap: a family loses the members decided on their own, so a
    # family next to its only member would have nothing left to reweight.
    families = directed.get("family", pd.Series(index=directed.index, dtype=object))
    picked: list[str] = []
    for concept_id in directed["concept_id"]:
        group = families.get(concept_id)
        taken = {families.get(c) for c in picked} | set(picked)
        if concept_id not in taken and (not isinstance(group, str) or group not in taken):
            picked.append(concept_id)
        if len(picked) == 3:
            break
    first, second, third = picked
    workspace.decide(outcome.job_id, first, "suppress", reason="a shortcut", user="ana")
    flip = workspace.decide(outcome.job_id, second, "suppress", user="ana")
    workspace.set_intervention(flip, "flip", user="ben")
    workspace.decide(outcome.job_id, third, "amplify", strength=1.5, user="ben")
    workspace.set_label(outcome.job_id, first, "hedges", user="ana")
    return workspace, outcome, view, (first, second, third)


def test_plan_compiles_current_decisions_with_defaults(decided):
    workspace, outcome, view, (first, second, third) = decided
    plan = compile_plan(workspace, outcome.job_id, view)
    assert [c.concept_id for c in plan.concepts] == [first, second, third]
    assert [c.intervention for c in plan.concepts] == ["reweight", "flip", "none"]
    assert plan.concepts[0].label == "hedges" and plan.concepts[0].reason == "a shortcut"
    # The plan acts on what a trainer sees: the raw lean of the audited pairs, even where the
    # audit's length-aware direction is the other way.
    share = view.concepts.loc[first, "share_chosen_more"]
    assert plan.concepts[0].direction == ("chosen" if share > 0.5 else "rejected")
    assert plan.amplified[0].strength == 1.5 and len(plan.suppressed) == 2
    assert plan.layer == view.report.layer and plan.audit_artifact == outcome.artifact_key
    assert "decision.intervention" in [e["action"] for e in workspace.audit_log("decision")]
    again = InterventionPlan.from_yaml(plan.to_yaml({"pairs": 1}))
    assert again == plan and again.plan_hash == plan.plan_hash
    # An undone decision leaves the plan.
    workspace.undo_decision(plan.concepts[2].decision_id, user="ben")
    assert [c.concept_id for c in compile_plan(workspace, outcome.job_id, view).concepts] == [first, second]


def test_foreign_yaml_is_refused():
    with pytest.raises(PlanError, match="not a Spectrum plan"):
        InterventionPlan.from_yaml("concepts: []\n")
    with pytest.raises(PlanError, match="version"):
        InterventionPlan.from_yaml("spectrum_plan: {version: 99}\n")


def test_saved_plan_exports_trl_records_with_weights(decided):
    workspace, outcome, view, (first, second, _) = decided
    dataset = workspace.load_dataset(workspace.job(outcome.job_id).dataset_id)
    plan = compile_plan(workspace, outcome.job_id, view)
    shaped = shape_pairs(plan, pd.Index(dataset.pairs["pair_id"]), view.pair_ids, view.delta_array)
    summary = shaped.summary()
    assert summary["not_audited"] == len(dataset) - len(view.pair_ids) > 0  # the audit used 60 pairs
    assert summary["flipped"] > 0 and summary["reweighted"] > 0

    saved = save_plan(workspace, plan, shaped, dataset, user="ana")
    assert save_plan(workspace, plan, shaped, dataset).plan_id == saved.plan_id  # same plan, same id
    loaded = load_plan(workspace, saved.plan_id)
    assert loaded.plan == plan and loaded.folder == saved.folder

    records = [json.loads(line) for line in saved.jsonl.read_text().splitlines()]
    assert len(records) == len(dataset) - summary["dropped"]
    assert set(records[0]) >= {"prompt", "chosen", "rejected", "weight", "pair_id", "split"}
    assert records[0]["prompt"][0]["role"] == "user" and records[0]["chosen"][0]["role"] == "assistant"
    assert np.mean([r["weight"] for r in records]) == pytest.approx(1.0)
    original = dataset.pairs.set_index("pair_id")
    flipped = next(r for r in records if r["flipped"])
    assert flipped["chosen"][0]["content"] == original.loc[flipped["pair_id"], "rejected"]
    assert flipped["rejected"][0]["content"] == original.loc[flipped["pair_id"], "chosen"]
    frame = pd.read_parquet(saved.parquet)
    assert list(frame["pair_id"]) == [r["pair_id"] for r in records]
    assert frame["weight"].to_numpy() == pytest.approx([r["weight"] for r in records])

    import datasets

    hub_style = datasets.load_dataset("json", data_files=str(saved.jsonl), split="train")
    assert hub_style.num_rows == len(records) and "weight" in hub_style.column_names
    assert "spectrum_plan:" in saved.yaml.read_text() and "data_summary:" in saved.yaml.read_text()
