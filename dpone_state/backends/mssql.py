"""SQL Server's hooks: a login timeout, FreeTDS's protocol version, the session settings of
every new connection (``SESSION_SETTINGS``), one parameter declaration per statement
(``declared_input_size``), an idle ping, connections kept in autocommit by the storages, and
its driver's error codes.

Declaring parameters once per statement, whatever their values, gives each statement one
cached plan, and a NULL needs no round trip to describe it.

pyodbc's autocommit switch (``SQLSetConnectAttr``) is a round trip: FreeTDS and Microsoft's
driver send ``SET IMPLICIT_TRANSACTIONS``. As on MariaDB, a connection a storage used stays in
autocommit (``backends.keep_autocommit``): each storage call is its one statement at the server,
with no COMMIT and no ROLLBACK on the pool's check-in, and any other user of the pool gets the
connection back in a transaction. ``fast_executemany`` is not set:
no storage path calls ``executemany`` (bulk saves are one multi-row MERGE), and its known
pitfalls (memory per row of ``NVARCHAR(max)``, truncation of longer values in later rows)
should not be armed for callers sharing the engine.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Final

from sqlalchemy import event
from sqlalchemy.engine import URL, Dialect, Engine
from sqlalchemy.pool.base import reset_none
from sqlalchemy.sql import sqltypes
from sqlalchemy.types import TypeEngine

from dpone_state.backends import keep_autocommit, on_connect, ping_when_idle
from dpone_state.dialects import BackendHooks

__all__ = [
    "FREETDS_TDS_VERSION",
    "LOCK_TIMEOUT_MS",
    "LOGIN_TIMEOUT_SECONDS",
    "SESSION_SETTINGS",
    "MssqlHooks",
    "core_input_size",
    "declared_input_size",
    "declared_type_name",
    "engine_options",
]

#: Seconds pyodbc waits for a login (ODBC ``SQL_ATTR_LOGIN_TIMEOUT``) before giving up.
LOGIN_TIMEOUT_SECONDS = 15

#: URL query keys that already set a login timeout (then ours is not added).
_TIMEOUT_KEYS = frozenset({"timeout", "logintimeout", "login_timeout"})


#: FreeTDS protocol version: 7.3+ returns DATETIME2 as a datetime (older ones send a string).
FREETDS_TDS_VERSION = "7.4"


#: How long a statement waits for a lock before SQL Server cancels it (Msg 1222, raised as
#: ``StateLockTimeoutError``). Storage statements hold locks for milliseconds; a wait this long
#: means a stuck transaction, and failing beats hanging the ETL run.
LOCK_TIMEOUT_MS: Final = 30_000

#: Sent once per new connection. ``NOCOUNT OFF``: row counts decide ``upsert_applied`` and the
#: delete counts (a server whose ``user options`` set NOCOUNT ON would make them -1).
#: ``XACT_ABORT ON``: any error rolls the whole transaction back (no half-open transaction
#: left on a pooled connection after a lock timeout, which alone aborts only the statement).
#: ``LOCK_TIMEOUT``: bounded waits instead of the default of waiting forever.
SESSION_SETTINGS: Final = f"SET NOCOUNT OFF; SET XACT_ABORT ON; SET LOCK_TIMEOUT {LOCK_TIMEOUT_MS};"

# ODBC SQL type codes (sql.h / sqlext.h; the same in every driver manager).
_SQL_WVARCHAR, _SQL_BIGINT, _SQL_TYPE_TIMESTAMP, _SQL_BIT, _SQL_DOUBLE = -9, -5, 93, -7, 8
#: Longest NVARCHAR that is not ``max``.
_NVARCHAR_MAX_LENGTH: Final = 4000

InputSize = tuple[int, int, int]


def declared_input_size(type_: TypeEngine[Any], dialect: Dialect) -> InputSize | None:
    """The ``(ODBC type, size, decimal digits)`` a parameter of ``type_`` is declared with.

    Bounded strings are all ``NVARCHAR(4000)`` (pyodbc would declare ``nvarchar(len(value))``,
    one plan per combination of lengths), unbounded ones ``NVARCHAR(max)``, integers ``BIGINT``
    (not ``int`` or ``bigint`` by value), timestamps ``DATETIME2(7)``, booleans ``BIT``, floats
    ``FLOAT``. ``None`` leaves a type as the dialect declares it.
    """
    impl = type_._unwrapped_dialect_impl(dialect)  # what the dialect binds (variants resolved)
    if isinstance(impl, sqltypes.String):
        bounded = impl.length is not None and impl.length <= _NVARCHAR_MAX_LENGTH
        return (_SQL_WVARCHAR, _NVARCHAR_MAX_LENGTH if bounded else 0, 0)
    for kind, size in _DECLARED:  # Boolean before Integer: BIT is not BIGINT
        if isinstance(impl, kind):
            return size
    return None


_DECLARED: Final[tuple[tuple[type[TypeEngine[Any]], InputSize], ...]] = (
    (sqltypes.Boolean, (_SQL_BIT, 0, 0)),
    (sqltypes.Integer, (_SQL_BIGINT, 0, 0)),
    (sqltypes.DateTime, (_SQL_TYPE_TIMESTAMP, 27, 7)),
    (sqltypes.Float, (_SQL_DOUBLE, 0, 0)),
)


def declared_type_name(size: InputSize | None) -> str:
    """The T-SQL type a declaration reaches the server as (``sp_executesql``'s declaration)."""
    if size is None:
        return "(as the driver infers)"
    code, length, _ = size
    names = {_SQL_BIGINT: "BIGINT", _SQL_BIT: "BIT", _SQL_DOUBLE: "FLOAT"}
    if code == _SQL_WVARCHAR:
        return f"NVARCHAR({length or 'max'})"
    if code == _SQL_TYPE_TIMESTAMP:
        return "DATETIME2(7)"
    return names[code]


def core_input_size(type_: TypeEngine[Any], dialect: Dialect) -> Any:
    """What Core declares a parameter of ``type_`` with when no hook declares it (the
    dialect's DBAPI type, as ``setinputsizes`` takes it)."""
    dbtype = type_._unwrapped_dialect_impl(dialect).get_dbapi_type(dialect.dbapi)  # type: ignore[arg-type]
    include, exclude = dialect.include_set_input_sizes, dialect.exclude_set_input_sizes
    if dbtype is None or (exclude and dbtype in exclude) or (include and dbtype not in include):
        dbtype = None
    return dbtype if isinstance(dbtype, tuple) else (dbtype, None, None)


def _declare_parameters(
    inputsizes: dict[Any, Any], cursor: Any, statement: str, parameters: Any, context: Any
) -> None:
    """``do_setinputsizes``: every parameter declared by its type (``declared_input_size``)."""
    for bindparam in inputsizes:
        size = declared_input_size(bindparam.type, context.dialect)
        if size is not None:
            inputsizes[bindparam] = size


def engine_options(url: URL) -> dict[str, Any]:
    """A login timeout, and for FreeTDS ``TDS_Version=7.4`` unless the URL sets one (pyodbc
    adds unknown keywords to the connection string); the pool's reset on return left to
    ``keep_autocommit`` (nothing for a connection a storage left in autocommit, a ROLLBACK
    otherwise)."""
    options: dict[str, Any] = {}
    if url.get_driver_name() != "pyodbc":
        return options
    options["pool_reset_on_return"] = None
    keys = {key.lower() for key in url.query}
    connect_args: dict[str, Any] = {}
    if not _TIMEOUT_KEYS & keys:
        connect_args["timeout"] = LOGIN_TIMEOUT_SECONDS
    driver = url.query.get("driver", "")
    if "freetds" in str(driver).lower() and "tds_version" not in keys:
        connect_args["TDS_Version"] = FREETDS_TDS_VERSION
    if connect_args:
        options["connect_args"] = connect_args
    return options


# The native-number patterns below are compiled on first use (``re``'s cache), not at import.
#: Error 208 "Invalid object name" (missing table or schema): pyodbc puts the ODBC SQLSTATE
#: 42S02 in ``args[0]`` and the native number, as ``(208)``, in the message.
_MISSING = frozenset({"42S02"})
_MISSING_NATIVE = r"\(208\) \(SQL\w+\)\s*$"
#: Msg 207 "Invalid column name" (SQLSTATE 42S22): an unmigrated (or downgraded) dpone table.
_MISSING_COLUMN_NATIVE = r"\(207\) \(SQL\w+\)\s*$"
#: Deadlock victim (1205) and snapshot conflict (3960), or SQLSTATE 40001.
_TRANSIENT_NATIVE = r"\((1205|3960)\) \(SQL\w+\)\s*$"
#: Msg 1222 "Lock request time out period exceeded" (``SET LOCK_TIMEOUT``).
_LOCK_TIMEOUT = r"\(1222\) \(SQL\w+\)\s*$"
#: Msg 18456 login failed, Msg 4060 cannot open the database
_AUTH_NATIVE = r"\((18456|4060)\) \(SQL\w+\)"


class MssqlHooks(BackendHooks):
    """``mssql+pyodbc`` (Microsoft's ODBC driver or FreeTDS)."""

    def engine_options(self, url: URL) -> dict[str, Any]:
        return engine_options(url)

    def prepare_engine(self, engine: Engine) -> None:
        """Session settings on every new connection (``SESSION_SETTINGS``, one batch per new
        pooled connection, not per call); typed parameter declarations on every statement;
        idle pings; storages keep pyodbc connections in autocommit where the pool's reset is
        ours (``pool_reset_on_return=None``, the default of ``engine_options``)."""
        ping_when_idle(engine)
        on_connect(engine, SESSION_SETTINGS)
        event.listen(engine, "do_setinputsizes", _declare_parameters)
        if engine.dialect.driver == "pyodbc" and engine.pool._reset_on_return is reset_none:
            keep_autocommit(engine, self.set_autocommit, self.in_autocommit)

    def set_autocommit(self, dbapi_connection: Any, on: bool) -> None:
        if bool(dbapi_connection.autocommit) != on:  # read locally; the switch is a round trip
            dbapi_connection.autocommit = on

    def in_autocommit(self, dbapi_connection: Any) -> bool:
        return bool(dbapi_connection.autocommit)  # pyodbc's own flag, no round trip

    def replayed_listeners(self) -> frozenset[Callable[..., Any]]:
        return frozenset({_declare_parameters})

    def input_sizes(self, binds: Sequence[Any], dialect: Dialect) -> list[Any] | None:
        """The declarations ``_declare_parameters`` gives Core's ``setinputsizes``, computed
        once per statement (they depend on the placeholders' types alone)."""
        return [
            declared_input_size(bind.type, dialect) or core_input_size(bind.type, dialect)
            for bind in binds
        ]

    def is_lock_timeout(self, orig: BaseException) -> bool:
        args: tuple[Any, ...] = getattr(orig, "args", ())
        return bool(args) and re.search(_LOCK_TIMEOUT, str(args[-1])) is not None

    def is_missing_table(self, orig: BaseException) -> bool:
        args: tuple[Any, ...] = getattr(orig, "args", ())
        return bool(args) and (
            args[0] in _MISSING or re.search(_MISSING_NATIVE, str(args[-1])) is not None
        )

    def is_missing_column(self, orig: BaseException) -> bool:
        args: tuple[Any, ...] = getattr(orig, "args", ())
        return bool(args) and (
            args[0] == "42S22" or re.search(_MISSING_COLUMN_NATIVE, str(args[-1])) is not None
        )

    def is_transient_conflict(self, orig: BaseException) -> bool:
        args: tuple[Any, ...] = getattr(orig, "args", ())
        return bool(args) and (
            args[0] == "40001" or re.search(_TRANSIENT_NATIVE, str(args[-1])) is not None
        )

    def is_authentication_failure(self, orig: BaseException) -> bool:
        return any(re.search(_AUTH_NATIVE, str(arg)) for arg in getattr(orig, "args", ()))
