"""SQL Server (``mssql+pyodbc``): schema ``etl_state``, ``MERGE … WITH (HOLDLOCK)``.

The MERGE is compiled in ``dpone_state.upsert``; its facts are the ``mssql`` row of
``dpone_state.dialects``; its hooks (login timeout, session settings, parameter declarations,
idle ping) are in ``dpone_state.backends.mssql``; this module holds its storage classes.
"""

from __future__ import annotations

from dpone_state.backends.mssql import (
    FREETDS_TDS_VERSION,
    LOCK_TIMEOUT_MS,
    LOGIN_TIMEOUT_SECONDS,
    SESSION_SETTINGS,
    MssqlHooks,
    declared_input_size,
    declared_type_name,
    engine_options,
)
from dpone_state.storage import RunStateStorage, XMinStateStorage

__all__ = [
    "FREETDS_TDS_VERSION",
    "LOCK_TIMEOUT_MS",
    "LOGIN_TIMEOUT_SECONDS",
    "SESSION_SETTINGS",
    "MSSQLRunStateStorage",
    "MSSQLXMinStateStorage",
    "MssqlRunStateStorage",
    "MssqlXMinStateStorage",
    "declared_input_size",
    "declared_type_name",
    "engine_options",
    "prepare_engine",
]

#: The hooks' connect-time setup, under its former name.
prepare_engine = MssqlHooks().prepare_engine


class MssqlXMinStateStorage(XMinStateStorage):
    """XMin checkpoints in SQL Server (schema ``etl_state`` by default)."""

    backend = "mssql"


class MssqlRunStateStorage(RunStateStorage):
    """Run-state rows in SQL Server (schema ``etl_state`` by default)."""

    backend = "mssql"


#: dpone's names of the SQL Server storages (``dpone.runtime.state.mssql``).
MSSQLXMinStateStorage = MssqlXMinStateStorage
MSSQLRunStateStorage = MssqlRunStateStorage
