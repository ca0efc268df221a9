"""The trainers behind the tuning stage: weighted DPO, supervised tuning (Spectrum Tuning, ReSet's
rounds) with LoRA, IA2 priming and CAFT; each resumes from its last checkpoint in ``output_dir``.

Each trainer takes the workspace, its method's config and an output folder inside the job's folder,
reports through the progress callback, and returns the trained model and tokenizer; the stage in
``runs.py`` publishes them. Everything before the first training step (loading the model,
tokenizing, reference log-probs, building the trainer) is the ``prepare`` stage, a step at a time
with a heartbeat (``StepsReport``), so a run never sits silent at "running" for a minute.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from transformers import TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from .. import constants as names
from ..interventions import load_plan
from ..models import load_model
from ..progress import StepsReport
from ..stages import distributed_state
from ..tasks.families import build_mixture
from ..tasks.spectrum_format import render
from ..workspace import Workspace
from .caft import TrainingIntervention, concept_ablation, training_intervention
from .config import DPORunConfig, ReSetRunConfig, SpectrumRunConfig, TuningConfig
from .timing import PREPARE_STAGE, ROUND_STAGE, TRAIN_STAGE
from .weighted_dpo import REFERENCE_STEP, TOKENIZE_STEP, WeightedDPOTrainer, weighted_dpo_config

# Seconds between training records between logging steps: a run logs its metrics every
# ``logging_steps`` (ten steps can be a minute on a CPU); the step count is reported in between.
STEP_REPORT_SECONDS = 2.0


class ProgressCallback(TrainerCallback):
    """Trainer logs → the job's progress log (every logging step, with the metrics; the step count
    at least every ``STEP_REPORT_SECONDS`` in between)."""

    def __init__(self, progress):
        self.progress = progress
        self._reported = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        # global_step is already the checkpoint's step when a run resumes.
        self.progress(TRAIN_STAGE, state.global_step, state.max_steps, unit="steps", started_at_step=state.global_step)
        self._reported = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if time.monotonic() - self._reported >= STEP_REPORT_SECONDS:
            self.progress(TRAIN_STAGE, state.global_step, state.max_steps, unit="steps")
            self._reported = time.monotonic()

    def on_log(self, args, state, control, logs=None, **kwargs):
        metrics = {k.replace("/", "_"): v for k, v in (logs or {}).items() if isinstance(v, (int, float))}
        self.progress(TRAIN_STAGE, state.global_step, state.max_steps, unit="steps", **metrics)


def training_pairs(saved, config: TuningConfig) -> pd.DataFrame:
    """The plan's shaped pairs a run trains on (rows of its parquet): the train split; for DPO a
    seeded sample of no more than the run will see, since reference log-probs are computed for
    every one of them."""
    frame = pd.read_parquet(saved.parquet)
    frame = frame[frame["split"] == "train"]
    if config.method != "dpo":
        return frame
    needed = config.max_steps * config.batch_size * config.grad_accum
    limit = min(needed, config.max_train_pairs or needed)
    if len(frame) > limit:
        frame = frame.sample(n=limit, random_state=config.seed)
    return frame


def _train_records(saved, config: TuningConfig) -> list[dict]:
    return [
        {"prompt": list(r.prompt), "chosen": list(r.chosen), "rejected": list(r.rejected), "weight": float(r.weight)}
        for r in training_pairs(saved, config).itertuples()
    ]


def _chosen_records(saved) -> list[dict]:
    """The plan's train pairs, prompt and chosen response with their weight: what the supervised
    methods draw their examples, prompts and IA2 demonstrations from."""
    return [
        {"prompt": list(r.prompt), "chosen": list(r.chosen), "weight": float(r.weight)}
        for r in pd.read_parquet(saved.parquet).itertuples()
        if r.split == "train"
    ]


def _with_lora(model, config: TuningConfig):
    if config.full_finetune:
        return model
    from peft import LoraConfig, get_peft_model

    modules = "all-linear" if config.lora_target == ("all-linear",) else list(config.lora_target)
    from transformers import set_seed

    # LoRA draws its A matrices from the global generators: seed them here, so the adapter starts
    # from the same weights whatever ran before in this process (an audit's SAE training, say).
    set_seed(config.seed)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def _caft(workspace: Workspace, config: TuningConfig, saved, loaded, steps: StepsReport) -> TrainingIntervention | None:
    """The CAFT hook's action for this run (None without CAFT); computed before any adapter
    trains, so the mean and scale are the base model's."""
    if not config.caft:
        return None
    steps.begin(CAFT_STEP)
    audit_folder = workspace.find_artifact(saved.plan.audit_artifact)
    return training_intervention(saved, audit_folder, loaded, config.caft_mode, config.caft_strength)


# The prepare stage's steps, in the order they run (CAFT's only with CAFT on, IA2's with priming).
PLAN_STEP, MODEL_STEP, CAFT_STEP, ADAPTER_STEP = (
    "loading the plan",
    "loading the model",
    "CAFT directions",
    "adding LoRA",
)
TRAINER_STEP, IA2_STEP = "building the trainer", "IA2 priming"
# (tokenizing and the reference log-probs happen inside the trainer's construction)
DPO_STEPS = (
    PLAN_STEP,
    MODEL_STEP,
    CAFT_STEP,
    ADAPTER_STEP,
    "writing the pairs",
    TRAINER_STEP,
    TOKENIZE_STEP,
    REFERENCE_STEP,
)
SPECTRUM_STEPS = (PLAN_STEP, MODEL_STEP, "rendering tasks", CAFT_STEP, ADAPTER_STEP, IA2_STEP, TRAINER_STEP)
RESET_STEPS = (PLAN_STEP, MODEL_STEP, "fitting the shaped reward", "building prompts", CAFT_STEP, ADAPTER_STEP)
ROUND_STEPS = ("sampling candidates", "scoring candidates", IA2_STEP, TRAINER_STEP)


def prepare_steps(steps: tuple[str, ...], config: TuningConfig) -> list[str]:
    """``steps`` less those this run skips (CAFT off, no IA2 priming)."""
    skipped = {CAFT_STEP} if not config.caft else set()
    if not getattr(config, "ia2_priming", False):
        skipped.add(IA2_STEP)
    return [step for step in steps if step not in skipped]


def _load_for_training(workspace: Workspace, config: TuningConfig, steps: StepsReport):
    """The run's saved plan and its loaded model."""
    steps.begin(PLAN_STEP)
    saved = load_plan(workspace, config.plan_id)
    steps.begin(MODEL_STEP)
    return saved, load_model(config.model, dtype=config.dtype)


def _shared_dataset(records: list[dict], folder: Path):
    """The training records as a dataset on disk, written by the main process: its cache files
    (tokenization, TRL's precomputed reference log-probs) then live in one folder that every
    process of a multi-process run reads (an in-memory dataset caches in a per-process temp dir)."""
    from datasets import Dataset, load_from_disk

    state = distributed_state()
    if (state is None or state.is_main_process) and not (folder / "dataset_info.json").exists():
        Dataset.from_list(records).save_to_disk(str(folder))
    if state is not None:
        state.wait_for_everyone()
    return load_from_disk(str(folder))


def train_dpo(workspace: Workspace, config: DPORunConfig, output_dir: Path, progress=None):
    """Weighted DPO on the plan's shaped train pairs; returns the trained (peft) model and tokenizer."""
    with StepsReport(progress, PREPARE_STAGE, prepare_steps(DPO_STEPS, config)) as steps:
        saved, loaded = _load_for_training(workspace, config, steps)
        intervention = _caft(workspace, config, saved, loaded, steps)
        steps.begin(ADAPTER_STEP)
        model = _with_lora(loaded.model, config)
        model.train()
        steps.begin("writing the pairs")
        dataset = _shared_dataset(_train_records(saved, config), output_dir.parent / names.DPO_PAIRS_DIR)
        with concept_ablation(model, saved.plan.layer, intervention):
            steps.begin(TRAINER_STEP)
            trainer = WeightedDPOTrainer(
                model,
                args=_dpo_args(config, output_dir, loaded),
                train_dataset=dataset,
                processing_class=loaded.tokenizer,
                callbacks=[ProgressCallback(progress)] if progress else None,
                preparing=lambda step, done, total, unit: steps.count(done, total, unit, step=step),
            )
            steps.finish()
            trainer.train(resume_from_checkpoint=get_last_checkpoint(str(output_dir)) if output_dir.exists() else None)
    return trainer.model, loaded.tokenizer


def _dpo_args(config: DPORunConfig, output_dir: Path, loaded):
    return weighted_dpo_config(
        output_dir=str(output_dir),
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        beta=config.beta,
        max_length=config.max_length,
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=config.keep_checkpoints,
        seed=config.seed,
        bf16=str(loaded.dtype) == "torch.bfloat16",
        use_cpu=loaded.device == "cpu",
        lr_scheduler_type="constant",
        disable_tqdm=True,
        dataloader_num_workers=0,
        precompute_ref_batch_size=max(8, config.batch_size),
    )


def _sft_args(config: TuningConfig, output_dir: Path, loaded):
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(output_dir),
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        max_length=config.max_length,
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=config.keep_checkpoints,
        seed=config.seed,
        bf16=str(loaded.dtype) == "torch.bfloat16",
        use_cpu=loaded.device == "cpu",
        lr_scheduler_type="constant",
        disable_tqdm=True,
        report_to=[],
        dataloader_num_workers=0,
    )


def train_sft(
    workspace: Workspace,
    config: TuningConfig,
    output_dir: Path,
    examples: list[dict],
    loaded,
    layer: int,
    intervention: TrainingIntervention | None,
    progress=None,
    model=None,
    ia2_records: list[dict] | None = None,
    steps: StepsReport | None = None,
):
    """Supervised tuning on pre-tokenized ``input_ids`` / ``labels`` (−100 where unscored) with
    TRL's SFTTrainer, LoRA (unless ``model`` is already prepared) and the CAFT hook at ``layer``;
    resumes from the last checkpoint. ``steps``: the report of what comes before training, which
    this finishes once the trainer is built."""
    from datasets import Dataset
    from trl import SFTTrainer

    steps = steps or StepsReport(None, PREPARE_STAGE, ())
    if model is None:
        steps.begin(ADAPTER_STEP)
        model = _with_lora(loaded.model, config)
    if config.ia2_priming and ia2_records:
        steps.begin(IA2_STEP)
        _ia2_priming(model, loaded.tokenizer, config, ia2_records, output_dir, progress)
    model.train()
    with concept_ablation(model, layer, intervention):
        steps.begin(TRAINER_STEP)
        trainer = SFTTrainer(
            model,
            args=_sft_args(config, output_dir, loaded),
            train_dataset=Dataset.from_list(examples),
            processing_class=loaded.tokenizer,
            callbacks=[ProgressCallback(progress)] if progress else None,
        )
        steps.finish()
        trainer.train(resume_from_checkpoint=get_last_checkpoint(str(output_dir)) if output_dir.exists() else None)
    return trainer.model, loaded.tokenizer


def _ia2_priming(model, tokenizer, config: TuningConfig, records: list[dict], output_dir: Path, progress) -> None:
    """IA2 priming once per run: the primed adapter is saved, so a run resumed before its first
    checkpoint starts tuning from the primed weights, not from a fresh adapter."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    from .ia2 import ia2_items, ia2_prime, teach_items

    primed = output_dir / names.IA2_ADAPTER_FILE
    if primed.exists():
        set_peft_model_state_dict(model, load_file(str(primed)))
        return
    items = ia2_items(tokenizer, records, config.ia2_demos, config.seed, config.max_length * 4)
    teach_items(model, tokenizer, items, config.ia2_tokens)
    ia2_prime(model, items, config.ia2_steps, config.ia2_learning_rate, progress, seed=config.seed)
    output_dir.mkdir(parents=True, exist_ok=True)
    tmp = primed.with_suffix(".partial")
    save_file({k: v.detach().contiguous() for k, v in get_peft_model_state_dict(model).items()}, str(tmp))
    tmp.replace(primed)


def spectrum_examples(
    config: SpectrumRunConfig, records: list[dict], tokenizer, on_task: Callable[[int, int], None] | None = None
) -> tuple[list[dict], list]:
    """Training examples of the mixture, and the held-out families' tasks (for evaluation);
    ``on_task(done, total)`` after each task is rendered."""
    held = set(config.held_out_families)
    train_families = tuple(f for f in config.families if f not in held)
    tasks = build_mixture(train_families, config.tasks_per_family, config.samples_per_task, config.seed, records)
    held_out = build_mixture(tuple(held), config.tasks_per_family, config.samples_per_task, config.seed + 1)
    examples = []
    for task in tasks:
        examples.append(render(tokenizer, task, config.max_length))
        if on_task is not None:
            on_task(len(examples), len(tasks))
    return [e for e in examples if any(label != -100 for label in e["labels"])], held_out


def train_spectrum(workspace: Workspace, config: SpectrumRunConfig, output_dir: Path, progress=None):
    with StepsReport(progress, PREPARE_STAGE, prepare_steps(SPECTRUM_STEPS, config)) as steps:
        saved, loaded = _load_for_training(workspace, config, steps)
        records = _chosen_records(saved)
        steps.begin("rendering tasks")
        examples, held_out = spectrum_examples(
            config, records, loaded.tokenizer, on_task=lambda done, total: steps.count(done, total, "tasks")
        )
        _write_held_out(held_out, output_dir)
        intervention = _caft(workspace, config, saved, loaded, steps)
        return train_sft(
            workspace,
            config,
            output_dir,
            examples,
            loaded,
            saved.plan.layer,
            intervention,
            progress,
            ia2_records=records[:64],
            steps=steps,
        )


def _write_held_out(held_out: list, output_dir: Path) -> None:
    """The held-out families' tasks, beside the checkpoints (the evaluation reads them)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    with open(output_dir.parent / names.HELD_OUT_TASKS_FILE, "w", encoding="utf-8") as handle:
        for task in held_out:
            handle.write(
                json.dumps(
                    {"family": task.family, "description": task.description, "samples": task.samples},
                    ensure_ascii=False,
                )
                + "\n"
            )


@dataclass
class _ReSetInputs:
    """What every round of a ReSet run works with, made once before the first."""

    saved: Any
    loaded: Any
    audit_folder: Path | None
    records: list[dict]
    reward: Any  # None until needed when an earlier attempt fitted and saved it
    prompts: list
    intervention: TrainingIntervention | None
    model: Any


def _prepare_reset(workspace: Workspace, config: ReSetRunConfig, run_dir: Path, main: bool, progress) -> _ReSetInputs:
    from .reset import build_prompts

    with StepsReport(progress, PREPARE_STAGE, prepare_steps(RESET_STEPS, config)) as steps:
        saved, loaded = _load_for_training(workspace, config, steps)
        audit_folder = workspace.find_artifact(saved.plan.audit_artifact)
        records = _chosen_records(saved)
        reward = None
        if main and not (run_dir / names.REWARD_DIR / names.REWARD_WEIGHTS_FILE).exists():
            steps.begin("fitting the shaped reward")  # its own stages count the encoding
            reward = _fit_reset_reward(workspace, config, saved, loaded, audit_folder, run_dir, progress)
        steps.begin("building prompts")
        prompts = build_prompts(
            records, config.preference_prompts, config.context_prompts, config.constraint_prompts, config.seed
        )
        intervention = _caft(workspace, config, saved, loaded, steps)
        steps.begin(ADAPTER_STEP)
        model = _with_lora(loaded.model, config)
        steps.finish()
    return _ReSetInputs(saved, loaded, audit_folder, records, reward, prompts, intervention, model)


def train_reset(workspace: Workspace, config: ReSetRunConfig, output_dir: Path, progress=None):
    """Rounds of sample → score → keep the best over the threshold → supervised tuning; each
    round's work before its training is the stage ``round <k>``."""
    from .reset import sft_example

    state = distributed_state()
    main = state is None or state.is_main_process  # only the main process samples and scores
    run_dir = output_dir.parent
    run = _prepare_reset(workspace, config, run_dir, main, progress)
    loaded = run.loaded
    for round_index in range(config.rounds):
        first = round_index == 0
        round_steps = [s for s in prepare_steps(ROUND_STEPS, config) if first or s != IA2_STEP]
        with StepsReport(progress, ROUND_STAGE.format(round_index + 1), round_steps) as steps:
            kept_path = run_dir / f"round-{round_index}.jsonl"
            if main and not kept_path.exists():  # a resumed run reuses a round's kept set
                if run.reward is None:
                    run.reward = _load_reset_reward(run_dir, loaded, run.audit_folder)
                _reset_round(
                    run.model, loaded.tokenizer, run.reward, run.prompts, config, round_index, kept_path, steps
                )
            if state is not None:
                state.wait_for_everyone()  # helpers read the main process's kept set
            stats, kept_rows = _read_kept(kept_path)
            if progress is not None:
                kept_stats = {k: v for k, v in stats.items() if v is not None and k != "round"}
                progress("reset", round_index + 1, config.rounds, unit="rounds", **kept_stats)
            if not kept_rows:
                steps.finish()
                continue
            examples = [
                sft_example(loaded.tokenizer, row["prompt"], row["response"], config.max_length) for row in kept_rows
            ]
            train_sft(
                workspace,
                config,
                output_dir / f"round-{round_index}",
                examples,
                loaded,
                run.saved.plan.layer,
                run.intervention,
                progress,
                model=run.model,
                ia2_records=run.records[:64] if first else None,
                steps=steps,
            )
    return run.model, loaded.tokenizer


def _fit_reset_reward(
    workspace: Workspace, config: ReSetRunConfig, saved, loaded, audit_folder, run_dir: Path, progress
):
    """The run's own shaped reward, fitted on the plan's dataset and saved into the run's folder."""
    from ..reward.shaped import fit_plan_reward

    plan = saved.plan
    assert plan.dataset_id is not None and audit_folder is not None  # a plan comes from an audit of a dataset
    dataset = workspace.load_dataset(plan.dataset_id)
    return fit_plan_reward(
        loaded,
        audit_folder,
        plan,
        dataset.pairs,
        saved.shaping(),
        config.reward_pairs,
        config.seed,
        run_dir / names.REWARD_DIR,
        progress,
    )


def _load_reset_reward(run_dir: Path, loaded, audit_folder):
    """The shaped reward an earlier (resumed) attempt of the run fitted and saved."""
    from ..reward import ShapedReward

    assert audit_folder is not None  # the plan's audit is published
    return ShapedReward.load(run_dir / names.REWARD_DIR, loaded, audit_folder)


def _reset_round(
    model,
    tokenizer,
    reward,
    prompts: list,
    config: ReSetRunConfig,
    round_index: int,
    kept_path: Path,
    steps: StepsReport,
):
    """One round's sampling and scoring (main process only): the best candidate per prompt over the
    threshold, written with the round's statistics to ``kept_path``."""
    import numpy as np

    from .reset import combine_scores, select_best, task_score

    model.eval()
    steps.begin("sampling candidates")
    owners, candidates = _sample_candidates(
        model, tokenizer, prompts, config, lambda done, total: steps.count(done, total, "responses")
    )
    steps.begin("scoring candidates")
    # the reward reads the base model's activations, the ones it was fitted on
    with model.disable_adapter() if hasattr(model, "disable_adapter") else nullcontext():
        rewards = reward.score(
            [prompts[o].messages for o in owners],
            candidates,
            progress=lambda stage, done, total, **info: steps.count(done, total, info.get("unit", "")),
        )
    tasks = np.array([task_score(prompts[o], c) for o, c in zip(owners, candidates)])
    scores = combine_scores(rewards, tasks, config.reward_weight, config.task_weight)
    kept = select_best(scores, owners, config.threshold)
    stats = {
        "round": round_index + 1,
        "candidates": len(candidates),
        "kept": len(kept),
        "acceptance": len(kept) / len(prompts),
        "score_all": float(scores.mean()),
        "score_kept": float(scores[kept].mean()) if kept else None,
        "task_all": float(tasks.mean()),
        "task_kept": float(tasks[kept].mean()) if kept else None,
    }
    rows = [
        {
            "prompt": prompts[owners[index]].messages,
            "kind": prompts[owners[index]].kind,
            "response": candidates[index],
            "score": float(scores[index]),
        }
        for index in kept
    ]
    _write_kept(kept_path, stats, rows)


def _sample_candidates(model, tokenizer, prompts: list, config: ReSetRunConfig, on_count=None):
    """Every prompt's candidates, ``candidates_per_temperature`` at each temperature, and for each
    candidate the index of its prompt (its owner); ``on_count(done, total)`` after each batch."""
    import numpy as np

    from ..sampling import sample_responses

    owner_list: list[int] = []
    candidates: list[str] = []
    whole = len(config.temperatures) * config.candidates_per_temperature * len(prompts)
    for temperature in config.temperatures:
        for _ in range(config.candidates_per_temperature):
            before = len(candidates)
            # unseeded, top-k from the model's generation config: ReSet's own sampling
            candidates += [
                r[0]
                for r in sample_responses(
                    model,
                    tokenizer,
                    [p.messages for p in prompts],
                    temperature=temperature,
                    max_new_tokens=config.max_new_tokens,
                    batch_size=8,
                    seed=None,
                    top_k=None,
                    on_batch=(lambda done, total, b=before: on_count(b + done, whole)) if on_count else None,
                )
            ]
            owner_list += list(range(len(prompts)))
    return np.array(owner_list), candidates


def _write_kept(kept_path: Path, stats: dict, rows: list[dict]) -> None:
    """A round's kept set: a line of statistics, then one line per kept response; written whole or
    not at all, since a resumed run takes an existing file as a finished round."""
    partial = kept_path.with_suffix(".partial")
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(json.dumps({"stats": stats}) + "\n")
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    partial.replace(kept_path)


def _read_kept(kept_path: Path) -> tuple[dict, list[dict]]:
    """A round's statistics and kept rows, as ``_write_kept`` wrote them."""
    lines = [json.loads(line) for line in kept_path.read_text(encoding="utf-8").splitlines()]
    return lines[0]["stats"], lines[1:]


# Each takes (workspace, its method's run config, output folder, progress) → (model, tokenizer).
TRAINERS: dict[str, Callable[..., tuple[Any, Any]]] = {
    "dpo": train_dpo,
    "spectrum": train_spectrum,
    "reset": train_reset,
}
