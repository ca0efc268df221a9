"""Scoring the pairs a sampled audit did not see, for some of its concepts (``spectrum score``).

An audit of a sample (``max_pairs``) measures its concepts on the sample only, so a decision on
them could act on those pairs only. This stage measures the decided concepts on the rest of the
dataset exactly as the audit measured them on its own pairs:

- activations by the audit's extraction (its model, dtype, layer and ``ActivationConfig``), into
  the job's own folder, shard by shard, so a stopped job resumes from its last finished shard;
- token-mode concepts: every response token through the audit's saved SAE (a TopK SAE needs all
  latents to pick its top k), pooled as the audit pools (``config.pooling``), the decided
  latents' columns kept;
- difference-mode concepts: the pooled residual differences through the audit's difference SAE;
- probes: from the texts, lengths in the model's tokens (as the audit);
- a family or head: the weighted sum of its members (``AuditView.family_members``).

The artifact (``score-<hash>/``, keyed by the audit, the dataset, the concepts and this code) is
read by ``audit/scores.py``; the interventions use it so a plan covers every pair.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from .. import constants as names
from ..artifacts import AuditArtifact
from ..errors import UsageError
from ..models import LoadedModel, load_model
from ..progress import Progress
from ..settings import from_dict, plain, settings_of
from ..stages import JobLinks, Stage, StageContext, StageOutcome, run_stage
from ..workspace import Workspace
from .config import AuditConfig, ScoringConfig
from .extract.activations import ActivationStore, extract_activations, response_token_counts
from .extract.features import encode_differences, encode_responses, pooled_residuals
from .probes import compute_probes
from .responses import response_texts, split_sides
from .review import AuditView
from .runner import made_by
from .scores import SCORING_KIND, concept_members, concept_view

MODES = ("token", "difference", "probe")  # the single concepts' id prefixes, in the order scored


def audit_config(folder: Path) -> AuditConfig:
    """The audit's settings as its report recorded them (settings added since keep their defaults)."""
    recorded = AuditArtifact(folder).report.config
    known = {item.name for item in settings_of(AuditConfig)}
    return from_dict(AuditConfig, {k: v for k, v in recorded.items() if k in known})


def _leaves_by_mode(members: dict[str, dict[str, float]]) -> dict[str, list[str]]:
    """The single concepts to measure, by mode (``token:12`` → token), each list sorted."""
    leaves = sorted({leaf for parts in members.values() for leaf in parts})
    by_mode: dict[str, list[str]] = {mode: [] for mode in MODES}
    for leaf in leaves:
        mode = leaf.partition(":")[0]
        if mode not in by_mode:
            raise UsageError(f"cannot score {leaf}: only {', '.join(MODES)} concepts and their families can be scored")
        by_mode[mode].append(leaf)
    return by_mode


def _columns(leaves: list[str]) -> np.ndarray:
    return np.array([int(leaf.partition(":")[2]) for leaf in leaves], dtype=np.int64)


def _load_sae(folder: Path, device: str):
    from sae_lens import SAE

    return SAE.load_from_disk(str(folder), device=device)


def _token_values(store: ActivationStore, audit_folder: Path, leaves: list[str], pooling: str, device: str, progress):
    """Pooled token-SAE activations (pairs × leaves, chosen and rejected), as the audit's features step."""
    sae = _load_sae(audit_folder / names.TOKEN_SAE_DIR, device)
    chosen, rejected = encode_responses(store, sae, poolings=(pooling,), progress=progress).pooled(pooling)
    columns = _columns(leaves)
    return chosen[:, columns].toarray(), rejected[:, columns].toarray()


def _difference_values(store: ActivationStore, audit_folder: Path, leaves: list[str], device: str):
    """z(d) and z(−d) of the pooled residual differences, as the audit's difference step."""
    sae = _load_sae(audit_folder / names.DIFFERENCE_SAE_DIR, device)
    chosen, rejected = encode_differences(pooled_residuals(store), sae)
    columns = _columns(leaves)
    return chosen[:, columns].toarray(), rejected[:, columns].toarray()


def _probe_values(pairs: pd.DataFrame, tokenizer, leaves: list[str], progress):
    """The probes from the texts, lengths in the model's tokens (as the audit's probes step)."""
    if progress:
        progress("probes", 0, 1, unit="steps")
    counts = response_token_counts(tokenizer, response_texts(pairs)).astype(float)
    chosen_len, rejected_len = split_sides(counts)
    wanted = [leaf.partition(":")[2] for leaf in leaves]
    chosen = compute_probes(list(pairs["chosen"]), chosen_len)[wanted].to_numpy(np.float32)
    rejected = compute_probes(list(pairs["rejected"]), rejected_len)[wanted].to_numpy(np.float32)
    if progress:
        progress("probes", 1, 1, unit="steps")
    return chosen, rejected


def _long_form(pair_ids: np.ndarray, chosen: np.ndarray, rejected: np.ndarray, concept_ids: list[str]) -> pd.DataFrame:
    """The nonzero (pair, concept) cells in ``pair_features.parquet``'s long form."""
    rows, cols = np.nonzero((chosen != 0) | (rejected != 0))
    c, r = chosen[rows, cols].astype(np.float32), rejected[rows, cols].astype(np.float32)
    return pd.DataFrame(
        {
            "pair_id": pair_ids[rows].astype(str),
            "concept_id": np.asarray(concept_ids, dtype=object)[cols],
            "chosen": c,
            "rejected": r,
            "delta": c - r,
        }
    )


def _with_composites(
    chosen: np.ndarray, rejected: np.ndarray, leaves: list[str], members: dict[str, dict[str, float]]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The leaves' columns, then one per family or head asked for: the weighted sum of its members."""
    composites = [c for c in sorted(members) if c not in leaves]
    weights = np.zeros((len(leaves), len(composites)))
    index = {leaf: i for i, leaf in enumerate(leaves)}
    for j, composite in enumerate(composites):
        for leaf, weight in members[composite].items():
            weights[index[leaf], j] = weight
    return (
        np.hstack([chosen, chosen @ weights]),
        np.hstack([rejected, rejected @ weights]),
        leaves + composites,
    )


def score_pairs(
    pairs: pd.DataFrame,
    audit_folder: Path,
    members: dict[str, dict[str, float]],
    work_dir: Path,
    *,
    device: str | None = None,
    loaded: LoadedModel | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """``pairs`` measured for each concept of ``members`` (concept -> its single concepts and their
    weights, see ``scores.concept_members``) by the audit in ``audit_folder``, activations under
    ``work_dir`` (resumed if there); the long form of ``pair_features.parquet``."""
    audit_folder = Path(audit_folder)
    config, report = audit_config(audit_folder), AuditArtifact(audit_folder).report
    by_mode = _leaves_by_mode(members)
    loaded = loaded or load_model(config.model, device=device or config.device, dtype=config.dtype)
    store = None
    if by_mode["token"] or by_mode["difference"]:
        activation = replace(config.activation_config(), layer=report.layer)
        store = extract_activations(loaded, pairs, Path(work_dir), activation, progress)
    values = []
    if by_mode["token"]:
        assert store is not None
        values.append(_token_values(store, audit_folder, by_mode["token"], config.pooling, loaded.device, progress))
    if by_mode["difference"]:
        assert store is not None
        values.append(_difference_values(store, audit_folder, by_mode["difference"], loaded.device))
    if by_mode["probe"]:
        values.append(_probe_values(pairs, loaded.tokenizer, by_mode["probe"], progress))
    leaves = [leaf for mode in MODES for leaf in by_mode[mode]]
    chosen = np.hstack([v[0] for v in values]).astype(np.float64)
    rejected = np.hstack([v[1] for v in values]).astype(np.float64)
    chosen, rejected, concept_ids = _with_composites(chosen, rejected, leaves, members)
    return _long_form(pairs["pair_id"].to_numpy(), chosen, rejected, concept_ids)


def write_scores(folder: Path, pair_ids: Sequence[str], features: pd.DataFrame, manifest: dict) -> None:
    """The scoring artifact: the long table, every scored pair, and the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    features.to_parquet(folder / names.PAIR_FEATURES_FILE, index=False)
    pd.DataFrame({"pair_id": pd.Series(list(pair_ids), dtype=str)}).to_parquet(
        folder / names.SCORED_PAIRS_FILE, index=False
    )
    (folder / names.SCORES_MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))


class ScoringStage(Stage):
    """The decided concepts of an audit scored on the dataset's pairs it did not see."""

    kind = SCORING_KIND
    progress_interval = 0.5

    def __init__(self, config: ScoringConfig, view: AuditView | None = None):
        self.config, self.view = config, view  # ``view``: the audit already loaded (a page has it)
        self.members: dict[str, dict[str, float]] = {}
        self.audit_key = ""
        self.audit_folder = Path()
        self.audited = pd.Index([])
        self.record: dict = {}

    def prepare(self, workspace: Workspace) -> None:
        """The audit, its dataset and the concepts to score (the decided ones unless given)."""
        if self.config.audit is None:
            raise UsageError("give the audit job whose concepts are scored")
        job = workspace.job(self.config.audit)
        if job.kind != "audit" or job.status != "succeeded" or job.dataset_id is None:
            raise UsageError(f"job {self.config.audit} is not a finished audit")
        self.audit_folder = workspace.job_artifact(job.id)
        view = self.view if self.view is not None and self.view.folder == self.audit_folder else None
        view = view or concept_view(self.audit_folder)
        concepts = self.config.concepts or tuple(workspace.current_decisions(job.id))
        if not concepts:
            raise UsageError(f"audit {job.id} has no decided concepts to score; decide on some or give --concepts")
        unknown = [c for c in concepts if c not in view.concepts.index]
        if unknown:
            raise UsageError(f"audit {job.id} has no concept {', '.join(unknown)}")
        self.config = replace(self.config, concepts=tuple(sorted(set(concepts))))
        self.members = concept_members(view, self.config.concepts)
        self.audit_key, self.audited = str(job.artifact_key), view.pair_ids
        self.record = workspace.dataset(job.dataset_id)

    def inputs(self, workspace: Workspace) -> dict:
        return {
            "audit": self.audit_key,
            "dataset": self.record["artifact_key"],
            "config": self.config.identity(),
            "made_by": made_by("audit/extract", "audit/probes", "audit/scoring.py", "models.py"),
        }

    def links(self, workspace: Workspace) -> JobLinks:
        return JobLinks(dataset_id=self.record["id"], parent_job_id=self.config.audit)

    def job_config(self) -> str:
        return yaml.safe_dump(plain(self.config), sort_keys=False)

    def pairs(self, workspace: Workspace) -> pd.DataFrame:
        """The dataset's pairs to score: those the audit did not see (all, with ``include_audited``)."""
        pairs = workspace.load_dataset(self.record["id"]).pairs
        if self.config.include_audited:
            return pairs.reset_index(drop=True)
        return pairs[~pairs["pair_id"].isin(self.audited)].reset_index(drop=True)

    def run(self, context: StageContext) -> None:
        assert context.job_folder is not None, "scoring keeps its activations in its job's folder"
        pairs = self.pairs(context.workspace)
        features = (
            score_pairs(
                pairs,
                self.audit_folder,
                self.members,
                context.job_folder / names.SCORING_ACTIVATIONS_DIR,
                device=self.config.device,
                progress=context.progress,
            )
            if len(pairs)
            else _long_form(np.zeros(0, dtype=object), np.zeros((0, 0)), np.zeros((0, 0)), [])
        )
        if not context.is_main:
            return
        write_scores(context.staging, pairs["pair_id"], features, self.manifest(len(pairs)))

    def manifest(self, n_scored: int) -> dict:
        leaves = sorted({leaf for parts in self.members.values() for leaf in parts})
        return {
            "audit": self.audit_key,
            "audit_job_id": self.config.audit,
            "dataset": self.record["artifact_key"],
            "members": self.members,
            "leaves": leaves,
            "n_scored": n_scored,
            "n_audited": len(self.audited),
            "include_audited": self.config.include_audited,
        }


def run_scoring(
    workspace: Workspace,
    config: ScoringConfig,
    *,
    job_id: int | None = None,
    progress: Progress | None = None,
    view: AuditView | None = None,
) -> StageOutcome | None:
    """Score (or resume, or reuse) an audit's concepts on the pairs it did not see."""
    return run_stage(workspace, ScoringStage(config, view), job_id=job_id, progress=progress)
