"""The workspace: a SQLite database of what was loaded, run and decided, plus hashed artifacts."""

from .artifacts import artifact_key, artifact_version, base_key, canonical_json, config_hash, file_sha256
from .database import WorkspaceVersionError
from .schema import SCHEMA_VERSION
from .workspace import JobRecord, Workspace, default_user, resolve_root

__all__ = [
    "SCHEMA_VERSION",
    "JobRecord",
    "Workspace",
    "WorkspaceVersionError",
    "artifact_key",
    "artifact_version",
    "base_key",
    "canonical_json",
    "config_hash",
    "default_user",
    "file_sha256",
    "resolve_root",
]
