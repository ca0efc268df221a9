"""The shaped dataset in TRL's preference format, and saved plans in the workspace.

Records follow TRL's explicit-prompt conversational layout (``prompt`` as messages, ``chosen`` and
``rejected`` as one assistant message each) plus ``weight`` for weighted trainers, ``pair_id``,
``split``, ``flipped`` and ``audited``. Dropped pairs are not in the records; the plan's data
summary counts them and ``shaping.parquet`` lists every pair with what changed it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..constants import PLAN_FILE, SHAPED_JSONL_FILE, SHAPED_PARQUET_FILE, SHAPING_FILE
from ..data import PreferenceDataset
from ..errors import NotFoundError
from ..workspace import Workspace
from .plan import InterventionPlan
from .shaping import ShapedPairs


def shaped_records(dataset: PreferenceDataset, shaped: ShapedPairs) -> list[dict]:
    pairs = dataset.pairs.set_index("pair_id")
    records = []
    for row in shaped.table.itertuples():
        if not row.kept:
            continue
        pair = pairs.loc[row.pair_id]
        chosen, rejected = (pair["rejected"], pair["chosen"]) if row.flipped else (pair["chosen"], pair["rejected"])
        records.append(
            {
                "pair_id": row.pair_id,
                "prompt": list(pair["prompt"]),
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
                "weight": float(row.weight),
                "split": pair["split"],
                "flipped": bool(row.flipped),
                "audited": bool(row.audited),
            }
        )
    return records


def write_jsonl(records: list[dict], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_parquet(records: list[dict], path: Path) -> None:
    pd.DataFrame.from_records(
        records, columns=["pair_id", "prompt", "chosen", "rejected", "weight", "split", "flipped", "audited"]
    ).to_parquet(path, index=False)


@dataclass
class SavedPlan:
    plan_id: int
    plan: InterventionPlan
    folder: Path

    @property
    def jsonl(self) -> Path:
        return self.folder / SHAPED_JSONL_FILE

    @property
    def parquet(self) -> Path:
        return self.folder / SHAPED_PARQUET_FILE

    @property
    def yaml(self) -> Path:
        return self.folder / PLAN_FILE

    def shaping(self) -> pd.DataFrame:
        return pd.read_parquet(self.folder / SHAPING_FILE)


def save_plan(
    workspace: Workspace,
    plan: InterventionPlan,
    shaped: ShapedPairs,
    dataset: PreferenceDataset,
    *,
    user: str | None = None,
) -> SavedPlan:
    """Store the plan in the database and its shaped dataset as an artifact keyed by the plan."""
    text = plan.to_yaml(shaped.summary())
    plan_id = workspace.save_plan(plan.audit_job_id, text, user=user)
    key = f"plan-{plan.plan_hash[:16]}"
    folder = workspace.find_artifact(key)
    if folder is None:
        staging = workspace.staging_path(key)
        records = shaped_records(dataset, shaped)
        (staging / PLAN_FILE).write_text(text, encoding="utf-8")
        write_jsonl(records, staging / SHAPED_JSONL_FILE)
        write_parquet(records, staging / SHAPED_PARQUET_FILE)
        shaped.table.to_parquet(staging / SHAPING_FILE, index=False)
        folder = workspace.publish_artifact(
            staging, key, "plan", {"plan_hash": plan.plan_hash, "audit_job_id": plan.audit_job_id}
        )
    return SavedPlan(plan_id=plan_id, plan=plan, folder=folder)


def load_plan(workspace: Workspace, plan_id: int) -> SavedPlan:
    """A saved plan and the folder of its shaped dataset (what the tuning stage trains on)."""
    record = workspace.plan(plan_id)
    plan = InterventionPlan.from_yaml(record["plan_yaml"])
    folder = workspace.find_artifact(f"plan-{plan.plan_hash[:16]}")
    if folder is None:
        raise NotFoundError(
            f"plan {plan_id}: its shaped dataset is missing from {workspace.root}; "
            "save the plan again from the Interventions page"
        )
    return SavedPlan(plan_id=plan_id, plan=plan, folder=folder)
