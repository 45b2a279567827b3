"""SQL Server's hooks: ``fast_executemany``, a login timeout, FreeTDS's protocol version,
``SET NOCOUNT OFF`` on every new connection, an idle ping, and its driver's error codes.

Row counts decide ``upsert_applied`` and the delete counts, hence NOCOUNT OFF: a server
configured with ``user options`` 512 (or a login trigger) starts sessions with NOCOUNT ON,
then every row count reads -1 and a MERGE that wrote would look like one that did not.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.engine import URL, Engine

from dpone_state.backends import on_connect, ping_when_idle
from dpone_state.dialects import BackendHooks

__all__ = ["FREETDS_TDS_VERSION", "LOGIN_TIMEOUT_SECONDS", "MssqlHooks", "engine_options"]

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


#: Error 208 "Invalid object name" (missing table or schema): pyodbc puts the ODBC SQLSTATE
#: 42S02 in ``args[0]`` and the native number, as ``(208)``, in the message.
_MISSING = frozenset({"42S02"})
_MISSING_NATIVE = re.compile(r"\(208\) \(SQL\w+\)\s*$")
#: Msg 207 "Invalid column name" (SQLSTATE 42S22): an unmigrated (or downgraded) dpone table.
_MISSING_COLUMN_NATIVE = re.compile(r"\(207\) \(SQL\w+\)\s*$")
#: Deadlock victim (1205) and snapshot conflict (3960), or SQLSTATE 40001.
_TRANSIENT_NATIVE = re.compile(r"\((1205|3960)\) \(SQL\w+\)\s*$")


class MssqlHooks(BackendHooks):
    """``mssql+pyodbc`` (Microsoft's ODBC driver or FreeTDS)."""

    def engine_options(self, url: URL) -> dict[str, Any]:
        return engine_options(url)

    def prepare_engine(self, engine: Engine) -> None:
        """Make every new connection report row counts (``SET NOCOUNT OFF``); ping idle ones.

        One statement per new pooled connection, not per call.
        """
        ping_when_idle(engine)
        on_connect(engine, "SET NOCOUNT OFF")

    def is_missing_table(self, orig: BaseException) -> bool:
        args: tuple[Any, ...] = getattr(orig, "args", ())
        return bool(args) and (
            args[0] in _MISSING or _MISSING_NATIVE.search(str(args[-1])) is not None
        )

    def is_missing_column(self, orig: BaseException) -> bool:
        args: tuple[Any, ...] = getattr(orig, "args", ())
        return bool(args) and (
            args[0] == "42S22" or _MISSING_COLUMN_NATIVE.search(str(args[-1])) is not None
        )

    def is_transient_conflict(self, orig: BaseException) -> bool:
        args: tuple[Any, ...] = getattr(orig, "args", ())
        return bool(args) and (
            args[0] == "40001" or _TRANSIENT_NATIVE.search(str(args[-1])) is not None
        )
