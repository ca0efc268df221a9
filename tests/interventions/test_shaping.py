"""Data interventions on hand-made Δ: each one removes exactly the imbalance it promises."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spectrum_core.interventions import (
    ConceptChoice,
    InterventionPlan,
    PlanError,
    association,
    association_table,
    shape_pairs,
)


def make_plan(*choices: ConceptChoice) -> InterventionPlan:
    return InterventionPlan(
        audit_job_id=1,
        audit_artifact="audit-x",
        dataset_id=1,
        dataset_artifact="dataset-x",
        model="bundled",
        layer=15,
        hook_name="blocks.15.hook_resid_post",
        concepts=list(choices),
    )


def suppress(concept_id: str, intervention: str, direction: str = "chosen") -> ConceptChoice:
    return ConceptChoice(
        concept_id=concept_id, label=concept_id, action="suppress", intervention=intervention, direction=direction
    )


@pytest.fixture
def data():
    """200 pairs; concept "a" appears more in chosen in 120 pairs and in rejected in 40 (40 do not
    differ); concept "b" is independent noise; 20 further pairs were not audited."""
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.uniform(0.1, 3.0, 120), -rng.uniform(0.1, 3.0, 40), np.zeros(40)])
    b = rng.normal(size=200) * (rng.random(200) < 0.5)
    audited = pd.Index([f"p{i}" for i in range(200)])
    everything = pd.Index([f"q{i}" for i in range(10)] + list(audited) + [f"q{i}" for i in range(10, 20)])
    deltas = {"a": a, "b": b}
    return everything, audited, deltas.__getitem__


def test_drop_removes_the_strongest_agreeing_pairs_until_balanced(data):
    everything, audited, deltas = data
    shaped = shape_pairs(make_plan(suppress("a", "drop")), everything, audited, deltas)
    table = shaped.table.set_index("pair_id").loc[audited]
    a = deltas("a")
    assert (~table["kept"]).sum() == 80  # 120 agreeing - 40 disagreeing
    dropped = a[~table["kept"].to_numpy()]
    kept_agreeing = a[table["kept"].to_numpy() & (a > 0)]
    assert dropped.min() >= kept_agreeing.max()  # strongest first
    after = association(a, table["weight"].to_numpy())
    assert after["share_chosen_more"] == 0.5 and after["n_differ"] == 80
    summary = shaped.summary()
    assert summary["dropped"] == 80 and summary["pairs"] == 220 and summary["not_audited"] == 20
    assert any("outside the audit" in note for note in summary["notes"])
    outside = shaped.table.set_index("pair_id").loc[everything.difference(audited)]
    assert outside["kept"].all() and (outside["weight"] == 1).all() and not outside["audited"].any()
    assert list(shaped.table["pair_id"]) == list(everything)  # dataset order kept


def test_flip_keeps_every_pair_and_balances(data):
    everything, audited, deltas = data
    shaped = shape_pairs(make_plan(suppress("a", "flip")), everything, audited, deltas)
    table = shaped.table.set_index("pair_id").loc[audited]
    assert table["kept"].all() and table["flipped"].sum() == 40  # half of the excess of 80
    orientation = np.where(table["flipped"], -1.0, 1.0)
    assert association(deltas("a"), None, orientation)["share_chosen_more"] == 0.5


def test_rejected_direction_is_balanced_the_other_way(data):
    everything, audited, deltas = data
    negated = lambda c: -deltas(c)  # noqa: E731  now rejected responses have more of "a"
    shaped = shape_pairs(make_plan(suppress("a", "drop", direction="rejected")), everything, audited, negated)
    assert shaped.summary()["dropped"] == 80
    # Pointing the intervention the wrong way finds no agreeing excess and changes nothing.
    wrong = shape_pairs(make_plan(suppress("a", "drop", direction="chosen")), everything, audited, negated)
    assert wrong.summary()["changed"] == 0


def test_reweight_balances_sign_and_size_and_keeps_total_weight(data):
    everything, audited, deltas = data
    shaped = shape_pairs(make_plan(suppress("a", "reweight")), everything, audited, deltas)
    table = shaped.table.set_index("pair_id").loc[audited]
    weight = table["weight"].to_numpy()
    before, after = association(deltas("a")), association(deltas("a"), weight)
    assert before["share_chosen_more"] == pytest.approx(0.75)
    assert after["share_chosen_more"] == pytest.approx(0.5, abs=1e-3)
    assert abs(after["effect"]) < 0.1 < abs(before["effect"])
    assert table["kept"].all() and shaped.table["weight"].mean() == pytest.approx(1.0)
    assert (
        weight[deltas("a") == 0] == weight[deltas("a") == 0][0]
    ).all()  # non-differing pairs untouched relative to each other


def test_raking_balances_two_concepts_at_once():
    rng = np.random.default_rng(1)
    n = 2000
    a = rng.normal(0.4, 1, n) * (rng.random(n) < 0.7)
    b = (0.5 * a + rng.normal(0.2, 1, n)) * (rng.random(n) < 0.7)  # correlated with a
    ids = pd.Index([f"p{i}" for i in range(n)])
    deltas = {"a": a, "b": b}.__getitem__
    plan = make_plan(suppress("a", "reweight"), suppress("b", "reweight"))
    shaped = shape_pairs(plan, ids, ids, deltas)
    table = association_table(shaped, ids, deltas, ["a", "b"])
    assert (table["share_before"] > 0.6).all()
    assert np.allclose(table["share_after"], 0.5, atol=0.01)


def test_weights_that_cannot_balance_say_so():
    ids = pd.Index(["p0", "p1", "p2", "p3"])
    deltas = {"a": np.array([1.0, 2.0, 0.0, 0.0])}.__getitem__
    shaped = shape_pairs(make_plan(suppress("a", "reweight")), ids, ids, deltas)
    assert list(shaped.table["weight"]) == [0.0, 0.0, 2.0, 2.0]
    assert "cannot balance" in shaped.summary()["notes"][0]


def test_reweighting_a_concept_no_kept_pair_differs_in_changes_nothing_and_says_so():
    """Once a first decision drops every pair where the second concept differs (or it never
    differs), reweighting it has nothing to act on: no error, weights unchanged, a note."""
    ids = pd.Index(["p0", "p1", "p2", "p3"])
    deltas = {"a": np.array([1.0, 2.0, -1.0, 0.0]), "b": np.array([0.0, 0.0, 0.0, 0.0])}.__getitem__
    shaped = shape_pairs(make_plan(suppress("b", "reweight")), ids, ids, deltas)
    assert list(shaped.table["weight"]) == [1.0, 1.0, 1.0, 1.0]
    assert shaped.summary()["notes"] == ["b: no kept pair differs in it, so there is nothing to reweight"]
    both = shape_pairs(make_plan(suppress("a", "drop"), suppress("b", "reweight")), ids, ids, deltas)
    assert "nothing to reweight" in " ".join(both.summary()["notes"])


def test_upweight_multiplies_agreeing_pairs(data):
    everything, audited, deltas = data
    amplify = ConceptChoice(
        concept_id="a", label="a", action="amplify", intervention="upweight", direction="chosen", strength=2.0
    )
    shaped = shape_pairs(make_plan(amplify), everything, audited, deltas)
    table = shaped.table.set_index("pair_id").loc[audited]
    a = deltas("a")
    ratio = table["weight"].to_numpy()[a > 0][0] / table["weight"].to_numpy()[a < 0][0]
    assert ratio == pytest.approx(3.0)


def test_reward_only_decisions_leave_the_data_alone(data):
    everything, audited, deltas = data
    plan = make_plan(
        suppress("a", "none"),
        ConceptChoice(concept_id="b", label="b", action="keep", intervention="none", direction="chosen"),
    )
    assert shape_pairs(plan, everything, audited, deltas).summary()["changed"] == 0


def test_invalid_choices_and_foreign_pairs_are_refused(data):
    everything, audited, deltas = data
    with pytest.raises(PlanError, match="cannot use intervention 'flip'"):
        ConceptChoice(concept_id="a", label="a", action="amplify", intervention="flip", direction="chosen")
    with pytest.raises(PlanError, match="not in the dataset"):
        shape_pairs(make_plan(suppress("a", "drop")), everything[:50], audited, deltas)


def test_association_by_hand():
    delta = np.array([1.0, -1.0, 2.0, 0.0])
    weight = np.array([1.0, 3.0, 1.0, 5.0])
    result = association(delta, weight)
    assert result["share_chosen_more"] == pytest.approx(2 / 5)
    mean = (1 - 3 + 2 + 0) / 10
    sd = np.sqrt((1 * (1 - mean) ** 2 + 3 * (-1 - mean) ** 2 + 1 * (2 - mean) ** 2 + 5 * mean**2) / 10)
    assert result["effect"] == pytest.approx(mean / sd)
    flipped = association(delta, weight, np.array([1.0, -1.0, 1.0, 1.0]))
    assert flipped["share_chosen_more"] == 1.0


def test_a_family_acts_on_the_weighted_sum_of_its_members(data):
    """A family's choice shapes the data exactly as a concept whose Δ is its members' weighted sum
    would; a family whose every member was decided on its own has nothing left to act on."""
    everything, audited, deltas = data
    family = ConceptChoice(
        concept_id="family:0",
        label="f",
        action="suppress",
        intervention="drop",
        direction="chosen",
        members={"a": 2.0, "b": 0.5},
    )
    combined = {"sum": 2.0 * deltas("a") + 0.5 * deltas("b")}
    by_family = shape_pairs(make_plan(family), everything, audited, deltas).table
    by_sum = shape_pairs(make_plan(suppress("sum", "drop")), everything, audited, combined.__getitem__).table
    columns = ["pair_id", "kept", "flipped", "weight"]
    pd.testing.assert_frame_equal(by_family[columns], by_sum[columns])
    assert (~by_family["kept"]).any()
    emptied = ConceptChoice(
        concept_id="family:0", label="f", action="suppress", intervention="drop", direction="chosen", members={}
    )
    assert shape_pairs(make_plan(emptied), everything, audited, deltas).table["kept"].all()
    assert emptied.parts() == [] and suppress("a", "drop").parts() == [("a", 1.0)]


def test_control_plans_swap_every_pair_or_a_seeded_half_on_top_of_the_decisions(data):
    everything, audited, deltas = data
    plan = make_plan(suppress("a", "flip"))
    decided = shape_pairs(plan, everything, audited, deltas).table
    flipped = shape_pairs(plan.as_control("label_flip"), everything, audited, deltas)
    # every pair's orientation reversed, the decisions' flips included; weights untouched
    np.testing.assert_array_equal(flipped.table["flipped"], ~decided["flipped"])
    np.testing.assert_array_equal(flipped.table["weight"], decided["weight"])
    assert "control plan (label_flip)" in flipped.notes[-1]
    halves = [shape_pairs(plan.as_control("shuffle", seed), everything, audited, deltas).table for seed in (0, 0, 1)]
    swapped = [h["flipped"].to_numpy() ^ decided["flipped"].to_numpy() for h in halves]
    np.testing.assert_array_equal(swapped[0], swapped[1])  # seeded
    assert not np.array_equal(swapped[0], swapped[2])
    assert 0.35 < swapped[0].mean() < 0.65 and (halves[0].loc[swapped[0], "changed_by"].str.contains("control")).all()
    # a control is part of the plan: another hash, read back from its YAML; a plain plan keeps its hash
    control = plan.as_control("shuffle", 1)
    assert control.plan_hash != plan.plan_hash and "control" not in plan.to_dict()
    assert InterventionPlan.from_yaml(control.to_yaml()).plan_hash == control.plan_hash
    with pytest.raises(PlanError, match="unknown control"):
        plan.as_control("reverse")
