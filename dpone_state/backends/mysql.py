"""MySQL / MariaDB's hooks: pool recycling, utf8mb4, idle ping, error numbers."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import URL, Engine
from sqlalchemy.pool.base import reset_none

from dpone_state.backends import keep_autocommit, ping_when_idle
from dpone_state.dialects import BackendHooks

__all__ = ["LOCK_WAIT_SECONDS", "POOL_RECYCLE_SECONDS", "MysqlHooks"]

#: Recycle pooled connections before MySQL's default ``wait_timeout`` (8 h) closes them.
POOL_RECYCLE_SECONDS = 3600
#: How long a statement waits for a row lock before it fails with ``StateLockTimeoutError``
#: (``innodb_lock_wait_timeout`` of each connection; the server default is 50 s).
LOCK_WAIT_SECONDS = 10
#: ER_NO_SUCH_TABLE, ER_BAD_DB_ERROR
_MISSING = frozenset({1146, 1049})
#: ER_LOCK_DEADLOCK only: a lock-wait timeout (1205) is not a deadlock (see ``_CANCELLED``)
_TRANSIENT = frozenset({1213})
#: lock wait timeout, query interrupted (``KILL QUERY``), MySQL's and MariaDB's statement
#: time limits
_CANCELLED = frozenset({1205, 1317, 3024, 1969})
#: access denied (database, user), plugin refused; unknown database (at connect)
_AUTH = frozenset({1044, 1045, 1698, 1049})
#: ER_BAD_FIELD_ERROR: an unmigrated (or downgraded) table of dpone's
_MISSING_COLUMN = 1054


def _code(orig: BaseException) -> Any:
    args: tuple[Any, ...] = getattr(orig, "args", ())
    return args[0] if args else None


class MysqlHooks(BackendHooks):
    """``mysql+pymysql`` (MySQL and MariaDB)."""

    def engine_options(self, url: URL) -> dict[str, Any]:
        """Recycle pooled connections before the server's idle timeout; full Unicode; a
        bounded wait for row locks; the pool's reset on return left to ``keep_autocommit``
        (nothing for a connection a storage left in autocommit, a ROLLBACK otherwise)."""
        connect_args: dict[str, Any] = {
            "init_command": f"SET SESSION innodb_lock_wait_timeout = {LOCK_WAIT_SECONDS}"
        }
        if "charset" not in url.query:
            connect_args["charset"] = "utf8mb4"
        return {
            "pool_recycle": POOL_RECYCLE_SECONDS,
            "pool_reset_on_return": None,
            "connect_args": connect_args,
        }

    def prepare_engine(self, engine: Engine) -> None:
        """Ping pooled connections that sat idle before handing them out; let storages keep
        connections in autocommit (one statement per call at the server) where the pool's
        reset is ours (``pool_reset_on_return=None``, the default of ``engine_options``)."""
        ping_when_idle(engine)
        if engine.pool._reset_on_return is reset_none:
            keep_autocommit(engine, self.set_autocommit, self.in_autocommit)

    def set_autocommit(self, dbapi_connection: Any, on: bool) -> None:
        dbapi_connection.autocommit(on)  # PyMySQL sends SET AUTOCOMMIT only on a change

    def in_autocommit(self, dbapi_connection: Any) -> bool:
        return bool(dbapi_connection.get_autocommit())  # the server's status flag, kept locally

    def is_missing_table(self, orig: BaseException) -> bool:
        return _code(orig) in _MISSING

    def is_missing_column(self, orig: BaseException) -> bool:
        return bool(_code(orig) == _MISSING_COLUMN)

    def is_transient_conflict(self, orig: BaseException) -> bool:
        return _code(orig) in _TRANSIENT

    def is_lock_timeout(self, orig: BaseException) -> bool:
        return _code(orig) in _CANCELLED

    def is_authentication_failure(self, orig: BaseException) -> bool:
        return _code(orig) in _AUTH
