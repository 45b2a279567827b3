"""PostgreSQL's hooks: idle ping, psycopg's free autocommit switch, SQLSTATEs of its errors."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.engine import URL, Engine

from dpone_state.backends import ping_when_idle
from dpone_state.dialects import BackendHooks

__all__ = ["PostgresHooks"]

#: undefined_table, invalid_schema_name
_MISSING = frozenset({"42P01", "3F000"})
#: undefined_column: an unmigrated (or downgraded) table of dpone's
_MISSING_COLUMN = "42703"
#: deadlock_detected, serialization_failure
_TRANSIENT = frozenset({"40P01", "40001"})
#: lock_not_available (``lock_timeout``), query_canceled (``statement_timeout``,
#: ``pg_cancel_backend``)
_CANCELLED = frozenset({"55P03", "57014"})
#: invalid_password, invalid_authorization_specification, invalid_catalog_name
_AUTH = frozenset({"28P01", "28000", "3D000"})
#: psycopg reports refused connections without a SQLSTATE: the server's text is read.
_AUTH_TEXT = re.compile(
    r"password authentication failed|authentication failed for user|role \".*\" does not exist"
    r"|database \".*\" does not exist|no pg_hba\.conf entry|password is required"
    r"|no password supplied"
)


def _sqlstate(orig: BaseException) -> str | None:
    """The SQLSTATE of a driver error (psycopg2: ``pgcode``; psycopg 3: ``sqlstate``)."""
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code if isinstance(code, str) else None


class PostgresHooks(BackendHooks):
    """``postgresql+psycopg2`` (and psycopg 3)."""

    def engine_options(self, url: URL) -> dict[str, Any]:
        """psycopg2 formats a statement's parameters client-side, positional ``%s`` half again
        as fast as named ``%(name)s`` (a bulk save binds 4,500 per statement)."""
        if url.get_driver_name() == "psycopg2":
            return {"paramstyle": "format"}
        return {}

    def prepare_engine(self, engine: Engine) -> None:
        """Ping pooled connections that sat idle before handing them out."""
        ping_when_idle(engine)

    def set_autocommit(self, dbapi_connection: Any, on: bool) -> None:
        dbapi_connection.autocommit = on

    def is_missing_table(self, orig: BaseException) -> bool:
        return _sqlstate(orig) in _MISSING

    def is_missing_column(self, orig: BaseException) -> bool:
        return _sqlstate(orig) == _MISSING_COLUMN

    def is_transient_conflict(self, orig: BaseException) -> bool:
        return _sqlstate(orig) in _TRANSIENT

    def is_lock_timeout(self, orig: BaseException) -> bool:
        return _sqlstate(orig) in _CANCELLED

    def is_authentication_failure(self, orig: BaseException) -> bool:
        return _sqlstate(orig) in _AUTH or _AUTH_TEXT.search(str(orig)) is not None
