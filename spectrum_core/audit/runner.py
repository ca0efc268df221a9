"""Run an audit inside a workspace: reuse a finished one, record the job, keep artifacts.

The audit's folder is keyed by a hash of the dataset and the configuration, so asking for the
same audit again returns the first result. Activations have their own key (dataset, model,
layer, tokenization), so audits that differ only in SAE or statistics settings share them, and
an interrupted extraction resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from ..models import pick_device, pick_dtype
from ..jobs import recording
from ..progress import ProgressLog, combine
from ..workspace import Workspace, artifact_key
from ..workspace.workspace import utc_now
from .pipeline import AuditConfig, load_concepts, run_audit


@dataclass
class AuditOutcome:
    folder: Path
    concepts: pd.DataFrame
    report: dict
    reused: bool
    job_id: int | None
    artifact_key: str


def resolve_dataset(workspace: Workspace, dataset: str | int) -> dict:
    """A dataset id already in the workspace, or a file to add (reusing an earlier load)."""
    text = str(dataset)
    if text.isdigit() and not Path(text).exists():
        return workspace.dataset(int(text))
    return workspace.add_dataset(Path(text))


def resolved_config(config: AuditConfig) -> AuditConfig:
    """Pin the dtype the hardware choice would give, so it is part of the artifact key."""
    device = pick_device(config.device)
    dtype = str(pick_dtype(device, config.dtype)).removeprefix("torch.")
    return replace(config, dtype=dtype)


def audit_key(record: dict, config: AuditConfig) -> tuple[str, dict]:
    inputs = {"dataset": record["artifact_key"], "config": config.identity()}
    return artifact_key("audit", inputs), inputs


def activations_key(record: dict, config: AuditConfig) -> tuple[str, dict]:
    inputs = {"dataset": record["artifact_key"], "model": config.model, "dtype": config.dtype,
              "max_pairs": config.max_pairs, "seed": config.seed,
              "activation": asdict(config.activation_config())}
    return artifact_key("activations", inputs), inputs


def distributed_state():
    """accelerate's process state when launched as several processes (``accelerate launch``,
    ``torchrun``), else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import PartialState

    # Without GPUs, accelerate forms a multi-process group only when told the processes are CPU ones.
    state = PartialState(cpu=not torch.cuda.is_available())
    if state.device.type == "cpu":
        # Processes sharing one CPU: split its cores instead of oversubscribing them (bf16 kernels
        # slow down several-fold when threads outnumber cores).
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // state.num_processes))
    return state


def run_audit_in_workspace(workspace: Workspace, dataset: str | int, config: AuditConfig, *,
                           progress=None, force: bool = False, job_id: int | None = None,
                           log=print) -> AuditOutcome | None:
    """Run (or reuse) an audit. Under several processes every process extracts its share of the
    activation shards; the main process does the rest and is the only one that writes to the
    database, and the others return None."""
    state = distributed_state()
    if state is not None:
        with state.main_process_first():  # the main process adds the dataset; the rest reuse it
            record = resolve_dataset(workspace, dataset)
        if state.device.type == "cuda":
            config = replace(config, device=str(state.device))
        if not state.is_main_process:
            config = resolved_config(config)
            key, _ = audit_key(record, config)
            if workspace.find_artifact(key) is None or force:
                act_key, _ = activations_key(record, config)
                pairs = workspace.load_dataset(record["id"]).pairs
                run_audit(pairs, config, workspace.staging_path(key),
                          activations_dir=workspace.artifact_path(act_key), log=log,
                          distributed=state)
            return None
    else:
        record = resolve_dataset(workspace, dataset)
    config = resolved_config(config)
    key, inputs = audit_key(record, config)
    existing = workspace.find_artifact(key)
    if existing is not None and not force:
        if job_id is not None:
            workspace.update_job(job_id, status="succeeded", artifact_key=key, finished_at=utc_now())
        report = json.loads((existing / "report.json").read_text())
        return AuditOutcome(existing, load_concepts(existing), report, True, job_id, key)

    if job_id is None:
        job_id = workspace.create_job("audit", inputs, dataset_id=record["id"])
    act_key, act_inputs = activations_key(record, config)
    staging = workspace.staging_path(key)
    with recording(workspace, job_id) as progress_path:
        pairs = workspace.load_dataset(record["id"]).pairs
        result = run_audit(pairs, config, staging, activations_dir=workspace.artifact_path(act_key),
                           progress=combine(progress, ProgressLog(progress_path)), log=log,
                           distributed=state)
    workspace.register_artifact(act_key, "activations", act_inputs)
    if existing is not None:  # --force: the new result replaces the old one
        shutil.rmtree(existing)
    folder = workspace.publish_artifact(staging, key, "audit", inputs)
    workspace.update_job(job_id, status="succeeded", artifact_key=key, finished_at=utc_now())
    return AuditOutcome(folder, result.concepts, result.report, False, job_id, key)


def audit_cli_args(dataset_id: int, config: AuditConfig) -> list[str]:
    """The `spectrum audit` arguments that reproduce ``config`` (the app's jobs run these)."""
    defaults = AuditConfig()
    args = ["audit", str(dataset_id)]
    options = {"model": "--model", "layer": "--layer", "sae": "--sae", "max_pairs": "--max-pairs",
               "pooling": "--pooling", "correction": "--correction", "seed": "--seed",
               "device": "--device", "dtype": "--dtype", "sae_width": "--width", "sae_k": "--k",
               "sae_training_tokens": "--training-tokens", "max_prompt_tokens": "--max-prompt-tokens",
               "max_response_tokens": "--max-response-tokens"}
    for name, flag in options.items():
        value = getattr(config, name)
        if value is not None and value != getattr(defaults, name):
            args += [flag, str(value)]
    if tuple(config.modes) != tuple(defaults.modes):
        args += ["--modes", ",".join(config.modes)]
    return args
