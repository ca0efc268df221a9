"""The workspace database schema as an ordered list of migrations.

``PRAGMA user_version`` holds the number of migrations applied. A migration is a list of single
SQL statements (not a script) so that all of them run inside one ``BEGIN IMMEDIATE`` transaction:
either a database moves fully to the next version or not at all, and two processes opening the
same old workspace at once cannot both migrate it.

Never edit a released migration; append a new one.
"""

from __future__ import annotations

MIGRATIONS: list[list[str]] = [
    # 1: datasets, artifacts, jobs and the append-only audit log.
    [
        """CREATE TABLE datasets (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            source_path TEXT NOT NULL,
            content_sha256 TEXT NOT NULL,
            load_options_json TEXT NOT NULL DEFAULT '{}',
            artifact_key TEXT NOT NULL,
            schema_name TEXT NOT NULL,
            file_format TEXT NOT NULL,
            rows_read INTEGER NOT NULL,
            rows_kept INTEGER NOT NULL,
            rows_rejected INTEGER NOT NULL,
            duplicates_merged INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            UNIQUE (artifact_key)
        )""",
        """CREATE TABLE artifacts (
            key TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            path TEXT NOT NULL,
            inputs_json TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            config_json TEXT NOT NULL,
            config_hash TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'stopped')),
            dataset_id INTEGER REFERENCES datasets(id),
            parent_job_id INTEGER REFERENCES jobs(id),
            artifact_key TEXT,
            pid INTEGER,
            progress_path TEXT,
            log_path TEXT,
            error TEXT,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT,
            heartbeat_at TEXT
        )""",
        "CREATE INDEX jobs_by_config ON jobs (kind, config_hash, status)",
        """CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            user TEXT NOT NULL,
            action TEXT NOT NULL,
            entity_type TEXT NOT NULL,
            entity_id TEXT,
            payload_json TEXT NOT NULL DEFAULT '{}'
        )""",
        """CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
           BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
        """CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
           BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
    ],
    # 2: concept review: decisions (with undo), edited labels, compiled intervention plans.
    [
        """CREATE TABLE concept_decisions (
            id INTEGER PRIMARY KEY,
            audit_job_id INTEGER NOT NULL REFERENCES jobs(id),
            concept_id TEXT NOT NULL,
            action TEXT NOT NULL CHECK (action IN ('keep', 'suppress', 'amplify')),
            strength REAL,
            intervention TEXT,
            reason TEXT NOT NULL DEFAULT '',
            stats_json TEXT NOT NULL DEFAULT '{}',
            decided_by TEXT NOT NULL,
            decided_at TEXT NOT NULL,
            undone_at TEXT,
            undone_by TEXT,
            undo_reason TEXT
        )""",
        "CREATE INDEX decisions_by_concept ON concept_decisions (audit_job_id, concept_id)",
        """CREATE TABLE concept_labels (
            audit_job_id INTEGER NOT NULL REFERENCES jobs(id),
            concept_id TEXT NOT NULL,
            label TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT 'user',
            updated_by TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (audit_job_id, concept_id)
        )""",
        """CREATE TABLE plans (
            id INTEGER PRIMARY KEY,
            audit_job_id INTEGER NOT NULL REFERENCES jobs(id),
            plan_hash TEXT NOT NULL,
            plan_yaml TEXT NOT NULL,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL
        )""",
        # A tuning run records the plan it trains on (its audit is parent_job_id).
        "ALTER TABLE jobs ADD COLUMN plan_id INTEGER REFERENCES plans(id)",
    ],
    # 3: a decision names the audit artifact (key and version) its concept id belongs to.
    ["ALTER TABLE concept_decisions ADD COLUMN artifact_key TEXT"],
]

SCHEMA_VERSION = len(MIGRATIONS)
