"""A Spectrum workspace: a folder with ``spectrum.db`` and an ``artifacts/`` tree.

The database records what the researcher loaded, started and decided; artifacts hold the bulky
results (normalised pairs, activations, SAEs, adapters), each in a folder named by a hash of its
inputs so that asking for the same thing twice finds the first result.

Every call opens its own short-lived connection: the UI, CLI and job processes each write to the
same file at the same time, and SQLite's WAL mode with a busy timeout serialises them safely.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from .. import constants as names
from ..data import PreferenceDataset, load_preferences
from ..data.readers import check_readable, display_path
from ..errors import NotFoundError
from .artifacts import (
    VERSION_MARK,
    artifact_key,
    artifact_version,
    base_key,
    canonical_json,
    config_hash,
    file_sha256,
    versioned_key,
)
from .database import connect, migrate, schema_version, transaction
from .schema import SCHEMA_VERSION

DEFAULT_WORKSPACE = "workspace"
JobStatus = Literal["queued", "running", "succeeded", "failed", "stopped"]
JOB_STATUSES: tuple[str, ...] = get_args(JobStatus)
ACTIVE_STATUSES = ("queued", "running")
DECISION_ACTIONS = ("keep", "suppress", "amplify")
# A staging folder whose process is gone is removed once nothing touched it for this long: a
# workspace on a shared disk may have jobs of another machine, whose pids mean nothing here, so a
# dead-looking owner alone is not enough (a job found dead here removes its own folders at once).
STALE_STAGING_SECONDS = 6 * 3600


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


_JOB_FIELDS = {
    "status",
    "artifact_key",
    "pid",
    "progress_path",
    "log_path",
    "error",
    "started_at",
    "finished_at",
    "heartbeat_at",
}


# What each job kind is called where people read it (the kinds are the stages' ``kind``).
JOB_TITLES = {"audit": "Audit", "tune": "Tuning run", "eval": "Evaluation", "score": "Scoring"}


@dataclass(frozen=True)
class JobRecord:
    """One row of the ``jobs`` table: what ran (kind, the inputs its key was made from), for which
    dataset / audit / plan, and how it went."""

    id: int
    kind: str
    config: dict  # the stage's key inputs (the settings are under "config")
    config_hash: str
    status: JobStatus
    dataset_id: int | None
    parent_job_id: int | None  # the audit a tuning run or evaluation belongs to
    plan_id: int | None
    artifact_key: str | None
    pid: int | None
    progress_path: str | None  # relative to the workspace root
    log_path: str | None
    error: str | None
    created_at: str
    created_by: str
    started_at: str | None
    finished_at: str | None
    heartbeat_at: str | None

    @classmethod
    def from_row(cls, row) -> JobRecord:
        values = dict(row)
        values["config"] = json.loads(values.pop("config_json"))
        return cls(**{f.name: values[f.name] for f in fields(cls)})

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def settings(self) -> dict:
        """The stage's configuration as recorded in the job's key inputs (empty if none)."""
        settings = self.config.get("config")
        return settings if isinstance(settings, dict) else {}


def default_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER") or "unknown"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def resolve_root(root: str | Path | None = None) -> Path:
    """An explicit folder, else ``$SPECTRUM_WORKSPACE``, else ``./workspace``."""
    return Path(root or os.environ.get("SPECTRUM_WORKSPACE") or DEFAULT_WORKSPACE).expanduser()


class Workspace:
    def __init__(self, root: str | Path | None = None, *, user: str | None = None, migrate_to: int | None = None):
        self.root = resolve_root(root).resolve()
        self.artifacts_dir = self.root / "artifacts"
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / names.DATABASE_FILE
        self.user = user or default_user()
        with self._db() as conn:
            self.schema_version = migrate(conn, SCHEMA_VERSION if migrate_to is None else migrate_to)
        self.clean_stale_staging()

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    @contextmanager
    def _db(self) -> Iterator[Any]:
        conn = connect(self.db_path)
        try:
            yield conn
        finally:
            conn.close()

    def current_schema_version(self) -> int:
        with self._db() as conn:
            return schema_version(conn)

    # ----------------------------------------------------------------------------- audit log
    @staticmethod
    def _log(conn, user: str, action: str, entity_type: str, entity_id: Any, payload: dict) -> None:
        conn.execute(
            "INSERT INTO audit_log (at, user, action, entity_type, entity_id, payload_json) VALUES (?, ?, ?, ?, ?, ?)",
            (
                utc_now(),
                user,
                action,
                entity_type,
                None if entity_id is None else str(entity_id),
                canonical_json(payload),
            ),
        )

    def log(
        self,
        action: str,
        entity_type: str,
        entity_id: Any = None,
        payload: dict | None = None,
        *,
        user: str | None = None,
    ) -> None:
        with self._db() as conn, transaction(conn):
            self._log(conn, user or self.user, action, entity_type, entity_id, payload or {})

    def audit_log(self, entity_type: str | None = None, entity_id: Any = None) -> list[dict]:
        query, args = "SELECT * FROM audit_log", []
        clauses = []
        if entity_type:
            clauses.append("entity_type = ?")
            args.append(entity_type)
        if entity_id is not None:
            clauses.append("entity_id = ?")
            args.append(str(entity_id))
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        with self._db() as conn:
            rows = conn.execute(query + " ORDER BY id", args).fetchall()
        return [dict(r, payload=json.loads(r["payload_json"])) for r in rows]

    # ----------------------------------------------------------------------------- artifacts
    def artifact_path(self, key: str) -> Path:
        return self.artifacts_dir / key

    def find_artifact(self, key: str) -> Path | None:
        """The artifact's folder if it was registered as complete and is still on disk."""
        with self._db() as conn:
            row = conn.execute("SELECT path FROM artifacts WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        path = self.root / row["path"]
        return path if path.exists() else None

    def job_artifact(self, job_id: int) -> Path:
        """The folder of the artifact a finished job made (NotFoundError when it has none on disk)."""
        key = self.job(job_id).artifact_key
        folder = self.find_artifact(key) if key else None
        if folder is None:
            raise NotFoundError(f"job {job_id}: its artifact is missing from {self.root}")
        return folder

    def artifact_versions(self, key: str) -> list[str]:
        """The published versions of ``key``, oldest first: ``key`` itself, then ``key.v2``,
        ``key.v3`` ... (each a forced rerun, written beside the ones before it)."""
        base = base_key(key)
        prefix = base + VERSION_MARK
        with self._db() as conn:
            rows = conn.execute(
                "SELECT key FROM artifacts WHERE key = ? OR substr(key, 1, ?) = ?", (base, len(prefix), prefix)
            ).fetchall()
        return sorted((r["key"] for r in rows if base_key(r["key"]) == base), key=artifact_version)

    def newest_artifact(self, key: str) -> str | None:
        """The newest published version of ``key`` still on disk, or None."""
        for version in reversed(self.artifact_versions(key)):
            if self.find_artifact(version) is not None:
                return version
        return None

    def find_newest_artifact(self, key: str) -> Path | None:
        """The folder of ``key``'s newest version on disk (what a page shows by default), or None."""
        newest = self.newest_artifact(key)
        return self.find_artifact(newest) if newest else None

    def next_artifact_version(self, key: str) -> str:
        """The key a forced rerun of ``key`` publishes under: one past the newest registered."""
        versions = self.artifact_versions(key)
        return versioned_key(key, artifact_version(versions[-1]) + 1) if versions else base_key(key)

    def register_artifact(self, key: str, kind: str, inputs: dict) -> Path:
        """Record a finished artifact folder (already written at ``artifact_path(key)``)."""
        path = self.artifact_path(key)
        with self._db() as conn, transaction(conn):
            conn.execute(
                "INSERT OR REPLACE INTO artifacts (key, kind, path, inputs_json, created_at) VALUES (?, ?, ?, ?, ?)",
                (key, kind, str(path.relative_to(self.root)), canonical_json(inputs), utc_now()),
            )
        return path

    def staging_path(self, key: str) -> Path:
        """A private folder to build an artifact in before ``publish_artifact`` moves it into
        place, so a crash never leaves a half-written artifact under its real key."""
        path = self.artifacts_dir / ".staging" / f"{key}-{os.getpid()}-{threading.get_ident()}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def _staging_folders(self) -> Iterator[tuple[Path, int]]:
        """(folder, the pid that made it) for every folder under ``artifacts/.staging``."""
        root = self.artifacts_dir / ".staging"
        for path in root.iterdir() if root.is_dir() else ():
            parts = path.name.rsplit("-", 2)  # <key>-<pid>-<thread>
            if len(parts) == 3 and parts[1].isdigit():
                yield path, int(parts[1])

    def remove_staging(self, pid: int) -> int:
        """Remove the staging folders a (dead) process left; returns how many."""
        removed = 0
        for path, owner in self._staging_folders():
            if owner == pid:
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        return removed

    def clean_stale_staging(self, older_than: float = STALE_STAGING_SECONDS) -> int:
        """Remove staging folders whose process is gone and that nothing touched for
        ``older_than`` seconds (a killed or failed run's half-built artifact); returns how many."""
        removed, now = 0, time.time()
        for path, owner in self._staging_folders():
            try:
                idle = now - path.stat().st_mtime
            except OSError:
                continue
            if idle >= older_than and not _pid_alive(owner):
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        return removed

    def publish_artifact(self, staging: Path, key: str, kind: str, inputs: dict) -> Path:
        target = self.artifact_path(key)
        if target.exists():
            shutil.rmtree(staging, ignore_errors=True)  # someone else finished first
        else:
            staging.rename(target)
        return self.register_artifact(key, kind, inputs)

    # ----------------------------------------------------------------------------- datasets
    def add_dataset(
        self, path: str | Path, *, name: str | None = None, user: str | None = None, **load_options
    ) -> dict:
        """Load a preference file into the workspace, or return the earlier load of the same
        bytes with the same options. The result has ``reused`` set accordingly."""
        path = Path(path)
        options = {k: v for k, v in load_options.items() if v is not None}
        check_readable(Path(path))  # before hashing: reading a named pipe would block forever
        inputs = {"sha256": file_sha256(path), "options": options}
        key = artifact_key("dataset", inputs)
        existing = self._dataset_by_key(key)
        if existing is not None and self.find_artifact(key) is not None:
            return dict(existing, reused=True)
        dataset = load_preferences(path, **options)
        staging = self.staging_path(key)
        dataset.save(staging)
        self.publish_artifact(staging, key, "dataset", inputs)
        report = dataset.report
        user = user or self.user
        with self._db() as conn, transaction(conn):
            conn.execute(
                "INSERT OR IGNORE INTO datasets (name, source_path, content_sha256, "
                "load_options_json, artifact_key, schema_name, file_format, rows_read, rows_kept, "
                "rows_rejected, duplicates_merged, created_at, created_by) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name or display_path(path.name),
                    display_path(path.resolve()),
                    inputs["sha256"],
                    canonical_json(options),
                    key,
                    report.schema,
                    report.file_format,
                    report.rows_read,
                    report.rows_kept,
                    report.rows_rejected,
                    report.duplicates_merged,
                    utc_now(),
                    user,
                ),
            )
            row = conn.execute("SELECT * FROM datasets WHERE artifact_key = ?", (key,)).fetchone()
            self._log(
                conn,
                user,
                "dataset.add",
                "dataset",
                row["id"],
                {"path": display_path(path), "rows_kept": report.rows_kept, "rows_rejected": report.rows_rejected},
            )
        return dict(row, reused=False)

    def _dataset_by_key(self, key: str) -> dict | None:
        with self._db() as conn:
            row = conn.execute("SELECT * FROM datasets WHERE artifact_key = ?", (key,)).fetchone()
        return dict(row) if row else None

    def datasets(self) -> list[dict]:
        with self._db() as conn:
            return [dict(r) for r in conn.execute("SELECT * FROM datasets ORDER BY id")]

    def dataset(self, dataset_id: int) -> dict:
        with self._db() as conn:
            row = conn.execute("SELECT * FROM datasets WHERE id = ?", (dataset_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"No dataset {dataset_id} in {self.root}")
        return dict(row)

    def load_dataset(self, dataset_id: int) -> PreferenceDataset:
        record = self.dataset(dataset_id)
        return PreferenceDataset.load(self.artifact_path(record["artifact_key"]))

    # ----------------------------------------------------------------------------- jobs
    def create_job(
        self,
        kind: str,
        config: dict,
        *,
        dataset_id: int | None = None,
        parent_job_id: int | None = None,
        plan_id: int | None = None,
        user: str | None = None,
    ) -> int:
        """A job row in status ``queued``; the job runner fills in the rest as it goes."""
        user = user or self.user
        with self._db() as conn, transaction(conn):
            cursor = conn.execute(
                "INSERT INTO jobs (kind, config_json, config_hash, dataset_id, parent_job_id, "
                "plan_id, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    kind,
                    canonical_json(config),
                    config_hash(config),
                    dataset_id,
                    parent_job_id,
                    plan_id,
                    utc_now(),
                    user,
                ),
            )
            self._log(conn, user, "job.create", "job", cursor.lastrowid, {"kind": kind})
            return cursor.lastrowid

    def update_job(self, job_id: int, **fields) -> None:
        unknown = set(fields) - _JOB_FIELDS
        if unknown:
            raise ValueError(f"Cannot set job fields {sorted(unknown)}")
        if "status" in fields and fields["status"] not in JOB_STATUSES:
            raise ValueError(f"Unknown job status {fields['status']!r}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._db() as conn, transaction(conn):
            conn.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", [*fields.values(), job_id])
            if "status" in fields:
                self._log(
                    conn,
                    self.user,
                    f"job.{fields['status']}",
                    "job",
                    job_id,
                    {"error": fields.get("error")} if fields.get("error") else {},
                )

    def job(self, job_id: int) -> JobRecord:
        with self._db() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"No job {job_id} in {self.root}")
        return JobRecord.from_row(row)

    def job_title(self, job_id: int) -> str:
        """The job as people count it: its kind and its number among jobs of that kind ("Audit 1",
        "Tuning run 2"); the id, shared by every kind, is for commands and links."""
        job = self.job(job_id)
        with self._db() as conn:
            (number,) = conn.execute(
                "SELECT COUNT(*) FROM jobs WHERE kind = ? AND id <= ?", (job.kind, job_id)
            ).fetchone()
        return f"{JOB_TITLES.get(job.kind, job.kind.capitalize())} {number}"

    def jobs(self, kind: str | None = None) -> list[JobRecord]:
        query = "SELECT * FROM jobs" + (" WHERE kind = ?" if kind else "") + " ORDER BY id DESC"
        with self._db() as conn:
            rows = conn.execute(query, (kind,) if kind else ()).fetchall()
        return [JobRecord.from_row(r) for r in rows]

    def find_job(
        self, kind: str, config: dict, statuses: tuple[str, ...] = ("succeeded", "running", "queued")
    ) -> JobRecord | None:
        """The newest job of this kind and exact configuration in one of ``statuses``."""
        marks = ", ".join("?" for _ in statuses)
        with self._db() as conn:
            row = conn.execute(
                f"SELECT id FROM jobs WHERE kind = ? AND config_hash = ? AND status IN ({marks}) "
                "ORDER BY id DESC LIMIT 1",
                (kind, config_hash(config), *statuses),
            ).fetchone()
        return self.job(row["id"]) if row else None

    # ----------------------------------------------------------------------------- decisions
    def decide(
        self,
        audit_job_id: int,
        concept_id: str,
        action: str,
        *,
        strength: float | None = None,
        intervention: str | None = None,
        reason: str = "",
        stats: dict | None = None,
        user: str | None = None,
    ) -> int:
        """Record a keep / suppress / amplify decision, with the statistics shown at the time."""
        if action not in DECISION_ACTIONS:
            raise ValueError(f"Unknown action {action!r}; use one of {DECISION_ACTIONS}")
        user = user or self.user
        payload = {
            "concept_id": concept_id,
            "action": action,
            "strength": strength,
            "intervention": intervention,
            "reason": reason,
        }
        with self._db() as conn, transaction(conn):
            # The audit's artifact as the concept id was read from it (a forced rerun is another
            # version, in which the same id can be another concept).
            job = conn.execute("SELECT artifact_key FROM jobs WHERE id = ?", (audit_job_id,)).fetchone()
            if job is None:
                raise NotFoundError(f"No audit job {audit_job_id}")
            payload["artifact_key"] = job["artifact_key"]
            cursor = conn.execute(
                "INSERT INTO concept_decisions (audit_job_id, concept_id, action, strength, "
                "intervention, reason, stats_json, decided_by, decided_at, artifact_key) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    audit_job_id,
                    concept_id,
                    action,
                    strength,
                    intervention,
                    reason,
                    canonical_json(stats or {}),
                    user,
                    utc_now(),
                    job["artifact_key"],
                ),
            )
            self._log(conn, user, "decision.add", "decision", cursor.lastrowid, payload)
            return cursor.lastrowid

    def undo_decision(self, decision_id: int, *, reason: str = "", user: str | None = None) -> None:
        user = user or self.user
        with self._db() as conn, transaction(conn):
            row = conn.execute("SELECT * FROM concept_decisions WHERE id = ?", (decision_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"No decision {decision_id}")
            if row["undone_at"] is not None:
                raise ValueError(f"Decision {decision_id} was already undone")
            conn.execute(
                "UPDATE concept_decisions SET undone_at = ?, undone_by = ?, undo_reason = ? WHERE id = ?",
                (utc_now(), user, reason, decision_id),
            )
            self._log(
                conn,
                user,
                "decision.undo",
                "decision",
                decision_id,
                {"concept_id": row["concept_id"], "action": row["action"], "reason": reason},
            )

    def decisions(self, audit_job_id: int, *, include_undone: bool = True) -> list[dict]:
        query = "SELECT * FROM concept_decisions WHERE audit_job_id = ?"
        if not include_undone:
            query += " AND undone_at IS NULL"
        with self._db() as conn:
            rows = conn.execute(query + " ORDER BY id", (audit_job_id,)).fetchall()
        return [dict(r, stats=json.loads(r["stats_json"])) for r in rows]

    def current_decisions(self, audit_job_id: int) -> dict[str, dict]:
        """Concept id -> its newest decision that has not been undone."""
        current: dict[str, dict] = {}
        for row in self.decisions(audit_job_id, include_undone=False):
            current[row["concept_id"]] = row
        return current

    # ----------------------------------------------------------------------------- labels, plans
    def set_label(
        self, audit_job_id: int, concept_id: str, label: str, *, source: str = "user", user: str | None = None
    ) -> None:
        user = user or self.user
        with self._db() as conn, transaction(conn):
            conn.execute(
                "INSERT INTO concept_labels (audit_job_id, concept_id, label, source, updated_by, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (audit_job_id, concept_id) DO "
                "UPDATE SET label = excluded.label, source = excluded.source, "
                "updated_by = excluded.updated_by, updated_at = excluded.updated_at",
                (audit_job_id, concept_id, label, source, user, utc_now()),
            )
            self._log(
                conn, user, "label.set", "concept", f"{audit_job_id}:{concept_id}", {"label": label, "source": source}
            )

    def labels(self, audit_job_id: int) -> dict[str, str]:
        with self._db() as conn:
            rows = conn.execute(
                "SELECT concept_id, label FROM concept_labels WHERE audit_job_id = ?", (audit_job_id,)
            ).fetchall()
        return {r["concept_id"]: r["label"] for r in rows}

    def set_intervention(self, decision_id: int, intervention: str, *, user: str | None = None) -> None:
        """Choose how a decision acts on the data (drop / reweight / flip / ...); logged."""
        user = user or self.user
        with self._db() as conn, transaction(conn):
            row = conn.execute("SELECT * FROM concept_decisions WHERE id = ?", (decision_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"No decision {decision_id}")
            conn.execute("UPDATE concept_decisions SET intervention = ? WHERE id = ?", (intervention, decision_id))
            self._log(
                conn,
                user,
                "decision.intervention",
                "decision",
                decision_id,
                {"concept_id": row["concept_id"], "from": row["intervention"], "to": intervention},
            )

    def save_plan(self, audit_job_id: int, plan_yaml: str, *, user: str | None = None) -> int:
        """Store a compiled plan; the same plan text saved again returns the existing id."""
        user = user or self.user
        digest = config_hash(plan_yaml)
        with self._db() as conn, transaction(conn):
            existing = conn.execute(
                "SELECT id FROM plans WHERE audit_job_id = ? AND plan_hash = ?", (audit_job_id, digest)
            ).fetchone()
            if existing:
                return existing["id"]
            cursor = conn.execute(
                "INSERT INTO plans (audit_job_id, plan_hash, plan_yaml, created_at, created_by) VALUES (?, ?, ?, ?, ?)",
                (audit_job_id, digest, plan_yaml, utc_now(), user),
            )
            self._log(conn, user, "plan.save", "plan", cursor.lastrowid, {"audit_job_id": audit_job_id})
            return cursor.lastrowid

    def plan(self, plan_id: int) -> dict:
        with self._db() as conn:
            row = conn.execute("SELECT * FROM plans WHERE id = ?", (plan_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"No plan {plan_id} in {self.root}")
        return dict(row)

    def plans(self, audit_job_id: int | None = None) -> list[dict]:
        query = "SELECT * FROM plans" + (" WHERE audit_job_id = ?" if audit_job_id is not None else "")
        with self._db() as conn:
            rows = conn.execute(query + " ORDER BY id DESC", () if audit_job_id is None else (audit_job_id,)).fetchall()
        return [dict(r) for r in rows]
