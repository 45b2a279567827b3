"""SQL Server (``mssql+pyodbc``): schema ``etl_state``, ``MERGE … WITH (HOLDLOCK)``.

The MERGE itself is compiled in ``dpone_state.upsert`` (``MSSQL_MERGE``); this module holds the
backend names and the engine options: ``fast_executemany``, an idle-connection ping, a login timeout, and
``SET NOCOUNT OFF`` on every new connection (row counts decide ``upsert_applied`` and the
delete counts).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Engine

from dpone_state.engine import ping_when_idle
from dpone_state.storage import RunStateStorage, XMinStateStorage

__all__ = [
    "FREETDS_TDS_VERSION",
    "LOGIN_TIMEOUT_SECONDS",
    "MSSQLRunStateStorage",
    "MSSQLXMinStateStorage",
    "MssqlRunStateStorage",
    "MssqlXMinStateStorage",
    "engine_options",
    "prepare_engine",
]

#: Seconds pyodbc waits for a login (ODBC ``SQL_ATTR_LOGIN_TIMEOUT``) before giving up.
LOGIN_TIMEOUT_SECONDS = 15

#: URL query keys that already set a login timeout (then ours is not added).
_TIMEOUT_KEYS = frozenset({"timeout", "logintimeout", "login_timeout"})


#: FreeTDS protocol version: 7.3+ returns DATETIME2 as a datetime (older ones send a string).
FREETDS_TDS_VERSION = "7.4"


def engine_options(url: URL) -> dict[str, Any]:
    """``fast_executemany`` (pyodbc array binding), a login timeout, and for FreeTDS
    ``TDS_Version=7.4`` unless the URL sets one (pyodbc adds unknown keywords to the
    connection string)."""
    options: dict[str, Any] = {}
    if url.get_driver_name() != "pyodbc":
        return options
    options["fast_executemany"] = True
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


def prepare_engine(engine: Engine) -> None:
    """Make every new connection report row counts (``SET NOCOUNT OFF``); ping idle ones.

    A server configured with ``user options`` 512 (or a login trigger) starts sessions with
    NOCOUNT ON; then every row count reads -1, and a MERGE that wrote would look like one
    that did not. One statement per new pooled connection, not per call.
    """
    ping_when_idle(engine)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SET NOCOUNT OFF")
        finally:
            cursor.close()


class MssqlXMinStateStorage(XMinStateStorage):
    """XMin checkpoints in SQL Server (schema ``etl_state`` by default)."""

    dialects = ("mssql",)


class MssqlRunStateStorage(RunStateStorage):
    """Run-state rows in SQL Server (schema ``etl_state`` by default)."""

    dialects = ("mssql",)


#: dpone's names of the SQL Server storages (``dpone.runtime.state.mssql``).
MSSQLXMinStateStorage = MssqlXMinStateStorage
MSSQLRunStateStorage = MssqlRunStateStorage
