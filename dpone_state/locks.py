"""A database-wide lock around a migration, so two runtimes upgrading at once take turns.

PostgreSQL: a session advisory lock; MySQL/MariaDB: ``GET_LOCK``; SQL Server:
``sp_getapplock`` owned by the session; SQLite: an exclusive transaction on the file
(``BEGIN EXCLUSIVE``), which the block must commit (everything inside is one transaction).
The lock is keyed by a name (schema and version table), so separate state stores do not wait
for each other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from sqlalchemy import TextClause, text
from sqlalchemy.engine import Connection

from dpone_state.errors import StateUnavailableError

__all__ = [
    "LOCK_TIMEOUT_SECONDS",
    "MSSQL_APPLOCK",
    "VERSION_TABLE",
    "migration_lock",
    "provisioning_lock_name",
]

#: How long a migration waits for another one to finish (MySQL and SQL Server; PostgreSQL waits).
LOCK_TIMEOUT_SECONDS = 600
#: Alembic's version table for the state tables (see ``dpone_state.migrate``).
VERSION_TABLE = "dpone_state_alembic_version"


def provisioning_lock_name(schema: str | None, version_table: str = VERSION_TABLE) -> str:
    """The lock that migrations and ``create_tables()`` of one state schema share."""
    return f"{schema or ''}.{version_table}"


def _lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _short_name(name: str) -> str:
    """A lock name within MySQL's 64-character limit."""
    return "dpone_state_" + hashlib.sha256(name.encode()).hexdigest()[:32]


#: SQL Server: take the session-owned applock and return its status. NOCOUNT ON first, so no
#: row-count message precedes the SELECT and its status is the batch's first result; the
#: session's NOCOUNT OFF (``mssql.SESSION_SETTINGS``) is restored after.
MSSQL_APPLOCK: Final = text(
    "SET NOCOUNT ON; DECLARE @status INT; "
    "EXEC @status = sp_getapplock @Resource = :name, @LockMode = 'Exclusive', "
    "@LockOwner = 'Session', @LockTimeout = :timeout; "
    "SELECT @status; SET NOCOUNT OFF"
)


@contextmanager
def migration_lock(connection: Connection, name: str) -> Iterator[None]:
    """Hold an exclusive, session-level lock called ``name`` on ``connection`` for the block."""
    dialect = connection.dialect.name
    release: tuple[TextClause, dict[str, Any]]
    if dialect == "postgresql":
        key = _lock_key(name)
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        release = text("SELECT pg_advisory_unlock(:key)"), {"key": key}
    elif dialect in ("mysql", "mariadb"):
        lock = _short_name(name)
        got = connection.execute(
            text("SELECT GET_LOCK(:name, :timeout)"),
            {"name": lock, "timeout": LOCK_TIMEOUT_SECONDS},
        ).scalar()
        if got != 1:
            raise StateUnavailableError(
                f"another migration held the lock {lock!r} for {LOCK_TIMEOUT_SECONDS} s; retry"
            )
        release = text("SELECT RELEASE_LOCK(:name)"), {"name": lock}
    elif dialect == "mssql":
        lock = _short_name(name)
        status = connection.execute(
            MSSQL_APPLOCK,
            {"name": lock, "timeout": LOCK_TIMEOUT_SECONDS * 1000},
        ).scalar()
        if status is None or status < 0:
            raise StateUnavailableError(
                f"could not take the migration lock {lock!r} (sp_getapplock returned {status}); "
                "retry"
            )
        release = (
            text("EXEC sp_releaseapplock @Resource = :name, @LockOwner = 'Session'"),
            {"name": lock},
        )
    elif dialect == "sqlite":
        if connection.in_transaction():
            connection.commit()
        connection.exec_driver_sql("BEGIN EXCLUSIVE")  # waits up to the busy timeout
        try:
            yield
        finally:
            if connection.in_transaction():
                connection.rollback()  # the block did not commit: it failed
        return
    else:  # BigQuery (no locks): nothing to take
        yield
        return
    try:
        yield
    finally:
        if connection.in_transaction():
            connection.rollback()  # whatever the block left uncommitted has failed
        connection.execute(*release)
        connection.commit()
