"""The evaluation's sections, each one measure of one model (see ``evaluate.py`` for the stage
that runs them and the artifact they fill)."""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .. import constants as names
from ..artifacts import AuditArtifact, TuningArtifact
from ..audit.review import AuditView
from ..sampling import sample_responses
from ..settings import plain
from ..tasks.families import ambient_rows, build_mixture, diffuse_rows, polis_rows
from ..tasks.spectrum_format import sample_prompt
from ..workspace import Workspace, artifact_key
from ..workspace.workspace import utc_now
from . import alignment, steerability
from .agreement import realised_shifts
from .baselines import word_counts
from .config import EvalConfig
from .coverage import coverage_metrics
from .diversity import diversity_metrics
from .faithfulness import faithfulness_metrics
from .prediction import (
    PromptValues,
    delta_matrix,
    every_prediction,
    prediction_concepts,
    prediction_summary,
    reemerged,
    training_positions,
)
from .preference import implicit_reward_accuracy, reward_comparison
from .prevalence import Generations, compare_prevalence, concept_values, encode_generations, held_out_prompts
from .targets import EvalTarget, load_models, plan_concepts, run_checkpoints


def steerability_section(models, tokenizer, config, progress):

    tasks = build_mixture(
        config.steer_families, config.steer_tasks_per_family, config.steer_samples, config.seed, split="eval"
    )
    if not tasks:
        return {}, pd.DataFrame()
    losses, calibration = steerability.output_losses(
        models.policy,
        tokenizer,
        tasks,
        config.max_length,
        max(1, config.batch_size // 2),
        on_batch=lambda d, t: progress("steerability", d, t, unit="tasks"),
    )
    return steerability.summarise(losses, calibration), losses


def coverage_section(models, tokenizer, config, progress):

    rows = diffuse_rows("eval")[: config.coverage_prompts]
    records = []
    for index, (request, targets) in enumerate(rows):
        samples = sample_responses(
            models.policy,
            tokenizer,
            [sample_prompt(request)],
            n=config.coverage_samples,
            temperature=config.coverage_temperature,
            max_new_tokens=config.coverage_max_new_tokens,
            batch_size=max(config.batch_size, 50),
            seed=config.seed + index,
        )[0]
        records.append(
            {
                "prompt": request,
                "valid_set_size": len(set(targets)),
                **coverage_metrics(samples, targets),
                **diversity_metrics(samples),
                "samples": samples,
            }
        )
        progress("coverage", index + 1, len(rows), unit="prompts")
    table = pd.DataFrame(records)
    means = ("valid_share", "yield", "coverage", "uniqueness", "distinct_1", "distinct_2", "embedding_diversity")
    summary = {k: float(table[k].mean()) for k in means} if len(table) else {}
    if len(table):
        summary["prompts"] = len(table)
    return summary, table


def alignment_section(models, tokenizer, config, progress):

    rng = random.Random(config.seed)
    polis = polis_rows("eval")
    ambient = ambient_rows("eval")
    polis = rng.sample(polis, min(config.polis_statements, len(polis)))
    ambient = rng.sample(ambient, min(config.ambient_items, len(ambient)))
    progress("alignment", 0, 2, unit="sources")
    tables = [alignment.polis_alignment(models.policy, tokenizer, polis, config.batch_size)] if polis else []
    progress("alignment", 1, 2, unit="sources")
    if ambient:
        tables.append(alignment.ambient_alignment(models.policy, tokenizer, ambient, config.batch_size))
    progress("alignment", 2, 2, unit="sources")
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return (alignment.summarise(table) if len(table) else {}), table


def generations_section(
    models, policy, config, messages: list[list[dict]], saes, layer: int, progress, stage: str = "generations"
) -> Generations:
    """``policy``'s responses to ``messages``, encoded by the base model at the audit's layer."""
    responses = sample_responses(
        policy,
        models.loaded.tokenizer,
        messages,
        temperature=config.prevalence_temperature,
        max_new_tokens=config.prevalence_max_new_tokens,
        batch_size=config.batch_size,
        seed=config.seed,
        on_batch=lambda d, t: progress(stage, d, t, unit="responses"),
    )
    return encode_generations(models.loaded, saes, layer, messages, [r[0] for r in responses], progress)


def reward_section(workspace, models, target, config, base_generations, tuned_generations, progress) -> dict:
    """The shaped reward of the run's plan: the ReSet run's own, else one fitted here (cached)."""
    from ..interventions import load_plan
    from ..reward import ShapedReward
    from ..reward.shaped import fit_plan_reward

    saved = load_plan(workspace, target.run["plan_id"])
    audit_folder = workspace.find_artifact(saved.plan.audit_artifact)
    own_reward = TuningArtifact(workspace.find_artifact(target.tune_artifact)).reward
    source = "the run's reward"
    if own_reward is not None:
        reward = ShapedReward.load(own_reward, models.loaded, audit_folder)
    else:
        key = artifact_key("reward", {"plan": saved.plan.plan_hash, "pairs": config.reward_pairs, "seed": config.seed})
        folder = workspace.find_artifact(key)
        source = f"fitted on {config.reward_pairs} train pairs of the plan"
        if folder is None:
            dataset = workspace.load_dataset(saved.plan.dataset_id)
            staging = workspace.staging_path(key)
            reward = fit_plan_reward(
                models.loaded,
                audit_folder,
                saved.plan,
                dataset.pairs,
                saved.shaping(),
                config.reward_pairs,
                config.seed,
                staging,
                progress,
            )
            workspace.publish_artifact(staging, key, "reward", {"plan": saved.plan.plan_hash})
        else:
            reward = ShapedReward.load(folder, models.loaded, audit_folder)
    base_scores = reward.score(base_generations.prompts, base_generations.responses)
    tuned_scores = reward.score(tuned_generations.prompts, tuned_generations.responses)
    return {**reward_comparison(base_scores, tuned_scores), "reward": source}


def preference_section(workspace, models, target, config) -> dict | None:
    if target.run.get("method") != "dpo":
        return None
    from ..interventions import load_plan

    frame = pd.read_parquet(load_plan(workspace, target.run["plan_id"]).parquet)
    held = frame[frame["split"] != "train"]
    held = held.sample(n=min(config.preference_pairs, len(held)), random_state=config.seed)
    pairs = [
        {"prompt": list(r.prompt), "chosen": r.chosen[-1]["content"], "rejected": r.rejected[-1]["content"]}
        for r in held.itertuples()
    ]
    beta = float(target.run_config.get("beta", 0.1))
    return implicit_reward_accuracy(
        models.policy,
        models.loaded.model,
        models.loaded.tokenizer,
        pairs,
        beta,
        max_length=int(target.run_config.get("max_length", 512)),
        batch_size=max(1, config.batch_size // 2),
    )


def faithfulness_section(workspace, models, target, config, progress) -> pd.DataFrame:
    points: list[tuple[str, Path | None]] = [("final" if not target.is_base else "base", None)]
    if target.run.get("method") == "reset" and config.every_checkpoint:
        points = [(label, path) for label, _, path in run_checkpoints(workspace, target)] + points
    rows = []
    for index, (label, path) in enumerate(points):
        model = models.at_checkpoint(path, config) if path is not None else models.policy
        metrics = faithfulness_metrics(
            model,
            models.loaded.tokenizer,
            config.grounded_questions,
            config.constraint_prompts,
            config.seed,
            config.answer_max_new_tokens,
            config.batch_size,
        )
        del model
        rows.append({"checkpoint": label, **metrics})
        progress("faithfulness", index + 1, len(points), unit="checkpoints")
    return pd.DataFrame(rows)


def evaluate_model(
    workspace: Workspace, target: EvalTarget, config: EvalConfig, staging: Path, base_folder: Path | None, progress
) -> dict:
    """Every section for one model into ``staging`` (one table per section); returns the report."""
    models = load_models(workspace, target, config)
    tokenizer = models.loaded.tokenizer
    runtime: dict[str, float] = {}
    report = {
        "target": target.name,
        "model": target.model,
        "tune_job_id": target.tune_job_id,
        "tune_artifact": target.tune_artifact,
        "method": target.run.get("method"),
        "plan_id": target.run.get("plan_id"),
        "plan_hash": target.run.get("plan_hash"),
        "audit_job_id": target.audit_job_id,
        "dataset_id": target.run.get("dataset_id"),
        "run_config": target.run_config,
        "evaluation": plain(config),
        "created_at": utc_now(),
        "device": models.loaded.device,
        "dtype": str(models.loaded.dtype),
    }

    def timed(name, fn):
        started = time.perf_counter()
        value = fn()
        runtime[name] = round(time.perf_counter() - started, 2)
        return value

    for name, section in (
        ("steerability", steerability_section),
        ("coverage", coverage_section),
        ("alignment", alignment_section),
    ):
        report[name], table = timed(name, lambda section=section: section(models, tokenizer, config, progress))
        table.to_parquet(staging / f"{name}.parquet", index=False)
    faithful = timed("faithfulness", lambda: faithfulness_section(workspace, models, target, config, progress))
    faithful.to_parquet(staging / names.FAITHFULNESS_FILE, index=False)
    report["faithfulness"] = faithful.to_dict("records")
    report["preference"] = timed("preference", lambda: preference_section(workspace, models, target, config))
    if target.audit_job_id is not None:
        report.update(closed_loop_sections(workspace, models, target, config, staging, base_folder, timed, progress))
    report["runtime_seconds"] = runtime
    return report


def closed_loop_sections(
    workspace, models, target, config, staging: Path, base_folder: Path | None, timed, progress
) -> dict:
    """Generations on held-out prompts of the audited dataset, read through the audit's layer and
    SAE: their diversity, the decided concepts' prevalence (against the base model's generations on
    the same prompts) and the shaped reward's win rate."""
    from ..reward.shaped import load_audit_saes

    audit = workspace.job(target.audit_job_id)
    audit_folder = workspace.find_artifact(audit.artifact_key)
    sections: dict = {"audit_artifact": audit_folder.name}
    prompts = held_out_prompts(workspace.load_dataset(audit.dataset_id).pairs, config.prevalence_prompts, config.seed)
    if prompts.empty:
        sections["prevalence"] = {"skipped": "the audited dataset has no held-out prompts"}
        return sections
    saes = load_audit_saes(audit_folder)
    layer = AuditArtifact(audit_folder).layer
    messages = [list(p) for p in prompts["prompt"]]
    generations = timed(
        "generations", lambda: generations_section(models, models.policy, config, messages, saes, layer, progress)
    )
    generations.save(staging / names.GENERATIONS_DIR)
    sections["diversity"] = timed("diversity", lambda: diversity_metrics(generations.responses))
    base = Generations.load(base_folder / names.GENERATIONS_DIR) if base_folder is not None else None
    concepts = plan_concepts(workspace, target)
    if concepts:
        table = compare_prevalence(base or generations, generations if base is not None else None, concepts, saes)
        table.to_parquet(staging / names.PREVALENCE_FILE, index=False)
        sections["prevalence"] = {
            "concepts": len(table),
            "compared": base is not None,
            "flagged": table.loc[table["flagged"], "concept_id"].tolist() if "flagged" in table else [],
        }
    if base is not None:
        view = AuditView.load(audit_folder)
        shifts, sections["prediction"] = timed(
            "prediction", lambda: prediction_section(workspace, target, view, config, concepts, base, generations, saes)
        )
        shifts.to_parquet(staging / names.SHIFTS_FILE, index=False)
        curve = timed(
            "checkpoints",
            lambda: checkpoint_section(workspace, models, target, config, base, shifts, saes, layer, progress),
        )
        if curve is not None:
            curve.to_parquet(staging / names.CHECKPOINT_SHIFTS_FILE, index=False)
            sections["reemergence"] = {
                "checkpoints": int(curve["position"].nunique()) - 1,
                "concepts": int(curve["concept_id"].nunique()),
                "reemerged": reemerged(curve),
            }
        sections["reward"] = timed(
            "reward", lambda: reward_section(workspace, models, target, config, base, generations, progress)
        )
    return sections


def prediction_section(
    workspace, target, view, config, decided: list[dict], base: Generations, tuned: Generations, saes
) -> tuple[pd.DataFrame, dict]:
    """The scatter's table and summary: every head, a seeded sample of non-significant families
    and every decided concept (``prediction_concepts``), each with the shift the audit predicted
    from exactly the pairs the run trained on (``training_pairs``, the trainer's own selection;
    the weighted trainer cuts long pairs instead of dropping them, so none is lost on the way),
    the baselines' predictions, and the shift its generations show."""
    from ..interventions import load_plan
    from ..tuning.config import config_from_dict
    from ..tuning.trainers import training_pairs

    concepts = prediction_concepts(view, decided, config.seed)
    if not concepts:
        return pd.DataFrame(), {"concepts": 0, "moved": 0, "surprises": []}
    run_config = config_from_dict({**target.run_config, "method": target.run.get("method", "dpo")})
    saved = load_plan(workspace, target.run["plan_id"])
    training = training_pairs(saved, run_config)
    positions = training_positions(view.pair_ids, training)
    pairs = workspace.load_dataset(workspace.job(target.audit_job_id).dataset_id).pairs.set_index("pair_id")
    chosen, rejected = (pairs.loc[view.pair_ids, side].astype(str).tolist() for side in ("chosen", "rejected"))
    deltas = delta_matrix(concepts, view.delta_array, len(view.pair_ids))
    table = compare_prevalence(base, tuned, concepts, saes)
    for column, predicted in every_prediction(deltas, positions, chosen, rejected, config.seed).items():
        table[column] = predicted
    extra = pd.DataFrame(
        [{k: c[k] for k in ("concept_id", "kind", "q_value", "effect_size", "decided", "group")} for c in concepts]
    )
    table = table.merge(extra, on="concept_id", how="left")
    base_values, tuned_values = (np.column_stack([concept_values(g, c, saes) for c in concepts]) for g in (base, tuned))
    values = PromptValues(base_values, tuned_values, word_counts(base.responses), word_counts(tuned.responses))
    partial = values.without_length()
    table["shift_without_length"] = realised_shifts(partial.base, partial.tuned)
    summary = prediction_summary(table, values, view.report.fdr_threshold, config.seed)
    summary.update(training_pairs=int(len(positions[0])), control=saved.plan.control)
    return table, summary


def checkpoint_section(
    workspace, models, target, config, base: Generations, shifts: pd.DataFrame, saes, layer: int, progress
) -> pd.DataFrame | None:
    """The suppressed concepts' shift against the base model at every saved checkpoint of the run,
    then the final model (None when nothing is suppressed, no checkpoint was kept, or the
    evaluation settings skip checkpoints)."""
    suppressed = shifts[shifts["action"] == "suppress"]
    checkpoints = run_checkpoints(workspace, target) if config.every_checkpoint and len(suppressed) else []
    final_step = int(target.run_config.get("max_steps", 0)) * int(target.run_config.get("rounds", 1))
    checkpoints = [c for c in checkpoints if c[1] < final_step]  # the last one is the final model
    if not checkpoints:
        return None
    concepts = plan_concepts(workspace, target)
    concepts = [c for c in concepts if c["action"] == "suppress"]
    columns = ["concept_id", "label", "shift", "shift_low", "shift_high", "difference", "rose"]
    frames = []
    for position, (label, step, path) in enumerate(checkpoints):
        policy = models.at_checkpoint(path, config)
        generations = generations_section(
            models, policy, config, base.prompts, saes, layer, progress, stage=f"generations at {label}"
        )
        del policy
        table = compare_prevalence(base, generations, concepts, saes)[columns]
        frames.append(table.assign(position=position, checkpoint=label, step=step))
    final = suppressed[columns].assign(position=len(checkpoints), checkpoint="final", step=final_step)
    frames.append(final)
    return pd.concat(frames, ignore_index=True)
