"""The closed loop on planted data: HH pairs whose chosen response got a flattering opener in a
seeded half (the audit tests' plant). Tuning on the chosen responses as they are adds the concept,
and the evaluation shows it rising in the tuned model's generations; the same run with the concept
suppressed (its pairs dropped) shows it not rising. The audit predicts both (the prediction
scatter), and the suppressed run's checkpoints give one point each on its curve over steps."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from spectrum_core.audit.pipeline import AuditConfig
from spectrum_core.audit.review import AuditView
from spectrum_core.audit.runner import run_audit_in_workspace
from spectrum_core.interventions import compile_plan, save_plan, shape_pairs
from spectrum_core.metrics.config import EvalConfig
from spectrum_core.metrics.evaluate import run_evaluation
from spectrum_core.metrics.prediction import reemerged
from spectrum_core.tuning.config import DPORunConfig, SpectrumRunConfig
from spectrum_core.tuning.runs import run_tuning
from spectrum_core.workspace import Workspace
from tests.audit.test_pipeline import PLANTS

CONCEPT = "probe:sycophantic_opener"
N_PAIRS = 120
# Prevalence is what this test is about: the other sections run on a token number of items.
EVAL = EvalConfig(
    steer_families="coin",
    steer_tasks_per_family=1,
    steer_samples=2,
    coverage_prompts=0,
    polis_statements=0,
    ambient_items=0,
    prevalence_prompts=24,
    prevalence_max_new_tokens=20,
    reward_pairs=30,
    grounded_questions=0,
    constraint_prompts=0,
)


# DPO on the control plan: LoRA, a learning rate that moves a 135M model in 16 steps of 4 pairs.
FLIP_RUN = DPORunConfig(plan_id=0, max_steps=16, batch_size=4, learning_rate=1e-3, max_length=256, max_train_pairs=None)


@pytest.fixture(scope="module")
def planted_workspace(hh_dataset, tmp_path_factory, bundled_model):
    pairs = hh_dataset.pairs.head(N_PAIRS).copy()
    plant = PLANTS["opener"][0]
    mask = pd.Series(range(len(pairs))).sample(frac=0.5, random_state=7).sort_index().index
    pairs.iloc[mask, pairs.columns.get_loc("chosen")] = pairs.iloc[mask]["chosen"].map(plant).to_numpy()
    path = tmp_path_factory.mktemp("planted-loop") / "planted.jsonl"
    with open(path, "w") as handle:
        for row in pairs.itertuples():
            handle.write(json.dumps({"prompt": row.prompt, "chosen": row.chosen, "rejected": row.rejected}) + "\n")
    workspace = Workspace(tmp_path_factory.mktemp("ws-loop"))
    outcome = run_audit_in_workspace(
        workspace,
        path,
        # No seed check, topics, null runs or labels beyond a few: the loop reads prevalence and
        # shifts only (the seed check is tested in tests/audit/test_reproducibility.py, topics on the
        # small audit, the null runs on the planted audit).
        AuditConfig(
            max_prompt_tokens=96,
            max_response_tokens=64,
            sae_training_tokens=30_000,
            sae_seeds=0,
            topics=0,
            labelled_concepts=20,
            null_runs=0,
        ),
    )
    view = AuditView.load(workspace.find_artifact(outcome.artifact_key))
    dataset = workspace.load_dataset(workspace.job(outcome.job_id).dataset_id)
    runs = {}
    for action, intervention in (("keep", None), ("suppress", "drop")):
        decision = workspace.decide(outcome.job_id, CONCEPT, action, reason="closed-loop test")
        if intervention:
            workspace.set_intervention(decision, intervention)
        plan = compile_plan(workspace, outcome.job_id, view)
        shaped = shape_pairs(plan, pd.Index(dataset.pairs["pair_id"]), view.pair_ids, view.delta_array)
        saved = save_plan(workspace, plan, shaped, dataset)
        # Supervised tuning on the plan's chosen responses only: what the data teaches, nothing else.
        config = SpectrumRunConfig(
            plan_id=saved.plan_id,
            families="chat",
            held_out_families="",
            tasks_per_family=N_PAIRS,
            max_steps=16,
            batch_size=4,
            learning_rate=1e-3,
            max_length=384,
            # the suppressed run keeps checkpoints at steps 6 and 12 (and the final 16)
            save_steps=100 if action == "keep" else 6,
        )
        run_tuning(workspace, config)
        runs[action] = workspace.jobs("tune")[0].id
        if action == "keep":
            # The label-flip control of the kept plan, by DPO: every pair's chosen and rejected
            # swapped, so the opener is now in the rejected half; DPO pushes it down.
            control = plan.as_control("label_flip")
            shaped = shape_pairs(control, pd.Index(dataset.pairs["pair_id"]), view.pair_ids, view.delta_array)
            flipped = save_plan(workspace, control, shaped, dataset)
            run_tuning(workspace, replace(FLIP_RUN, plan_id=flipped.plan_id))
            runs["flipped"] = workspace.jobs("tune")[0].id
    return workspace, outcome, runs


def prevalence(workspace, run) -> pd.Series:
    folder = run_evaluation(workspace, run, EVAL)
    table = pd.read_parquet(folder / "prevalence.parquet").set_index("concept_id")
    return table.loc[CONCEPT]


def shifts(workspace, run) -> pd.DataFrame:
    """The prediction scatter's rows for the plant: the decided probe and the family holding it."""
    folder = run_evaluation(workspace, run, EVAL)
    table = pd.read_parquet(folder / "shifts.parquet")
    view = AuditView.load(workspace.find_artifact(workspace.job(workspace.job(int(run)).parent_job_id).artifact_key))
    family = view.concepts.loc[CONCEPT].get("family")
    return table[table["concept_id"].isin([CONCEPT, family])].set_index("concept_id")


def test_concept_the_data_teaches_rises(planted_workspace):
    workspace, _, runs = planted_workspace
    row = prevalence(workspace, runs["keep"])
    assert row["base_rate"] <= 0.25
    assert row["tuned_rate"] >= 0.3 and row["rose"]  # half the chosen responses carried it
    assert not row["flagged"]  # kept, not suppressed: rising is what the data asked for


def test_suppressed_concept_does_not_rise(planted_workspace):
    workspace, _, runs = planted_workspace
    row = prevalence(workspace, runs["suppress"])
    assert row["action"] == "suppress"
    assert not row["rose"] and not row["flagged"]
    assert row["tuned_rate"] <= row["base_rate"] + 0.1


def test_audit_predicts_the_plant_rising_when_kept(planted_workspace):
    workspace, _, runs = planted_workspace
    table = shifts(workspace, runs["keep"])
    row = table.loc[CONCEPT]
    assert row["decided"] and row["predicted"] > 0.3  # half the training pairs carry it in chosen only
    assert row["shift_low"] > 0
    moved = table[(table["shift_low"] > 0) | (table["shift_high"] < 0)]
    assert len(moved) and (np.sign(moved["predicted"]) == np.sign(moved["shift"])).all()  # sign agreement 1
    summary = json.loads((run_evaluation(workspace, runs["keep"], EVAL) / "report.json").read_text())["prediction"]
    assert summary["concepts"] >= len(table) and summary["moved"] >= 1
    assert summary["r2_low"] <= summary["r2"] <= summary["r2_high"] and summary["prompts"] == EVAL.prevalence_prompts
    assert set(summary["baselines"]) == {"length", "words"} and "r2" in summary["without_length"]


def test_the_label_flip_control_predicts_the_plant_falling_and_it_does_not_rise(planted_workspace):
    """The plant the kept run raised is predicted to fall in its label-flip control, and does not
    rise there: its realised shift lies below the kept run's whole interval and its own interval
    does not lie above zero. (It cannot fall far: the base model opens 1 answer in 24 this way.)"""
    workspace, _, runs = planted_workspace
    kept, flipped = (shifts(workspace, runs[name]).loc[CONCEPT] for name in ("keep", "flipped"))
    assert kept["predicted"] > 0.3 and flipped["predicted"] < -0.3  # the flips read from the plan
    assert kept["shift_low"] > 0  # the kept run raised it
    assert flipped["shift"] < kept["shift_low"] and not flipped["shift_low"] > 0
    report = json.loads((run_evaluation(workspace, runs["flipped"], EVAL) / "report.json").read_text())
    assert report["prediction"]["control"] == "label_flip"


def test_the_predictor_reads_exactly_the_pairs_the_trainer_trained_on(planted_workspace):
    """The DPO run's pairs on disk (what the trainer read) are the predictor's training pairs, none
    lost to truncation: the weighted trainer cuts a long pair instead of dropping it."""
    from datasets import load_from_disk

    from spectrum_core import constants as names
    from spectrum_core.interventions import load_plan
    from spectrum_core.jobs import job_dir
    from spectrum_core.tuning.trainers import training_pairs

    workspace, _, runs = planted_workspace
    config = replace(FLIP_RUN, plan_id=workspace.job(runs["flipped"]).plan_id)
    expected = training_pairs(load_plan(workspace, config.plan_id), config)
    trained = load_from_disk(str(job_dir(workspace, runs["flipped"]) / names.DPO_PAIRS_DIR)).to_pandas()
    assert len(trained) == len(expected) > 0
    assert sorted(c[0]["content"] for c in trained["chosen"]) == sorted(c[0]["content"] for c in expected["chosen"])
    summary = json.loads((run_evaluation(workspace, runs["flipped"], EVAL) / "report.json").read_text())["prediction"]
    assert summary["training_pairs"] == len(expected)


def test_audit_predicts_no_rise_when_suppressed(planted_workspace):
    workspace, _, runs = planted_workspace
    row = shifts(workspace, runs["suppress"]).loc[CONCEPT]
    keep = shifts(workspace, runs["keep"]).loc[CONCEPT]
    assert row["action"] == "suppress" and abs(row["predicted"]) < keep["predicted"] / 3  # the drops balance it
    assert not row["shift_low"] > 0


def test_checkpoint_curve_has_a_point_per_checkpoint(planted_workspace):
    workspace, _, runs = planted_workspace
    folder = run_evaluation(workspace, runs["suppress"], EVAL)
    curve = pd.read_parquet(folder / "checkpoint_shifts.parquet")
    points = curve[curve["concept_id"] == CONCEPT].sort_values("position")
    assert points["step"].tolist() == [6, 12, 16]  # two saved checkpoints, then the final model
    assert points["checkpoint"].iloc[-1] == "final"
    report = json.loads((folder / "report.json").read_text())
    assert report["reemergence"]["checkpoints"] == 2
    assert report["reemergence"]["reemerged"] == reemerged(curve)
