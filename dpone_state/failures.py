"""Reading driver errors, per dialect: which mean "table missing" and which "connection lost",
and how long a write lost to a conflict waits before it is sent again (``RetryPolicy``).

The only place that knows driver error codes; storages turn these into typed errors.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy.exc import DBAPIError

__all__ = [
    "ADDED_COLUMNS",
    "BIGQUERY_RETRY",
    "RETRY_POLICIES",
    "RetryPolicy",
    "is_connection_failure",
    "is_lock_timeout",
    "is_missing_table",
    "is_transient_conflict",
    "is_unmigrated_table",
    "retry_policy",
]


@dataclass(frozen=True)
class RetryPolicy:
    """How a write that lost a conflict (and so changed nothing) is sent again.

    Attempt ``n`` (0-based) waits ``min(cap, base * 2**n)`` seconds, times a random factor in
    ``[1 - jitter, 1 + jitter]`` so that writers that collided do not collide again in step.
    """

    attempts: int
    base_seconds: float
    cap_seconds: float
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        spread = (rng or _RNG).uniform(1 - self.jitter, 1 + self.jitter)
        return float(min(self.cap_seconds, self.base_seconds * 2**attempt) * spread)


_RNG = random.Random()  # noqa: S311 - jitter, not security

#: Row-locking servers: a deadlock victim retries within milliseconds.
_SERVER_RETRY: Final = RetryPolicy(attempts=5, base_seconds=0.005, cap_seconds=0.5)
#: BigQuery: every statement is a job of ~1 s, a table queues at most 20 mutating DML and
#: conflicting ones fail at commit; waiting milliseconds would only fail again. Seven attempts
#: over about 47 s of waits (1, 2, 4, 8, 16, 16 s, each ±50 %).
BIGQUERY_RETRY: Final = RetryPolicy(attempts=7, base_seconds=1.0, cap_seconds=16.0)
#: Per-backend retry policy of writes (dialect name -> policy).
RETRY_POLICIES: Final[dict[str, RetryPolicy]] = {"bigquery": BIGQUERY_RETRY}


def retry_policy(dialect_name: str) -> RetryPolicy:
    """The retry policy of a dialect's writes."""
    return RETRY_POLICIES.get(dialect_name, _SERVER_RETRY)


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


#: Deadlock victims and serialization failures: the server rolled the transaction back.
_POSTGRES_TRANSIENT = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure
_MYSQL_TRANSIENT = frozenset({1213, 1205})  # ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT
_MSSQL_TRANSIENT_NATIVE = re.compile(r"\((1205|3960)\) \(SQL\w+\)\s*$")  # deadlock victim, snapshot
#: BigQuery: a DML job or transaction aborted by a concurrent one, or refused because the
#: table's queue of mutating DML is full. Each one changed nothing.
_BIGQUERY_TRANSIENT = (
    "due to concurrent update",  # "Could not serialize access to table … due to concurrent update"
    "could not serialize access",
    "too many dml statements outstanding",
    "transaction is aborted",
)


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
        text = str(orig).lower()
        return any(marker in text for marker in _BIGQUERY_TRANSIENT)
    return False


#: SQL Server Msg 1222 "Lock request time out period exceeded" (``SET LOCK_TIMEOUT``).
_MSSQL_LOCK_TIMEOUT = re.compile(r"\(1222\) \(SQL\w+\)\s*$")


def is_lock_timeout(error: DBAPIError, dialect_name: str) -> bool:
    """Whether ``error`` is SQL Server's lock timeout (the statement waited too long)."""
    if dialect_name != "mssql":
        return False
    args: tuple[Any, ...] = getattr(error.orig, "args", ())
    return bool(args) and _MSSQL_LOCK_TIMEOUT.search(str(args[-1])) is not None


#: The columns dpone-state adds to dpone's legacy tables (migration 0002).
ADDED_COLUMNS: Final = ("revision", "process_name")
#: SQL Server Msg 207 "Invalid column name 'revision'".
_MSSQL_INVALID_COLUMN = re.compile(r"Invalid column name '(\w+)'.*\(207\)")
#: BigQuery "Unrecognized name: revision" (the emulator says "does not have a column named").
_BIGQUERY_UNKNOWN_NAME = re.compile(
    r"Unrecognized name: (\w+)|does not have a column named \"?(\w+)|column with name \"?(\w+)"
)


def is_unmigrated_table(error: DBAPIError, dialect_name: str) -> bool:
    """Whether ``error`` says a column that migration 0002 adds is missing: the table is dpone's
    legacy table, adopted by no ``upgrade`` yet."""
    text = str(getattr(error.orig, "args", [""])[-1] if dialect_name == "mssql" else error.orig)
    if dialect_name == "mssql":
        found = _MSSQL_INVALID_COLUMN.search(text)
        return found is not None and found.group(1) in ADDED_COLUMNS
    if dialect_name == "bigquery":
        for found in _BIGQUERY_UNKNOWN_NAME.finditer(text):
            if any(name in ADDED_COLUMNS for name in found.groups() if name):
                return True
    return False


def is_connection_failure(error: DBAPIError) -> bool:
    """Whether ``error`` is a lost or refused connection (the call may be retried).

    SQLAlchemy's dialects decide (``is_disconnect``); for SQL Server that is the ODBC
    SQLSTATEs 08S01, 08001, 08003, 08007, 08S02, 01000, 01002, HYT00 (login timeout) and
    HY010, from the Microsoft driver and FreeTDS alike.
    """
    return bool(error.connection_invalidated)
