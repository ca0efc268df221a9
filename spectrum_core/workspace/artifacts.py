"""Artifact keys: a hash of what went into a result, so the same inputs find the same result."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spacing: equal inputs give equal text, hence equal hashes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def config_hash(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def artifact_key(kind: str, inputs: dict) -> str:
    """``<kind>-<16 hex digits>``, e.g. ``audit-3f2a…``; readable in folder listings."""
    return f"{kind}-{config_hash({'kind': kind, 'inputs': inputs})[:16]}"


def file_sha256(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hash of a file's bytes, or of every file (name and bytes) in a folder."""
    digest = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode("utf-8") + b"\0")
        with open(file, "rb") as handle:
            while chunk := handle.read(chunk_size):
                digest.update(chunk)
    return digest.hexdigest()
