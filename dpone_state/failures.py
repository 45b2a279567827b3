"""Reading driver errors: which mean "table missing", "conflict, retry" or "connection lost".

The driver error codes themselves belong to each backend's hooks (``dpone_state.backends``);
storages turn these answers into typed errors.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

from dpone_state.dialects import find_dialect

__all__ = [
    "is_connection_failure",
    "is_missing_column",
    "is_missing_table",
    "is_transient_conflict",
]


def is_missing_table(error: DBAPIError, dialect_name: str) -> bool:
    """Whether ``error`` says the state table (or the schema holding it) does not exist."""
    row = find_dialect(dialect_name)
    return row is not None and error.orig is not None and row.hooks().is_missing_table(error.orig)


def is_missing_column(error: DBAPIError, dialect_name: str) -> bool:
    """Whether ``error`` says a column the statement names does not exist in the table: on our
    own tables, dpone's table never migrated (no ``revision`` / ``process_name``) or one
    downgraded under a running runtime."""
    row = find_dialect(dialect_name)
    return row is not None and error.orig is not None and row.hooks().is_missing_column(error.orig)


def is_transient_conflict(error: DBAPIError, dialect_name: str) -> bool:
    """Whether ``error`` is a deadlock or serialization failure that rolled the statement back.

    A storage write is one statement in its own transaction, so such a write changed nothing
    and may be sent again.
    """
    row = find_dialect(dialect_name)
    return (
        row is not None and error.orig is not None and row.hooks().is_transient_conflict(error.orig)
    )


def is_connection_failure(error: DBAPIError) -> bool:
    """Whether ``error`` is a lost or refused connection (the call may be retried).

    SQLAlchemy's dialects decide (``is_disconnect``); for SQL Server that is the ODBC
    SQLSTATEs 08S01, 08001, 08003, 08007, 08S02, 01000, 01002, HYT00 (login timeout) and
    HY010, from the Microsoft driver and FreeTDS alike.
    """
    return bool(error.connection_invalidated)
