"""Artifact keys: a hash of what went into a result, so the same inputs find the same result."""

from __future__ import annotations

import functools
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


VERSION_MARK = ".v"  # audit-3f2a….v2: the second version of audit-3f2a… (a forced rerun)


def base_key(key: str) -> str:
    """``key`` without its version."""
    stem, mark, number = key.rpartition(VERSION_MARK)
    return stem if mark and number.isdigit() else key


def artifact_version(key: str) -> int:
    """1 for a key as made, N for ``<key>.vN``."""
    stem, mark, number = key.rpartition(VERSION_MARK)
    return int(number) if mark and number.isdigit() else 1


def versioned_key(key: str, version: int) -> str:
    return base_key(key) if version == 1 else f"{base_key(key)}{VERSION_MARK}{version}"


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


def library_versions(packages: tuple[str, ...]) -> dict[str, str | None]:
    """The installed version of each distribution (None: not installed), for an artifact's key:
    another torch or transformers can change the numbers, so it must not find the old result."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@functools.cache
def source_digest(*folders_or_files: Path) -> str:
    """A hash of the Python sources (names and bytes) under the given paths: the code that made a
    result is part of its key, so a release that changes a statistic reruns the audit rather than
    showing the old one. Computed once per process."""
    digest = hashlib.sha256()
    for root in folders_or_files:
        root = Path(root)
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        for file in files:
            name = file.relative_to(root) if root.is_dir() else file.name
            digest.update(str(name).encode("utf-8") + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
