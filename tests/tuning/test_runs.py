"""Tuning runs in a workspace with the bundled model on the real small audit's plan: a short
weighted-DPO run publishes a peft adapter and its config; a run killed with SIGKILL shows as
failed and resumes from its last checkpoint; concept ablation removes the directions."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import torch
import yaml

from spectrum_core import jobs
from spectrum_core.progress import HEARTBEAT_SECONDS, read_progress
from spectrum_core.tuning.caft import TrainingIntervention, concept_ablation, training_intervention
from spectrum_core.tuning.config import DPORunConfig, ReSetRunConfig, SpectrumRunConfig, config_from_dict
from spectrum_core.tuning.runs import run_tuning
from tests.conftest import save_suppress_top_plan


@pytest.fixture
def planned(small_audit):
    workspace, outcome = small_audit
    return workspace, save_suppress_top_plan(workspace, outcome)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


DPO_PREPARE = ["loading the plan", "loading the model", "CAFT directions", "adding LoRA", "writing the pairs"]
DPO_PREPARE += ["building the trainer"]
SPECTRUM_PREPARE = ["loading the plan", "loading the model", "rendering tasks", "CAFT directions", "adding LoRA"]
SPECTRUM_PREPARE += ["IA2 priming", "building the trainer"]


def assert_prepared_before_training(records: list[dict], expected_steps: list[str]) -> None:
    """Everything before the first training step is the ``prepare`` stage (and IA2 priming's own),
    one named step after another, never silent for longer than a few heartbeats (slack for a
    loaded machine), and finished before training begins."""
    first_train = next(i for i, r in enumerate(records) if r["stage"] == "train")
    before = records[:first_train]
    assert before and {r["stage"] for r in before} <= {"prepare", "ia2"}
    assert list(dict.fromkeys(r["step"] for r in before if "step" in r)) == expected_steps
    counted = [r for r in before if "step_total" in r]
    assert all(r["step_done"] <= r["step_total"] for r in counted)
    gaps = [b["t"] - a["t"] for a, b in zip(before, before[1:])]
    assert max(gaps) < 3 * HEARTBEAT_SECONDS, gaps
    prepared = [r for r in before if r["stage"] == "prepare"]
    assert prepared[-1]["done"] == prepared[-1]["total"] == len(expected_steps)


def test_short_spectrum_run_with_ia2_priming_keeps_its_held_out_tasks(planned):
    workspace, saved = planned
    config = SpectrumRunConfig(
        plan_id=saved.plan_id,
        max_steps=2,
        batch_size=2,
        max_length=512,
        save_steps=1,
        tasks_per_family=3,
        ia2_priming=True,
        ia2_steps=3,
        caft=True,
        caft_mode="mean",
    )
    folder = run_tuning(workspace, config)
    assert (folder / "adapter" / "adapter_config.json").exists()
    held_out = [json.loads(line) for line in (folder / "held_out_tasks.jsonl").read_text().splitlines()]
    assert {t["family"] for t in held_out} == {"ambient"}
    records = read_progress(folder / "progress.jsonl")
    assert [r["done"] for r in records if r["stage"] == "ia2"] == [1, 2, 3]  # IA2 priming first
    assert_prepared_before_training(records, SPECTRUM_PREPARE)
    losses = [r["loss"] for r in records if r["stage"] == "train" and "loss" in r]
    assert len(losses) == 2 and all(0 < loss < 20 for loss in losses)


def test_short_reset_run_logs_acceptance_and_keeps_what_it_trained_on(planned):
    workspace, saved = planned
    config = ReSetRunConfig(
        plan_id=saved.plan_id,
        max_steps=2,
        batch_size=2,
        max_length=512,
        save_steps=1,
        preference_prompts=2,
        context_prompts=2,
        constraint_prompts=2,
        candidates_per_temperature=1,
        max_new_tokens=24,
        reward_pairs=30,
        threshold=-100.0,
    )
    folder = run_tuning(workspace, config)
    assert (folder / "adapter" / "adapter_config.json").exists()
    assert (folder / "reward" / "reward.npz").exists() and (folder / "reward" / "report.json").exists()
    records = read_progress(folder / "progress.jsonl")
    rounds = [r for r in records if r["stage"] == "reset"]
    assert rounds[-1]["acceptance"] == 1.0 and rounds[-1]["candidates"] == 12  # 6 prompts x 2 temperatures
    # Before training: the prepare stage (the reward's fit among its steps), then the round's own
    # sampling and scoring, each counting its work.
    prepared = [r for r in records if r["stage"] == "prepare"]
    assert "fitting the shaped reward" in {r.get("step") for r in prepared}
    assert prepared[-1]["done"] == prepared[-1]["total"]
    round_one = [r for r in records if r["stage"] == "round 1"]
    named = ["sampling candidates", "scoring candidates", "building the trainer"]
    assert list(dict.fromkeys(r["step"] for r in round_one if "step" in r)) == named
    sampled = [r for r in round_one if r.get("step") == "sampling candidates" and "step_total" in r]
    assert sampled[-1]["step_done"] == sampled[-1]["step_total"] == 12 and sampled[-1]["step_unit"] == "responses"
    first_train = next(i for i, r in enumerate(records) if r["stage"] == "train")
    assert records.index(prepared[-1]) < records.index(round_one[0]) < first_train
    kept = (folder / "round-0.jsonl").read_text().splitlines()
    assert len(kept) == 1 + 6 and {json.loads(line)["kind"] for line in kept[1:]} == {
        "preference",
        "constraints",
        "context",
    }


def test_short_dpo_run_publishes_an_adapter(planned):
    workspace, saved = planned
    config = DPORunConfig(plan_id=saved.plan_id, max_steps=2, batch_size=2, max_length=512, save_steps=1, caft=True)
    folder = run_tuning(workspace, config)
    assert (folder / "adapter" / "adapter_config.json").exists()
    assert config_from_dict(yaml.safe_load((folder / "config.yaml").read_text())) == config
    job = workspace.jobs("tune")[0]
    assert job.status == "succeeded" and job.plan_id == saved.plan_id
    assert job.parent_job_id == saved.plan.audit_job_id
    records = read_progress(folder / "progress.jsonl")
    steps = [r for r in records if r["stage"] == "train" and "loss" in r]
    assert [r["done"] for r in steps] == [1, 2]
    assert {"loss", "learning_rate", "rewards_margins", "eta", "elapsed"} <= set(steps[-1])
    # the prepare stage, in order; tokenizing and the reference log-probs count their work
    assert_prepared_before_training(records, [*DPO_PREPARE, "tokenizing pairs", "reference log-probs"])
    tokenized = [r for r in records if r.get("step") == "tokenizing pairs"]
    assert tokenized[-1]["step_done"] == tokenized[-1]["step_total"] > 0 and tokenized[-1]["step_unit"] == "pairs"
    from peft import PeftConfig

    assert PeftConfig.from_pretrained(folder / "adapter").r == config.lora_r
    # The same configuration again reuses the result.
    assert run_tuning(workspace, config) == folder


def test_killed_run_fails_and_resumes_from_its_checkpoint(planned):
    workspace, saved = planned
    args = [
        "tune",
        "--plan",
        str(saved.plan_id),
        "--set",
        "max_steps=4",
        "--set",
        "save_steps=2",
        "--set",
        "max_length=512",
    ]
    job_id = jobs.start_job(workspace, "tune", args, {"test": "resume"}, plan_id=saved.plan_id)
    checkpoints = workspace.root / "jobs" / str(job_id) / "checkpoints"
    wait_for(lambda: (checkpoints / "checkpoint-2" / "trainer_state.json").exists(), 600, "a checkpoint")
    os.killpg(os.getpgid(workspace.job(job_id).pid), signal.SIGKILL)
    wait_for(lambda: jobs.refresh(workspace, job_id).status == "failed", 30, "the job to show as failed")
    assert "without reporting" in workspace.job(job_id).error

    jobs.resume_job(workspace, job_id, ["tune", "--resume", str(job_id)])
    wait_for(lambda: jobs.refresh(workspace, job_id).status not in jobs.ACTIVE, 600, "the resumed run")
    job = workspace.job(job_id)
    assert job.status == "succeeded", jobs.view(workspace, job_id).log_tail
    records = read_progress(workspace.root / job.progress_path)
    starts = [r["started_at_step"] for r in records if "started_at_step" in r]
    assert starts[0] == 0 and len(starts) == 2 and starts[1] >= 2  # the second process went on from a checkpoint
    assert max(r["done"] for r in records if "loss" in r) == 4


def test_two_processes_through_accelerate(planned):
    """`num_processes=2` relaunches the command under `accelerate launch` (two CPU processes here):
    one job, one adapter, progress written by the main process only."""
    import subprocess
    import sys

    workspace, saved = planned
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "spectrum_core.cli",
            "--workspace",
            str(workspace.root),
            "tune",
            "--plan",
            str(saved.plan_id),
            "--set",
            "max_steps=2",
            "--set",
            "max_length=512",
            "--set",
            "num_processes=2",
            "--set",
            "save_steps=1",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Tuning finished") == 1
    runs = workspace.jobs("tune")
    assert len(runs) == 1 and runs[0].status == "succeeded"
    folder = workspace.find_artifact(runs[0].artifact_key)
    assert (folder / "adapter" / "adapter_config.json").exists()
    steps = [r["done"] for r in read_progress(folder / "progress.jsonl") if "loss" in r]
    assert steps == [1, 2]


def test_concept_ablation_removes_the_directions(tiny_model):
    model = tiny_model.model
    basis = torch.linalg.qr(torch.randn(model.config.hidden_size, 2))[0]
    seen = {}
    layer = model.model.layers[1]
    hooks_before = dict(layer._forward_hooks)  # transformers may have its own hooks installed
    handle = model.model.layers[2].register_forward_pre_hook(lambda m, args: seen.update(x=args[0]))
    ids = torch.randint(0, 1000, (1, 12))
    try:
        with concept_ablation(model, 1, TrainingIntervention("zero", basis)):
            model(input_ids=ids)
        ablated = seen["x"]
        mean = torch.randn(model.config.hidden_size)
        with concept_ablation(model, 1, TrainingIntervention("mean", basis, offset=basis @ (basis.T @ mean))):
            model(input_ids=ids)
        mean_ablated = seen["x"]
        steer = 3.0 * basis[:, 0]
        with concept_ablation(model, 1, TrainingIntervention("steer", None, offset=steer)):
            model(input_ids=ids)
        steered = seen["x"]
        model(input_ids=ids)
        plain = seen["x"]
    finally:
        handle.remove()
    assert (ablated @ basis).abs().max() < 1e-4 < (plain @ basis).abs().max()
    # mean ablation: every token's component along the basis is the mean's, the rest untouched
    assert torch.allclose(mean_ablated @ basis, (basis.T @ mean).expand(1, 12, 2), atol=1e-4)
    assert torch.allclose(mean_ablated - (mean_ablated @ basis) @ basis.T, ablated, atol=1e-4)
    # preventative steering adds the offset to every token and removes nothing
    assert torch.allclose(steered - plain, steer.expand_as(plain), atol=1e-4)
    assert dict(layer._forward_hooks) == hooks_before  # ours is gone after the block


def test_caft_modes_on_a_real_plan(planned, bundled_model, monkeypatch):
    """Zero, mean and steer for the plan's suppressed token concept: mean ablation keeps the zero
    mode's basis and sets the component to a mean inside its span; steering adds the concept's
    direction, oriented the way the data pushes, and projects nothing out."""
    from spectrum_core.reward.shaped import concept_direction, load_audit_saes
    from spectrum_core.tuning import caft

    monkeypatch.setattr(caft, "REFERENCE_PAIRS", 6)  # the properties hold for any reference set

    workspace, saved = planned
    folder = workspace.find_artifact(saved.plan.audit_artifact)
    (choice,) = saved.plan.suppressed
    zero = training_intervention(saved, folder, bundled_model, "zero", 1.0)
    mean = training_intervention(saved, folder, bundled_model, "mean", 1.0)
    steer = training_intervention(saved, folder, bundled_model, "steer", 2.0)
    assert zero is not None and mean is not None and steer is not None
    assert zero.offset is None and torch.equal(mean.basis, zero.basis)
    assert mean.offset is not None and torch.allclose(mean.basis @ (mean.basis.T @ mean.offset), mean.offset, atol=1e-4)
    assert mean.offset.norm() > 0
    direction = concept_direction(choice.concept_id, load_audit_saes(folder))
    sign = 1.0 if choice.direction == "chosen" else -1.0
    assert steer.basis is None and steer.offset is not None
    cosine = torch.nn.functional.cosine_similarity(steer.offset, sign * direction, dim=0)
    assert cosine > 0.999
    twice = training_intervention(saved, folder, bundled_model, "steer", 4.0)
    assert twice is not None and torch.allclose(twice.offset, 2 * steer.offset, rtol=1e-4)
