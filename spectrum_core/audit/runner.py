"""The audit as a stage: dataset + configuration → ``audit-<hash>/``.

Activations have their own key (dataset, model, layer, tokenization), so audits that differ only
in SAE or statistics settings share them, and an interrupted extraction resumes where it stopped.
Both keys also name what else changes the numbers: the library versions, this package's code
and, for the audit, the labeller (a configured endpoint's model and URL, never its key).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import cast

import pandas as pd

from ..artifacts import AuditArtifact
from ..models import pick_device, pick_dtype
from ..progress import Progress
from ..stages import JobLinks, Stage, StageContext, run_stage
from ..workspace import Workspace, artifact_key
from ..workspace.artifacts import library_versions, source_digest
from .config import Dtype
from .labelling.llm_client import LLMEndpoint
from .pipeline import AuditConfig, run_audit
from .report import AuditReport


@dataclass
class AuditOutcome:
    folder: Path
    concepts: pd.DataFrame
    report: AuditReport
    reused: bool
    job_id: int | None
    artifact_key: str


def resolve_dataset(workspace: Workspace, dataset: str | int | Path) -> dict:
    """A dataset id already in the workspace, or a file to add (reusing an earlier load)."""
    text = str(dataset)
    if text.isdigit() and not Path(text).exists():
        return workspace.dataset(int(text))
    return workspace.add_dataset(Path(text))


PACKAGE = Path(__file__).resolve().parent.parent
# The libraries whose versions change an audit's numbers (kernels, tokenizers, solvers, SAE code).
NUMERIC_LIBRARIES = ("torch", "transformers", "tokenizers", "sae-lens", "scikit-learn", "scipy", "numpy")


def made_by(*code: str) -> dict:
    """What besides the settings makes a result: the library versions and the code under ``code``
    (paths inside this package)."""
    return {"versions": library_versions(NUMERIC_LIBRARIES), "code": source_digest(*(PACKAGE / c for c in code))}


def labeller_identity(config: AuditConfig) -> dict | None:
    """Who writes the LLM labels: the local model (``--labeller``), else the endpoint from the
    environment (its model and its URL without credentials or query), else nobody (None)."""
    if not config.llm_labelled_concepts:
        return None
    if config.labeller:
        return {"local": config.labeller}
    endpoint = LLMEndpoint.from_env()
    return {"endpoint": endpoint.display_url, "model": endpoint.model} if endpoint else None


def resolved_config(config: AuditConfig) -> AuditConfig:
    """Pin the dtype the hardware choice would give, so it is part of the artifact key."""
    dtype = str(pick_dtype(pick_device(config.device), config.dtype)).removeprefix("torch.")
    return replace(config, dtype=cast(Dtype, dtype))  # pick_dtype gives one of Dtype's names


class AuditStage(Stage):
    kind = "audit"
    progress_interval = 0.5
    record_reuse = False  # the same audit again is the same audit: decisions attach to the job that made it

    def __init__(self, dataset: str | int | Path, config: AuditConfig):
        self.dataset, self.config = dataset, config
        self.record: dict = {}

    def prepare(self, workspace: Workspace) -> None:
        self.record = resolve_dataset(workspace, self.dataset)
        self.config = resolved_config(self.config)

    def inputs(self, workspace: Workspace) -> dict:
        return {
            "dataset": self.record["artifact_key"],
            "config": self.config.identity(),
            "labeller": labeller_identity(self.config),
            "made_by": made_by("audit", "models.py"),
        }

    def activations_key(self) -> tuple[str, dict]:
        config = self.config
        inputs = {
            "dataset": self.record["artifact_key"],
            "model": config.model,
            "dtype": config.dtype,
            "max_pairs": config.max_pairs,
            "seed": config.seed,
            "activation": asdict(config.activation_config()),
            "made_by": made_by("audit/extract", "models.py"),
        }
        return artifact_key("activations", inputs), inputs

    def links(self, workspace: Workspace) -> JobLinks:
        return JobLinks(dataset_id=self.record["id"])

    def run(self, context: StageContext) -> None:
        workspace, config = context.workspace, self.config
        if context.state is not None and context.state.device.type == "cuda":
            config = replace(config, device=str(context.state.device))
        act_key, act_inputs = self.activations_key()
        pairs = workspace.load_dataset(self.record["id"]).pairs
        run_audit(
            pairs,
            config,
            context.staging,
            activations_dir=workspace.artifact_path(act_key),
            progress=context.progress,
            distributed=context.state,
        )
        if context.is_main:
            workspace.register_artifact(act_key, "activations", act_inputs)


def run_audit_in_workspace(
    workspace: Workspace,
    dataset: str | int | Path,
    config: AuditConfig,
    *,
    progress: Progress | None = None,
    force: bool = False,
    job_id: int | None = None,
) -> AuditOutcome | None:
    """Run (or reuse) an audit; None in the helper processes of a multi-process run."""
    outcome = run_stage(workspace, AuditStage(dataset, config), job_id=job_id, progress=progress, force=force)
    if outcome is None:
        return None
    artifact = AuditArtifact(outcome.folder)
    return AuditOutcome(
        outcome.folder, artifact.concepts(), artifact.report, outcome.reused, outcome.job_id, outcome.key
    )
