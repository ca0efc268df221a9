"""Typed readers of the artifacts the stages publish: each knows its folder's file names.

A stage writes its artifact once into a staging folder and publishes it under its key; these
classes are how everything downstream (the next stage, the pages, the CLI) reads it back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd
import yaml

from . import constants as names
from .audit.report import AuditReport
from .errors import NotFoundError


@dataclass(frozen=True)
class Artifact:
    folder: Path

    @classmethod
    def at(cls, folder: Path | str | None, what: str = "artifact"):
        if folder is None or not Path(folder).exists():
            raise NotFoundError(f"the {what} folder {folder} is missing")
        return cls(Path(folder))

    def path(self, name: str) -> Path:
        return self.folder / name


class AuditArtifact(Artifact):
    """``audit-<hash>/``: concepts, the per-pair matrix, feature cards, the SAEs, the report."""

    @cached_property
    def report(self) -> AuditReport:
        return AuditReport.read(self.folder)

    @property
    def layer(self) -> int:
        return self.report.layer

    @property
    def model(self) -> str:
        return self.report.model

    def concepts(self) -> pd.DataFrame:
        return pd.read_parquet(self.folder / names.CONCEPTS_FILE)

    def cards(self) -> pd.DataFrame:
        return pd.read_parquet(self.folder / names.FEATURE_CARDS_FILE)

    def pair_features(self) -> pd.DataFrame:
        return pd.read_parquet(self.folder / names.PAIR_FEATURES_FILE)

    def audited_pairs(self) -> pd.DataFrame:
        return pd.read_parquet(self.folder / names.AUDITED_PAIRS_FILE)

    def topics(self) -> pd.DataFrame:
        """The prompt topics (empty for an audit made without them)."""
        path = self.folder / names.TOPICS_FILE
        return pd.read_parquet(path) if path.exists() else pd.DataFrame(columns=["topic", "label", "n_pairs"])

    def topic_leans(self) -> pd.DataFrame:
        path = self.folder / names.TOPIC_LEANS_FILE
        return pd.read_parquet(path) if path.exists() else pd.DataFrame(columns=["concept_id", "topic"])


class ScoresArtifact(Artifact):
    """``score-<hash>/``: an audit's concepts scored on pairs it did not see (audit/scoring.py)."""

    @cached_property
    def manifest(self) -> dict:
        return json.loads(self.path(names.SCORES_MANIFEST_FILE).read_text())

    def scored_pairs(self) -> pd.Index:
        return pd.Index(pd.read_parquet(self.path(names.SCORED_PAIRS_FILE))["pair_id"])

    def pair_features(self) -> pd.DataFrame:
        return pd.read_parquet(self.path(names.PAIR_FEATURES_FILE))


class TuningArtifact(Artifact):
    """``tune-<hash>/``: the adapter (or full model), its configuration and what it trained on."""

    @cached_property
    def run(self) -> dict:
        return json.loads((self.folder / names.RUN_FILE).read_text())

    @cached_property
    def config(self) -> dict:
        return yaml.safe_load((self.folder / names.CONFIG_FILE).read_text())

    @property
    def adapter(self) -> Path | None:
        path = self.folder / names.ADAPTER_DIR
        return path if path.exists() else None

    @property
    def full_model(self) -> Path:
        return self.folder / names.MODEL_DIR

    @property
    def reward(self) -> Path | None:
        """The run's own shaped reward (ReSet runs), if it has one."""
        path = self.folder / names.REWARD_DIR
        return path if (path / names.REWARD_WEIGHTS_FILE).exists() else None

    def reward_report(self) -> dict | None:
        path = self.folder / names.REWARD_DIR / names.REPORT_FILE
        return json.loads(path.read_text()) if path.exists() else None


class EvaluationArtifact(Artifact):
    """``eval-<hash>/``: the report, one table per section, and the generations."""

    @cached_property
    def report(self) -> dict:
        return json.loads((self.folder / names.REPORT_FILE).read_text())

    def write_report(self, report: dict) -> None:
        (self.folder / names.REPORT_FILE).write_text(json.dumps(report, indent=1, default=str))

    @property
    def generations(self) -> Path:
        return self.folder / names.GENERATIONS_DIR

    def table(self, section: str) -> pd.DataFrame:
        path = self.folder / f"{section}.parquet"
        return pd.read_parquet(path) if path.exists() else pd.DataFrame()

    @property
    def complete(self) -> bool:
        return (self.folder / names.REPORT_FILE).exists()
