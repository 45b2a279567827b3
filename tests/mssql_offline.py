"""SQL Server without a server: the statements the storages emit, captured and compiled.

The storages build their statements in their own code; a capturing subclass stops each call at
``_write`` / ``_read`` (where the statement and its parameters would go to the database) and
hands both back. They are then compiled the way ``Connection.execute`` compiles them, for the
``mssql+pyodbc`` dialect in the state it has after connecting to SQL Server 2022 — no database,
no mock of one: this is the compiler that runs in production.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.mssql import pyodbc as mssql_pyodbc
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

from dpone_state import RunStateStorage, XMinStateStorage
from dpone_state.mssql import declared_input_size, declared_type_name

#: ``SERVERPROPERTY('ProductVersion')`` of SQL Server 2022; sets the dialect's version switches.
SQL_SERVER_2022 = (16, 0, 1000, 6)


def _no_server() -> Any:
    raise RuntimeError("compile-only engine: there is no SQL Server behind it")


def compile_only_engine() -> Engine:
    """An Engine with the real ``mssql+pyodbc`` dialect, initialized as after connecting to SQL
    Server 2022, that cannot connect (no pyodbc import, no ODBC driver needed)."""
    dialect = mssql_pyodbc.dialect(paramstyle="qmark")  # pyodbc's paramstyle
    dialect.server_version_info = SQL_SERVER_2022
    dialect._setup_version_attributes()
    dialect._supports_nvarchar_max = True
    return Engine(NullPool(_no_server), dialect, make_url("mssql+pyodbc://"))


@dataclass
class Captured(Exception):
    """A statement a storage was about to execute, with its parameters."""

    statement: Any
    params: Mapping[str, Any]


class _Capture:
    def _write(self, statement: Any, params: Mapping[str, Any]) -> Any:
        raise Captured(statement, dict(params))

    def _read(self, statement: Any, params: Mapping[str, Any]) -> Any:
        raise Captured(statement, dict(params))


class CapturingXMin(_Capture, XMinStateStorage):
    """``XMinStateStorage`` whose calls stop where the database would be reached."""


class CapturingRuns(_Capture, RunStateStorage):
    """``RunStateStorage`` whose calls stop where the database would be reached."""


def capture(call: Callable[[], object]) -> Captured:
    """The one statement ``call`` sends (each method sends exactly one)."""
    try:
        call()
    except Captured as captured:
        return captured
    raise AssertionError("the call reached no database statement")


@dataclass
class Emitted:
    """A statement as the driver receives it: T-SQL text and parameter names in order."""

    sql: str
    parameters: list[tuple[str, str, Any]]  # (name, declared SQL type, value)


def emit(engine: Engine, captured: Captured) -> Emitted:
    """Compile and expand like ``Connection.execute`` does: parameter names as column keys,
    literal-execute values (``TOP n``) rendered into the text; every placeholder must get a
    value from the call (``construct_expanded_state`` raises otherwise)."""
    params = dict(captured.params)
    compiled = captured.statement.compile(dialect=engine.dialect, column_keys=sorted(params))
    expanded = compiled.construct_expanded_state(params)
    assert expanded.positiontup is not None
    parameters = []
    for name in expanded.positiontup:
        # The type the parameter is declared with: the engine's do_setinputsizes hook.
        size = declared_input_size(compiled.binds[name].type, engine.dialect)
        parameters.append((name, declared_type_name(size), expanded.parameters[name]))
    return Emitted(expanded.statement, parameters)


def ddl(engine: Engine, metadata: sa.MetaData) -> list[str]:
    """The DDL ``metadata.create_all`` sends (compiled by a compile-only mock engine)."""
    statements: list[str] = []

    def executor(element: Any, *args: Any, **kw: Any) -> None:
        statements.append(str(element.compile(dialect=engine.dialect)).strip())

    mock = sa.create_mock_engine(engine.url, executor)
    metadata.create_all(mock, checkfirst=False)  # type: ignore[arg-type]
    return statements
