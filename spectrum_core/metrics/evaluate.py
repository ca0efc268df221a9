"""An evaluation as a job: the base model or a tuned run → every metric → artifact ``eval-<hash>/``.

The artifact is keyed by the model (spec, and the run's adapter artifact), the evaluation settings
and the audit whose SAE reads the generations, so asking again for the same evaluation reuses it.
A tuned run's evaluation first makes (or reuses) the base model's evaluation with the same
settings: concept prevalence and the reward's win rate compare the two on the same prompts.

Artifact contents: ``report.json`` (ids, settings, every summary, runtimes), ``steerability.parquet``
(one row per output), ``alignment.parquet`` (one row per item and group), ``coverage.parquet`` (one
row per prompt, with its samples), ``generations/`` (responses to held-out prompts of the audited
dataset and their encoding at the audit's layer), ``prevalence.parquet`` (tuned runs: the plan's
decided concepts, base vs tuned), ``faithfulness.parquet`` (one row per checkpoint).
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from copy import deepcopy
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from ..models import load_model
from ..jobs import job_dir, recording
from ..progress import ProgressLog, combine
from ..workspace import Workspace
from ..workspace.artifacts import artifact_key
from ..workspace.workspace import utc_now
from . import alignment, steerability
from .config import EvalConfig
from .coverage import coverage_metrics
from .diversity import diversity_metrics
from .errors import EvaluationError
from .faithfulness import faithfulness_metrics
from ..sampling import sample_responses
from .preference import implicit_reward_accuracy, reward_comparison
from .prevalence import Generations, compare_prevalence, encode_generations, held_out_prompts

BASE = "base"
# Part of every evaluation's key: raise it when a metric's definition changes, so evaluations made
# by the old definition are not reused for the new one.
METRICS_VERSION = 1


@dataclass
class EvalTarget:
    """What is evaluated: the base model, or a finished tuning run (its adapter or full model)."""

    model: str
    audit_job_id: int | None
    tune_job_id: int | None = None
    tune_artifact: str | None = None
    run: dict = field(default_factory=dict)  # the run's run.json
    run_config: dict = field(default_factory=dict)  # the run's config.yaml

    @property
    def is_base(self) -> bool:
        return self.tune_job_id is None

    @property
    def name(self) -> str:
        return BASE if self.is_base else f"run {self.tune_job_id} ({self.run.get('method', '?')})"


def resolve_target(workspace: Workspace, run: str | int, audit_job_id: int | None = None,
                   model: str | None = None) -> EvalTarget:
    """``run`` is "base" or a finished tuning job's id; the base model is the audit's model."""
    if str(run) == BASE:
        if model is None and audit_job_id is not None:  # the model the audit read the data with
            audit = workspace.job(audit_job_id)
            folder = workspace.find_artifact(audit["artifact_key"]) if audit["artifact_key"] else None
            if folder is None:
                raise EvaluationError(f"audit {audit_job_id} has not finished; evaluate against a finished audit")
            model = str(json.loads((folder / "report.json").read_text())["config"]["model"])
        return EvalTarget(model=model or "bundled", audit_job_id=audit_job_id)
    try:
        job = workspace.job(int(run))
    except (KeyError, ValueError) as exc:
        raise EvaluationError(f"no tuning job {run!r} in {workspace.root}") from exc
    if job["kind"] != "tune" or job["status"] != "succeeded" or not job["artifact_key"]:
        raise EvaluationError(f"job {run} is a {job['status']} {job['kind']} job; evaluate a finished tuning run")
    folder = workspace.find_artifact(job["artifact_key"])
    if folder is None:
        raise EvaluationError(f"tuning job {run}: its artifact {job['artifact_key']} is missing")
    meta = json.loads((folder / "run.json").read_text())
    return EvalTarget(model=meta["model"], audit_job_id=meta.get("audit_job_id"), tune_job_id=int(run),
                      tune_artifact=job["artifact_key"], run=meta,
                      run_config=yaml.safe_load((folder / "config.yaml").read_text()))


def eval_key(workspace: Workspace, target: EvalTarget, config: EvalConfig) -> tuple[str, dict]:
    audit = workspace.job(target.audit_job_id)["artifact_key"] if target.audit_job_id else None
    inputs = {"model": target.model, "tune_artifact": target.tune_artifact, "audit": audit,
              "config": config.identity(), "metrics_version": METRICS_VERSION}
    return artifact_key("eval", inputs), inputs


def find_evaluation(workspace: Workspace, run: str | int, config: EvalConfig,
                    audit_job_id: int | None = None) -> Path | None:
    target = resolve_target(workspace, run, audit_job_id)
    return workspace.find_artifact(eval_key(workspace, target, config)[0])


# ------------------------------------------------------------------------------------ models
@dataclass
class EvalModels:
    loaded: object  # the base model, untouched: it reads concepts, encodes for the reward, is the DPO reference
    policy: object  # the model whose behaviour is measured (a run's adapter merged into its own copy)

    def with_adapter(self, folder: Path):
        """A copy of the base model with a peft adapter merged in (merged weights sample about
        1.2x as fast as LoRA layers on a CPU; the base model stays as it is)."""
        from peft import PeftModel

        copy = deepcopy(self.loaded.model)
        return PeftModel.from_pretrained(copy, str(folder), is_trainable=False).merge_and_unload().eval()


def load_models(workspace: Workspace, target: EvalTarget, config: EvalConfig) -> EvalModels:
    loaded = load_model(target.model, device=config.device, dtype=config.dtype, progress=lambda m: None)
    models = EvalModels(loaded, loaded.model)
    if target.is_base:
        return models
    folder = workspace.find_artifact(target.tune_artifact)
    if (folder / "adapter").exists():
        models.policy = models.with_adapter(folder / "adapter")
    else:
        models.policy = load_model(str(folder / "model"), device=config.device, dtype=config.dtype,
                                   progress=lambda m: None).model.eval()
    return models


def reset_checkpoints(workspace: Workspace, target: EvalTarget) -> list[tuple[str, Path]]:
    """(label, folder) of a ReSet run's saved adapter checkpoints, in training order."""
    root = job_dir(workspace, target.tune_job_id) / "checkpoints"
    found = []
    for path in root.glob("round-*/checkpoint-*"):
        if (path / "adapter_model.safetensors").exists():
            round_index, step = int(path.parent.name.split("-")[1]), int(path.name.split("-")[1])
            found.append(((round_index, step), f"round {round_index + 1} step {step}", path))
    return [(label, path) for _, label, path in sorted(found)]


# ------------------------------------------------------------------------------------ sections
def _steerability(models, tokenizer, config, progress):
    from ..tuning.spectrum_format import build_mixture

    tasks = build_mixture(tuple(config.family_list()), config.steer_tasks_per_family, config.steer_samples,
                          config.seed, split="eval")
    if not tasks:
        return {}, pd.DataFrame()
    losses, calibration = steerability.output_losses(
        models.policy, tokenizer, tasks, config.max_length, max(1, config.batch_size // 2),
        on_batch=lambda d, t: progress("steerability", d, t, unit="tasks"))
    return steerability.summarise(losses, calibration), losses


def _coverage(models, tokenizer, config, progress):
    from ..tuning.spectrum_format import diffuse_rows

    rows = diffuse_rows("eval")[:config.coverage_prompts]
    records = []
    for index, (request, targets) in enumerate(rows):
        samples = sample_responses(models.policy, tokenizer, [[{"role": "user", "content": request}]],
                                   n=config.coverage_samples, temperature=config.coverage_temperature,
                                   max_new_tokens=config.coverage_max_new_tokens,
                                   batch_size=max(config.batch_size, 50), seed=config.seed + index)[0]
        records.append({"prompt": request, "valid_set_size": len(set(targets)), **coverage_metrics(samples, targets),
                        **diversity_metrics(samples), "samples": samples})
        progress("coverage", index + 1, len(rows), unit="prompts")
    table = pd.DataFrame(records)
    means = ("valid_share", "yield", "coverage", "uniqueness", "distinct_1", "distinct_2", "embedding_diversity")
    summary = {k: float(table[k].mean()) for k in means} if len(table) else {}
    if len(table):
        summary["prompts"] = len(table)
    return summary, table


def _alignment(models, tokenizer, config, progress):
    from ..tuning.spectrum_format import ambient_rows, polis_rows
    import random

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


def _generations(models, config, messages: list[list[dict]], saes, layer: int, progress) -> Generations:
    responses = sample_responses(models.policy, models.loaded.tokenizer, messages,
                                 temperature=config.prevalence_temperature,
                                 max_new_tokens=config.prevalence_max_new_tokens, batch_size=config.batch_size,
                                 seed=config.seed,
                                 on_batch=lambda d, t: progress("generations", d, t, unit="responses"))
    return encode_generations(models.loaded, saes, layer, messages, [r[0] for r in responses], progress)


def plan_concepts(workspace: Workspace, target: EvalTarget) -> list[dict]:
    """The decided concepts: the run's plan for a tuned run, the audit's current decisions for the base."""
    if not target.is_base:
        from ..interventions import load_plan

        return [{"concept_id": c.concept_id, "label": c.label, "action": c.action}
                for c in load_plan(workspace, target.run["plan_id"]).plan.concepts]
    if target.audit_job_id is None:
        return []
    labels = workspace.labels(target.audit_job_id)
    return [{"concept_id": cid, "label": labels.get(cid, cid), "action": d["action"]}
            for cid, d in workspace.current_decisions(target.audit_job_id).items()]


def _reward(workspace, models, target, config, base_generations, tuned_generations, progress) -> dict:
    """The shaped reward of the run's plan: the ReSet run's own, else one fitted here (cached)."""
    from ..interventions import load_plan
    from ..reward import RewardConfig, ShapedReward, fit_shaped_reward
    from ..reward.shaped import save_report

    saved = load_plan(workspace, target.run["plan_id"])
    audit_folder = workspace.find_artifact(saved.plan.audit_artifact)
    run_folder = workspace.find_artifact(target.tune_artifact)
    source = "the run's reward"
    if (run_folder / "reward" / "reward.npz").exists():
        reward = ShapedReward.load(run_folder / "reward", models.loaded, audit_folder)
    else:
        key = artifact_key("reward", {"plan": saved.plan.plan_hash, "pairs": config.reward_pairs,
                                      "seed": config.seed})
        folder = workspace.find_artifact(key)
        source = f"fitted on {config.reward_pairs} train pairs of the plan"
        if folder is None:
            dataset = workspace.load_dataset(saved.plan.dataset_id)
            reward, report = fit_shaped_reward(
                models.loaded, audit_folder, saved.plan, dataset.pairs, saved.shaping(),
                RewardConfig(max_train_pairs=config.reward_pairs,
                             max_held_out_pairs=max(20, config.reward_pairs // 4), seed=config.seed),
                progress=progress)
            staging = workspace.staging_path(key)
            reward.save(staging)
            save_report(report, staging / "report.json")
            workspace.publish_artifact(staging, key, "reward", {"plan": saved.plan.plan_hash})
        else:
            reward = ShapedReward.load(folder, models.loaded, audit_folder)
    base_scores = reward.score(base_generations.prompts, base_generations.responses)
    tuned_scores = reward.score(tuned_generations.prompts, tuned_generations.responses)
    return {**reward_comparison(base_scores, tuned_scores), "reward": source}


def _preference(workspace, models, target, config) -> dict | None:
    if target.run.get("method") != "dpo":
        return None
    from ..interventions import load_plan

    frame = pd.read_parquet(load_plan(workspace, target.run["plan_id"]).parquet)
    held = frame[frame["split"] != "train"]
    held = held.sample(n=min(config.preference_pairs, len(held)), random_state=config.seed)
    pairs = [{"prompt": list(r.prompt), "chosen": r.chosen[-1]["content"], "rejected": r.rejected[-1]["content"]}
             for r in held.itertuples()]
    beta = float(target.run_config.get("beta", 0.1))
    return implicit_reward_accuracy(models.policy, models.loaded.model, models.loaded.tokenizer, pairs, beta,
                                    max_length=int(target.run_config.get("max_length", 512)),
                                    batch_size=max(1, config.batch_size // 2))


def _faithfulness(workspace, models, target, config, progress) -> pd.DataFrame:
    points = [("final" if not target.is_base else "base", None)]
    if target.run.get("method") == "reset" and config.every_checkpoint:
        points = reset_checkpoints(workspace, target) + points
    rows = []
    for index, (label, path) in enumerate(points):
        model = models.with_adapter(path) if path is not None else models.policy
        metrics = faithfulness_metrics(model, models.loaded.tokenizer, config.grounded_questions,
                                       config.constraint_prompts, config.seed, config.answer_max_new_tokens,
                                       config.batch_size)
        del model
        rows.append({"checkpoint": label, **metrics})
        progress("faithfulness", index + 1, len(points), unit="checkpoints")
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------ the job
def write_job_config(folder: Path, runs: list[str], audit_job_id: int | None, config: EvalConfig) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"runs": runs, "audit_job_id": audit_job_id,
                                                        "evaluation": asdict(config)}, sort_keys=False))


def run_evaluation(workspace: Workspace, run: str | int, config: EvalConfig, *, audit_job_id: int | None = None,
                   job_id: int | None = None, progress=None) -> Path:
    """Evaluate the base model or a tuning run (reusing a finished identical evaluation); returns
    the artifact folder."""
    target = resolve_target(workspace, run, audit_job_id)
    key, inputs = eval_key(workspace, target, config)
    existing = workspace.find_artifact(key)
    if job_id is None:
        job_id = workspace.create_job("eval", inputs, parent_job_id=target.tune_job_id or target.audit_job_id)
    if existing is not None:
        workspace.update_job(job_id, status="succeeded", artifact_key=key, finished_at=utc_now())
        return existing
    folder = job_dir(workspace, job_id)
    with recording(workspace, job_id) as progress_path:
        if not (folder / "config.yaml").exists():  # what `spectrum eval --resume` reads
            write_job_config(folder, [str(run)], target.audit_job_id, config)
        log = combine(progress, ProgressLog(progress_path, interval=0.0))
        base_folder = None
        if not target.is_base and target.audit_job_id is not None:
            # The base evaluation with the same settings: prevalence and win rate compare against it.
            base_folder = run_evaluation(workspace, BASE, config, audit_job_id=target.audit_job_id,
                                         progress=lambda stage, *a, **k: log(f"base {stage}", *a, **k))
        staging = workspace.staging_path(key)
        report = _evaluate(workspace, target, config, staging, base_folder, log)
        report["job_id"] = job_id
        (staging / "report.json").write_text(json.dumps(report, indent=1, default=str))
        result = workspace.publish_artifact(staging, key, "eval", inputs)
    workspace.update_job(job_id, status="succeeded", artifact_key=key, finished_at=utc_now())
    return result


def evaluate_runs(workspace: Workspace, runs: list[str], config: EvalConfig, audit_job_id: int | None,
                  job_id: int | None, progress=None) -> list[Path]:
    """Evaluate several models in turn (one ``spectrum eval`` job). With a job id, the earlier
    models log into that job's progress as ``"<run>: <stage>"``, a failure of any of them ends the
    job, and the last model's evaluation is the job itself."""
    if job_id is not None:
        write_job_config(job_dir(workspace, job_id), runs, audit_job_id, config)
    folders = []
    with (recording(workspace, job_id) if job_id is not None and len(runs) > 1 else nullcontext()) as progress_path:
        log = ProgressLog(progress_path, interval=0.0) if progress_path else None
        for run in runs[:-1]:
            prefixed = (lambda r: lambda stage, *a, **k: log(f"{r}: {stage}", *a, **k))(run) if log else None
            folders.append(run_evaluation(workspace, run, config, audit_job_id=audit_job_id,
                                          progress=combine(progress, prefixed)))
    folders.append(run_evaluation(workspace, runs[-1], config, audit_job_id=audit_job_id, job_id=job_id,
                                  progress=progress))
    return folders


def _evaluate(workspace, target, config, staging: Path, base_folder: Path | None, progress) -> dict:
    models = load_models(workspace, target, config)
    tokenizer = models.loaded.tokenizer
    runtime: dict[str, float] = {}
    report = {"target": target.name, "model": target.model, "tune_job_id": target.tune_job_id,
              "tune_artifact": target.tune_artifact, "method": target.run.get("method"),
              "plan_id": target.run.get("plan_id"), "plan_hash": target.run.get("plan_hash"),
              "audit_job_id": target.audit_job_id, "dataset_id": target.run.get("dataset_id"),
              "run_config": target.run_config, "evaluation": asdict(config), "created_at": utc_now(),
              "device": models.loaded.device, "dtype": str(models.loaded.dtype)}

    def timed(name, fn):
        started = time.perf_counter()
        value = fn()
        runtime[name] = round(time.perf_counter() - started, 2)
        return value

    report["steerability"], losses = timed("steerability", lambda: _steerability(models, tokenizer, config, progress))
    losses.to_parquet(staging / "steerability.parquet", index=False)
    report["coverage"], coverage = timed("coverage", lambda: _coverage(models, tokenizer, config, progress))
    coverage.to_parquet(staging / "coverage.parquet", index=False)
    report["alignment"], aligned = timed("alignment", lambda: _alignment(models, tokenizer, config, progress))
    aligned.to_parquet(staging / "alignment.parquet", index=False)
    faithful = timed("faithfulness", lambda: _faithfulness(workspace, models, target, config, progress))
    faithful.to_parquet(staging / "faithfulness.parquet", index=False)
    report["faithfulness"] = faithful.to_dict("records")
    report["preference"] = timed("preference", lambda: _preference(workspace, models, target, config))
    if target.audit_job_id is not None:
        report.update(_closed_loop(workspace, models, target, config, staging, base_folder, timed, progress))
    report["runtime_seconds"] = runtime
    return report


def _closed_loop(workspace, models, target, config, staging: Path, base_folder: Path | None, timed,
                 progress) -> dict:
    """Generations on held-out prompts of the audited dataset, read through the audit's layer and
    SAE: their diversity, the decided concepts' prevalence (against the base model's generations on
    the same prompts) and the shaped reward's win rate."""
    from ..reward.shaped import load_audit_saes

    audit = workspace.job(target.audit_job_id)
    audit_folder = workspace.find_artifact(audit["artifact_key"])
    sections: dict = {"audit_artifact": audit_folder.name}
    prompts = held_out_prompts(workspace.load_dataset(audit["dataset_id"]).pairs, config.prevalence_prompts,
                               config.seed)
    if prompts.empty:
        sections["prevalence"] = {"skipped": "the audited dataset has no held-out prompts"}
        return sections
    saes = load_audit_saes(audit_folder)
    layer = int(json.loads((audit_folder / "report.json").read_text())["layer"])
    messages = [list(p) for p in prompts["prompt"]]
    generations = timed("generations", lambda: _generations(models, config, messages, saes, layer, progress))
    generations.save(staging / "generations")
    sections["diversity"] = timed("diversity", lambda: diversity_metrics(generations.responses))
    base = Generations.load(base_folder / "generations") if base_folder is not None else None
    concepts = plan_concepts(workspace, target)
    if concepts:
        table = compare_prevalence(base or generations, generations if base is not None else None, concepts, saes)
        table.to_parquet(staging / "prevalence.parquet", index=False)
        sections["prevalence"] = {"concepts": len(table), "compared": base is not None,
                                  "flagged": table.loc[table["flagged"], "concept_id"].tolist()
                                  if "flagged" in table else []}
    if base is not None:
        sections["reward"] = timed("reward", lambda: _reward(workspace, models, target, config, base,
                                                             generations, progress))
    return sections
