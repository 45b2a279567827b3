"""Reading driver errors, per dialect: which mean "table missing" and which "connection lost".

The only place that knows driver error codes; storages turn these into typed errors.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.exc import DBAPIError

__all__ = [
    "is_connection_failure",
    "is_missing_column",
    "is_missing_table",
    "is_transient_conflict",
]

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
        return getattr(orig, "pgcode", None) in _POSTGRES_MISSING
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


#: Errors that mean a column the statement names does not exist: on our own tables, a table of
#: dpone's that was never migrated (no ``revision`` / ``process_name``) or was downgraded.
_POSTGRES_MISSING_COLUMN = "42703"  # undefined_column
_MYSQL_MISSING_COLUMN = 1054  # ER_BAD_FIELD_ERROR
_MSSQL_MISSING_COLUMN_NATIVE = re.compile(r"\(207\) \(SQL\w+\)\s*$")  # Invalid column name
_SQLITE_MISSING_COLUMN = ("no such column", "has no column named")
#: BigQuery: "Unrecognized name: x" (reads), "Column x is not present in table" (writes),
#: "Name x not found inside t"; the emulator (DuckDB): 'does not have a column named "x"' (or
#: 'with name').
_BIGQUERY_MISSING_COLUMN = (
    "Unrecognized name",
    "not found inside",
    "is not present in",
    "does not have a column",
)


def is_missing_column(error: DBAPIError, dialect_name: str) -> bool:
    """Whether ``error`` says a column the statement names does not exist in the table."""
    orig = error.orig
    args: tuple[Any, ...] = getattr(orig, "args", ())
    if dialect_name == "postgresql":
        return getattr(orig, "pgcode", None) == _POSTGRES_MISSING_COLUMN
    if dialect_name in ("mysql", "mariadb"):
        return bool(args) and args[0] == _MYSQL_MISSING_COLUMN
    if dialect_name == "sqlite":
        return any(part in str(orig) for part in _SQLITE_MISSING_COLUMN)
    if dialect_name == "mssql":
        return bool(args) and (
            args[0] == "42S22" or _MSSQL_MISSING_COLUMN_NATIVE.search(str(args[-1])) is not None
        )
    if dialect_name == "bigquery":
        return any(part in str(orig) for part in _BIGQUERY_MISSING_COLUMN)
    return False


#: Deadlock victims and serialization failures: the server rolled the transaction back.
_POSTGRES_TRANSIENT = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure
_MYSQL_TRANSIENT = frozenset({1213, 1205})  # ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT
_MSSQL_TRANSIENT_NATIVE = re.compile(r"\((1205|3960)\) \(SQL\w+\)\s*$")  # deadlock victim, snapshot


def is_transient_conflict(error: DBAPIError, dialect_name: str) -> bool:
    """Whether ``error`` is a deadlock or serialization failure that rolled the statement back.

    A storage write is one statement in its own transaction, so such a write changed nothing
    and may be sent again.
    """
    orig = error.orig
    args: tuple[Any, ...] = getattr(orig, "args", ())
    if dialect_name == "postgresql":
        return getattr(orig, "pgcode", None) in _POSTGRES_TRANSIENT
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
