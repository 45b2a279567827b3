"""PostgreSQL's hooks: idle ping, psycopg's free autocommit switch, SQLSTATEs of its errors."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from dpone_state.backends import ping_when_idle
from dpone_state.dialects import BackendHooks

__all__ = ["PostgresHooks"]

#: undefined_table, invalid_schema_name
_MISSING = frozenset({"42P01", "3F000"})
#: undefined_column: an unmigrated (or downgraded) table of dpone's
_MISSING_COLUMN = "42703"
#: deadlock_detected, serialization_failure
_TRANSIENT = frozenset({"40P01", "40001"})


class PostgresHooks(BackendHooks):
    """``postgresql+psycopg2`` (and psycopg 3)."""

    def prepare_engine(self, engine: Engine) -> None:
        """Ping pooled connections that sat idle before handing them out."""
        ping_when_idle(engine)

    def set_autocommit(self, dbapi_connection: Any, on: bool) -> None:
        dbapi_connection.autocommit = on

    def is_missing_table(self, orig: BaseException) -> bool:
        return getattr(orig, "pgcode", None) in _MISSING

    def is_missing_column(self, orig: BaseException) -> bool:
        return getattr(orig, "pgcode", None) == _MISSING_COLUMN

    def is_transient_conflict(self, orig: BaseException) -> bool:
        return getattr(orig, "pgcode", None) in _TRANSIENT
