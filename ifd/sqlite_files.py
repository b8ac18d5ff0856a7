"""The project's small SQLite files (budget ledger, alert history): opened, versioned, created once.

``open_versioned`` connects in autocommit mode (``isolation_level=None``; callers run their own
``BEGIN IMMEDIATE`` transactions), read-only through a ``mode=ro`` URI that never creates the
file, and checks ``PRAGMA user_version``: newer than this code, or an unversioned file that
already has tables, is refused; an empty file gets the schema and the version in one
transaction; an older one is brought up to date by the caller's ``migrations`` (SQL per version
reached), in one transaction. Writers use WAL with the ``synchronous`` level the caller chooses.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path

from ifd.errors import IfdError


def open_versioned(
    path: Path,
    *,
    schema: str,
    version: int,
    what: str,
    missing: str,
    readonly: bool,
    busy_timeout_ms: int,
    synchronous: str,
    migrations: Mapping[int, str] | None = None,
) -> sqlite3.Connection:
    """The connection; ``IfdError`` naming ``path`` and ``what`` (e.g. "alert history") when it cannot be used."""
    try:
        if readonly:
            if not path.is_file():
                raise IfdError(missing)
            db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, check_same_thread=False,
                                 isolation_level=None)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        _check_schema(db, path, schema, version, what, readonly, synchronous, migrations or {})
    except sqlite3.DatabaseError as exc:
        raise IfdError(f"{path}: not a readable {what} ({exc})") from None
    return db


def _check_schema(db: sqlite3.Connection, path: Path, schema: str, version: int, what: str, readonly: bool,
                  synchronous: str, migrations: Mapping[int, str]) -> None:
    found = db.execute("PRAGMA user_version").fetchone()[0]
    if found > version:
        raise IfdError(f"{path}: {what} schema version {found} is newer than this ifd's ({version})")
    if found == version:
        if not readonly:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute(f"PRAGMA synchronous = {synchronous}")
        return
    tables = db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
    steps = range(found + 1, version + 1)
    if tables and found >= 1 and all(step in migrations for step in steps):
        if readonly:
            raise IfdError(f"{path}: {what} schema version {found} is older than this ifd's ({version}); "
                           "open it once for writing (any download) to upgrade it")
        _migrate(db, migrations, version, synchronous)
        return
    if tables or readonly:
        raise IfdError(f"{path}: not an ifd {what} (schema version {found})")
    # IF NOT EXISTS: two processes may create the same new file at once.
    _run_script(db, f"BEGIN IMMEDIATE; {schema} PRAGMA user_version = {version}; COMMIT;", synchronous)


def _migrate(db: sqlite3.Connection, migrations: Mapping[int, str], version: int, synchronous: str) -> None:
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    db.execute("BEGIN IMMEDIATE")
    try:
        found = db.execute("PRAGMA user_version").fetchone()[0]  # another process may have just migrated
        for step in range(found + 1, version + 1):
            for statement in filter(str.strip, migrations[step].split(";")):
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {version}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _run_script(db: sqlite3.Connection, script: str, synchronous: str) -> None:
    db.execute("PRAGMA journal_mode = WAL")  # not allowed inside a transaction
    db.execute(f"PRAGMA synchronous = {synchronous}")
    try:
        db.executescript(script)
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def schema_version(db: sqlite3.Connection) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def journal_mode(db: sqlite3.Connection) -> str:
    return db.execute("PRAGMA journal_mode").fetchone()[0]
