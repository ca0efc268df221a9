"""Open the workspace's SQLite database: WAL mode, a busy timeout, and migrations on open."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import SpectrumError
from .schema import MIGRATIONS, SCHEMA_VERSION

BUSY_TIMEOUT_MS = 30_000


class WorkspaceVersionError(SpectrumError, RuntimeError):
    """The database was written by a newer Spectrum than this one."""


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode; use ``transaction`` for multi-statement writes.

    WAL lets readers (the UI) run while a writer (a job) writes; the busy timeout makes
    concurrent writers wait for each other instead of failing with "database is locked".
    """
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    _use_wal(conn, path)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _use_wal(conn: sqlite3.Connection, path: Path) -> None:
    """Switch a new database to WAL (the mode is stored in the file, so this happens once).

    Switching needs an exclusive lock, and SQLite answers "database is locked" at once, without
    waiting out the busy timeout, when another process opening the same brand-new database holds a
    lock (waiting could deadlock). So the switch is retried here until the busy timeout is spent.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal":
                return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) and "busy" not in str(error):
                raise
        if time.monotonic() > deadline:
            raise sqlite3.OperationalError(
                f"database is locked: could not switch {path} to WAL mode within "
                f"{BUSY_TIMEOUT_MS / 1000:.0f} s; another process holds it"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE takes the write lock up front, so a read-then-write cannot be raced."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def schema_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Apply the migrations between the database's version and ``target``; return the new version."""
    if target > SCHEMA_VERSION:
        raise ValueError(f"No migration {target}; the newest is {SCHEMA_VERSION}.")
    with transaction(conn):
        current = schema_version(conn)  # read under the lock: another process may have migrated
        if current > SCHEMA_VERSION:
            raise WorkspaceVersionError(
                f"This workspace uses schema version {current}, newer than this Spectrum "
                f"understands ({SCHEMA_VERSION}); upgrade Spectrum to open it."
            )
        for version in range(current, target):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
        return max(current, target)
