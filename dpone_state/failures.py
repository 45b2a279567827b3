"""Reading driver errors, per dialect: which mean "table missing" and which "connection lost".

The only place that knows driver error codes; storages turn these into typed errors.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.exc import DBAPIError

from dpone_state.errors import (
    StateAuthenticationError,
    StateDatabaseError,
    StateDeadlockError,
    StateError,
    StateLockTimeoutError,
    StateNotProvisionedError,
    StateOutcomeUnknownError,
    StateUnavailableError,
)

__all__ = [
    "Failure",
    "classify",
    "is_authentication_failure",
    "is_connection_failure",
    "is_lock_timeout",
    "is_missing_column",
    "is_missing_table",
    "is_transient_conflict",
    "to_state_error",
]


def _sqlstate(orig: object) -> str | None:
    """The SQLSTATE of a PostgreSQL error (psycopg2: ``pgcode``; psycopg 3: ``sqlstate``)."""
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code if isinstance(code, str) else None


#: SQLSTATEs / error codes that mean the table or its schema does not exist.
_POSTGRES_MISSING = frozenset({"42P01", "3F000"})  # undefined_table, invalid_schema_name
_MYSQL_MISSING = frozenset({1146, 1049})  # ER_NO_SUCH_TABLE, ER_BAD_DB_ERROR
#: SQL Server error 208 "Invalid object name" (missing table or schema): pyodbc puts the ODBC
#: SQLSTATE 42S02 in ``args[0]`` and the native number, as ``(208)``, in the message.
_MSSQL_MISSING = frozenset({"42S02"})
_MSSQL_MISSING_NATIVE = re.compile(r"\(208\) \(SQL\w+\)\s*$")


def is_missing_table(error: DBAPIError, dialect_name: str) -> bool:
    """Whether ``error`` says the state table (or the schema holding it) does not exist."""
    orig = error.orig
    args: tuple[Any, ...] = getattr(orig, "args", ())
    if dialect_name == "postgresql":
        return _sqlstate(orig) in _POSTGRES_MISSING
    if dialect_name in ("mysql", "mariadb"):
        return bool(args) and args[0] in _MYSQL_MISSING
    if dialect_name == "sqlite":
        text = str(orig)
        return text.startswith("no such table") or text.startswith("unknown database")
    if dialect_name == "mssql":
        return bool(args) and (
            args[0] in _MSSQL_MISSING or _MSSQL_MISSING_NATIVE.search(str(args[-1])) is not None
        )
    if dialect_name == "bigquery":
        text = str(orig)
        return "Not found: Table" in text or "Not found: Dataset" in text
    return False


#: Deadlock victims and serialization failures: the server rolled the transaction back.
_POSTGRES_TRANSIENT = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure
#: Only a deadlock: a lock-wait timeout (1205) is not one (see ``is_lock_timeout``).
_MYSQL_TRANSIENT = frozenset({1213})  # ER_LOCK_DEADLOCK
_MSSQL_TRANSIENT_NATIVE = re.compile(r"\((1205|3960)\) \(SQL\w+\)\s*$")  # deadlock victim, snapshot


def is_transient_conflict(error: DBAPIError, dialect_name: str) -> bool:
    """Whether ``error`` is a deadlock or serialization failure that rolled the statement back.

    A storage write is one statement in its own transaction, so such a write changed nothing
    and may be sent again.
    """
    orig = error.orig
    args: tuple[Any, ...] = getattr(orig, "args", ())
    if dialect_name == "postgresql":
        return _sqlstate(orig) in _POSTGRES_TRANSIENT
    if dialect_name in ("mysql", "mariadb"):
        return bool(args) and args[0] in _MYSQL_TRANSIENT
    if dialect_name == "mssql":
        return bool(args) and (
            args[0] == "40001" or _MSSQL_TRANSIENT_NATIVE.search(str(args[-1])) is not None
        )
    if dialect_name == "bigquery":
        return "due to concurrent update" in str(orig)
    return False


def is_connection_failure(error: DBAPIError) -> bool:
    """Whether ``error`` is a lost or refused connection (the call may be retried).

    SQLAlchemy's dialects decide (``is_disconnect``); for SQL Server that is the ODBC
    SQLSTATEs 08S01, 08001, 08003, 08007, 08S02, 01000, 01002, HYT00 (login timeout) and
    HY010, from the Microsoft driver and FreeTDS alike.
    """
    return bool(error.connection_invalidated)


# --- Everything else a statement can meet (additive: the checks above keep their meaning) ----

#: A statement cancelled after waiting for a lock or running too long, or by an operator; the
#: server rolled it back. PostgreSQL: lock_not_available (``lock_timeout``), query_canceled
#: (``statement_timeout``, ``pg_cancel_backend``). MySQL/MariaDB: lock wait timeout, query
#: interrupted (``KILL QUERY``), MySQL's and MariaDB's statement time limits.
_POSTGRES_CANCELLED = frozenset({"55P03", "57014"})
_MYSQL_CANCELLED = frozenset({1205, 1317, 3024, 1969})
_MSSQL_CANCELLED_NATIVE = re.compile(r"\(1222\) \(SQL\w+\)\s*$")  # lock request time out
_SQLITE_BUSY = ("database is locked", "database table is locked", "database schema is locked")


def is_lock_timeout(error: DBAPIError, dialect_name: str) -> bool:
    """Whether the statement gave up waiting (for a lock, or on a time limit) or was cancelled,
    so the server rolled it back; SQLite's "database is locked" past its busy timeout too."""
    orig = error.orig
    args: tuple[Any, ...] = getattr(orig, "args", ())
    if dialect_name == "postgresql":
        return _sqlstate(orig) in _POSTGRES_CANCELLED
    if dialect_name in ("mysql", "mariadb"):
        return bool(args) and args[0] in _MYSQL_CANCELLED
    if dialect_name == "sqlite":
        return str(orig).startswith(_SQLITE_BUSY)
    if dialect_name == "mssql":
        return bool(args) and _MSSQL_CANCELLED_NATIVE.search(str(args[-1])) is not None
    return False


#: Refused credentials or a database that does not exist: configuration, never cured by a retry.
#: psycopg reports these at connect time without a SQLSTATE, so the server's text is read.
_POSTGRES_AUTH = frozenset({"28P01", "28000", "3D000"})
_POSTGRES_AUTH_TEXT = re.compile(
    r"password authentication failed|authentication failed for user|role \".*\" does not exist"
    r"|database \".*\" does not exist|no pg_hba\.conf entry|password is required"
    r"|no password supplied"
)
_MYSQL_AUTH = frozenset({1044, 1045, 1698, 1049})  # 1049 unknown database (at connect only)
_MSSQL_AUTH_NATIVE = re.compile(r"\((18456|4060)\) \(SQL\w+\)")  # login failed, no database


def is_authentication_failure(error: DBAPIError, dialect_name: str) -> bool:
    """Whether connecting failed on credentials or a missing database (a configuration error).

    Only meaningful for errors raised while connecting.
    """
    orig = error.orig
    args: tuple[Any, ...] = getattr(orig, "args", ())
    if dialect_name == "postgresql":
        return _sqlstate(orig) in _POSTGRES_AUTH or bool(_POSTGRES_AUTH_TEXT.search(str(orig)))
    if dialect_name in ("mysql", "mariadb"):
        return bool(args) and args[0] in _MYSQL_AUTH
    if dialect_name == "mssql":
        return any(_MSSQL_AUTH_NATIVE.search(str(arg)) for arg in args)
    return False


_POSTGRES_MISSING_COLUMN = frozenset({"42703"})  # undefined_column
_MYSQL_MISSING_COLUMN = frozenset({1054})  # ER_BAD_FIELD_ERROR
_MSSQL_MISSING_COLUMN_NATIVE = re.compile(r"\(207\) \(SQL\w+\)")  # Invalid column name


def is_missing_column(error: DBAPIError, dialect_name: str) -> bool:
    """Whether ``error`` says a column of the state table does not exist (a table of an older
    revision: downgraded under a running runtime, or never upgraded)."""
    orig = error.orig
    args: tuple[Any, ...] = getattr(orig, "args", ())
    if dialect_name == "postgresql":
        return _sqlstate(orig) in _POSTGRES_MISSING_COLUMN
    if dialect_name in ("mysql", "mariadb"):
        return bool(args) and args[0] in _MYSQL_MISSING_COLUMN
    if dialect_name == "sqlite":
        text = str(orig)
        return text.startswith("no such column") or " has no column named " in text
    if dialect_name == "mssql":
        return any(_MSSQL_MISSING_COLUMN_NATIVE.search(str(arg)) for arg in args)
    if dialect_name == "bigquery":
        text = str(orig)
        return "Unrecognized name" in text or "not found in table" in text
    return False


class Failure:
    """What a failed statement means for its caller (the names ``classify`` returns)."""

    MISSING_TABLE = "missing_table"
    MISSING_COLUMN = "missing_column"
    AUTHENTICATION = "authentication"
    CONNECTION = "connection"
    LOCK_TIMEOUT = "lock_timeout"
    TRANSIENT = "transient"
    OTHER = "other"


def classify(error: DBAPIError, dialect_name: str, *, connecting: bool = False) -> str:  # noqa: PLR0911
    """One ``Failure`` name for ``error``; ``connecting``: raised while opening the connection."""
    if connecting and is_authentication_failure(error, dialect_name):
        return Failure.AUTHENTICATION
    if is_missing_table(error, dialect_name):  # MySQL's unknown database mid-session too
        return Failure.MISSING_TABLE
    if is_authentication_failure(error, dialect_name):
        return Failure.AUTHENTICATION
    if is_missing_column(error, dialect_name):
        return Failure.MISSING_COLUMN
    if is_connection_failure(error) or connecting:
        return Failure.CONNECTION
    if is_transient_conflict(error, dialect_name):
        return Failure.TRANSIENT
    if is_lock_timeout(error, dialect_name):
        return Failure.LOCK_TIMEOUT
    return Failure.OTHER


def _first_line(error: BaseException | None) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def to_state_error(  # noqa: PLR0911 - one answer per kind of failure
    error: DBAPIError,
    dialect_name: str,
    *,
    where: str,
    table: str,
    connecting: bool = False,
    outcome_unknown: bool = False,
) -> StateError:
    """The typed error a failed statement or connection attempt means for its caller.

    ``where`` is the database as ``safe_url`` shows it; ``table`` what the statement was on;
    ``outcome_unknown``: a lost connection here may have left a write applied (it was sent and
    commits by itself, or its COMMIT was in flight), so it is not "nothing applied".
    """
    reason = _first_line(error.orig)
    kind = classify(error, dialect_name, connecting=connecting)
    if kind == Failure.AUTHENTICATION:
        return StateAuthenticationError(
            "connection",
            f"the state database {where} refused the connection ({reason}): fix the "
            "credentials or the database name; a retry does not help",
        )
    if kind == Failure.MISSING_TABLE:
        return StateNotProvisionedError(table)
    if kind == Failure.MISSING_COLUMN:
        return StateNotProvisionedError(
            table,
            "it exists but lacks a column of the current revision (never upgraded, or "
            "downgraded while in use): run `dpone-state upgrade`",
        )
    if kind == Failure.CONNECTION:
        if connecting:
            return StateUnavailableError(f"cannot connect to the state database {where}: {reason}")
        if outcome_unknown:
            return StateOutcomeUnknownError(
                f"lost the connection to the state database {where} after a write on {table} "
                f"was sent ({type(error.orig).__name__}): it may or may not have been applied; "
                "load the state to learn which"
            )
        return StateUnavailableError(
            f"lost the connection to the state database {where}: "
            f"{type(error.orig).__name__}; nothing was applied, the call can be retried"
        )
    if kind == Failure.TRANSIENT:
        return StateDeadlockError(
            f"a write on {table} lost a deadlock or serialization conflict on every attempt "
            f"({reason}); nothing was applied, the call can be retried"
        )
    if kind == Failure.LOCK_TIMEOUT:
        return StateLockTimeoutError(
            f"a statement on {table} waited too long or was cancelled ({reason}); it was "
            "rolled back, nothing was applied, the call can be retried"
        )
    return StateDatabaseError(
        f"the state database {where} refused a statement on {table}: "
        f"{type(error.orig).__name__}: {reason}"
    )
