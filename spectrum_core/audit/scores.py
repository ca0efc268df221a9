"""Reading a scoring job's artifact: an audit's concepts scored on the dataset's pairs it did not see.

A sampled audit (``max_pairs``) measures its concepts on the sample only. The scoring stage
(``audit/scoring.py``, ``spectrum score``) measures some of them, the decided ones, on the other
pairs with the audit's own extraction, SAEs and probes, and writes ``score-<hash>/``:
``pair_features.parquet`` (the audit's long form), ``scored_pairs.parquet`` (every scored pair)
and ``scores.json``. This module is light to import (no torch): the Interventions page and the
plan read it on every run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..artifacts import ScoresArtifact
from .review import AuditView, is_composite

if TYPE_CHECKING:
    from ..workspace import Workspace

SCORING_KIND = "score"  # the scoring stage's job and artifact kind


def concept_view(folder: Path) -> AuditView:
    """An audit's concepts and audited pairs only, without its per-pair table and cards."""
    return AuditView.load(folder, tables=False)


def concept_members(view: AuditView, concept_ids: Iterable[str]) -> dict[str, dict[str, float]]:
    """Each concept as the weighted sum of the single concepts (SAE latents, probes) it is made
    of: a family of its members, a head of its source's, any other concept of itself."""
    members = {}
    for concept_id in concept_ids:
        parts = view.family_members(concept_id) if is_composite(concept_id) else {concept_id: 1.0}
        members[concept_id] = {leaf: float(weight) for leaf, weight in parts.items()}
    return members


@dataclass
class PairScores:
    """A finished scoring: Δ (chosen − rejected) per scored pair of every concept it scored."""

    key: str
    folder: Path
    pair_ids: pd.Index  # every scored pair, in the order of ``delta_array``
    concepts: frozenset[str]  # the concepts asked for and the single concepts they are made of
    features: pd.DataFrame  # pair_id, concept_id, chosen, rejected, delta (nonzero cells)
    audit: str  # the audit artifact it scored for

    @classmethod
    def load(cls, folder: Path) -> PairScores:
        artifact = ScoresArtifact(Path(folder))
        manifest = artifact.manifest
        return cls(
            key=Path(folder).name,
            folder=Path(folder),
            pair_ids=artifact.scored_pairs(),
            concepts=frozenset(manifest["members"]) | frozenset(manifest["leaves"]),
            features=artifact.pair_features(),
            audit=manifest["audit"],
        )

    @cached_property
    def _by_concept(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Concept -> (pair positions, Δ), grouped once."""
        positions = self.pair_ids.get_indexer(self.features["pair_id"])
        deltas = self.features["delta"].to_numpy(np.float64)
        groups = self.features.groupby("concept_id", sort=False).indices
        return {str(concept): (positions[rows], deltas[rows]) for concept, rows in groups.items()}

    def delta_array(self, concept_id: str) -> np.ndarray:
        """Δ for every scored pair in ``pair_ids`` order (0 where neither side has the concept)."""
        if concept_id not in self.concepts:
            raise KeyError(f"{concept_id} was not scored in {self.folder}")
        out = np.zeros(len(self.pair_ids))
        positions, deltas = self._by_concept.get(concept_id, (np.zeros(0, np.int64), np.zeros(0)))
        out[positions] = deltas
        return out


def find_scores(workspace: Workspace, audit_job_id: int, concepts: Iterable[str]) -> PairScores | None:
    """The newest finished scoring of this audit that scored every one of ``concepts``, if any."""
    needed = set(concepts)
    audit = workspace.job(audit_job_id).artifact_key
    for job in workspace.jobs(SCORING_KIND):  # newest first
        if job.parent_job_id != audit_job_id or job.status != "succeeded" or not job.artifact_key:
            continue
        folder = workspace.find_artifact(job.artifact_key)
        if folder is None:
            continue
        scores = PairScores.load(folder)
        if scores.audit == audit and needed <= scores.concepts:
            return scores
    return None
