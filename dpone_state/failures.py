"""Reading driver errors: which mean "table missing", "conflict, retry" or "connection lost".

The driver error codes themselves belong to each backend's hooks (``dpone_state.backends``);
storages turn these answers into typed errors.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

from dpone_state.dialects import BackendHooks, find_dialect
from dpone_state.errors import (
    StateAuthenticationError,
    StateDatabaseError,
    StateDeadlockError,
    StateError,
    StateLockTimeoutError,
    StateNotProvisionedError,
    StateOutcomeUnknownError,
    StateUnavailableError,
    first_line,
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


def _hooks(error: DBAPIError, dialect_name: str) -> BackendHooks | None:
    row = find_dialect(dialect_name)
    return None if row is None or error.orig is None else row.hooks()


def is_lock_timeout(error: DBAPIError, dialect_name: str) -> bool:
    """Whether the statement gave up waiting (for a lock, or on a time limit) or was cancelled,
    so the server rolled it back; SQLite's "database is locked" past its busy timeout too."""
    hooks = _hooks(error, dialect_name)
    return hooks is not None and hooks.is_lock_timeout(error.orig)  # type: ignore[arg-type]


def is_authentication_failure(error: DBAPIError, dialect_name: str) -> bool:
    """Whether connecting failed on credentials or a missing database (a configuration error)."""
    hooks = _hooks(error, dialect_name)
    return hooks is not None and hooks.is_authentication_failure(error.orig)  # type: ignore[arg-type]


class Failure:
    """What a failed statement means for its caller (the names ``classify`` returns)."""

    MISSING_TABLE = "missing_table"
    MISSING_COLUMN = "missing_column"
    AUTHENTICATION = "authentication"
    CONNECTION = "connection"
    LOCK_TIMEOUT = "lock_timeout"
    TRANSIENT = "transient"
    OTHER = "other"


def classify(  # noqa: PLR0911 - one answer per kind of failure
    error: DBAPIError, dialect_name: str, *, connecting: bool = False
) -> str:
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
    reason = first_line(error.orig)
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
