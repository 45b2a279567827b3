"""SQL Server without a server: the statements the storages emit, captured and compiled.

The storages build their statements in their own code; a capturing subclass stops each call at
``_write`` / ``_read`` (where the statement and its parameters would go to the database) and
hands both back. They are then compiled the way ``Connection.execute`` compiles them, for the
``mssql+pyodbc`` dialect in the state it has after connecting to SQL Server 2022 — no database,
no mock of one: this is the compiler that runs in production.

What the storages ask of the driver per call (one ``execute``, no ``commit``/``rollback``,
autocommit switched once per connection) is recorded by ``RecordingPyodbc``, a stand-in for
the pyodbc module under the production dialect, pool and hooks (``recording_engine``).
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

import sqlalchemy as sa
import sqlglot
from sqlalchemy.dialects.mssql import pyodbc as mssql_pyodbc
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

from dpone_state import RunStateStorage, XMinStateStorage, create_state_engine
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


class _Error(Exception):
    pass


class RecordingPyodbc:
    """A stand-in for the pyodbc module, for SQL Server only (no server runs here): its
    connections record what the library asks of the driver (``calls``), answer every write
    with one changed row and every query with no rows. The dialect, the pool, the hooks and
    the storages are the production ones (``recording_engine``)."""

    paramstyle = "qmark"
    version = "5.2.0"
    SQL_VARCHAR, SQL_WVARCHAR = 12, -9
    Warning = _Error
    Error = _Error
    InterfaceError = type("InterfaceError", (_Error,), {})
    DatabaseError = type("DatabaseError", (_Error,), {})
    DataError = type("DataError", (DatabaseError,), {})
    OperationalError = type("OperationalError", (DatabaseError,), {})
    IntegrityError = type("IntegrityError", (DatabaseError,), {})
    InternalError = type("InternalError", (DatabaseError,), {})
    ProgrammingError = type("ProgrammingError", (DatabaseError,), {})
    NotSupportedError = type("NotSupportedError", (DatabaseError,), {})
    Binary = bytes
    BinaryNull = None
    # pyodbc's DB-API type objects
    STRING, NUMBER, DATETIME, DATE, TIME, BINARY, ROWID = (
        str,
        decimal.Decimal,
        datetime,
        date,
        time,
        bytearray,
        int,
    )

    def __init__(self) -> None:
        #: Every call on every connection, in order: ``(connection number, what, *details)``.
        self.calls: list[tuple[Any, ...]] = []
        self.connections: list[RecordingConnection] = []

    def connect(self) -> RecordingConnection:
        connection = RecordingConnection(self, len(self.connections))
        self.connections.append(connection)
        self.calls.append((connection.number, "connect"))
        return connection

    class Cursor:  # the dialect looks for ``nextset`` on the module's cursor class
        def nextset(self) -> None: ...


class RecordingConnection:
    """A pyodbc ``Connection`` stand-in: ``autocommit`` starts off (pyodbc's default) and is
    read locally, as pyodbc reads it; setting it is recorded (the driver's round trip)."""

    def __init__(self, driver: RecordingPyodbc, number: int) -> None:
        self.driver = driver
        self.number = number
        self._autocommit = False

    def _record(self, *call: Any) -> None:
        self.driver.calls.append((self.number, *call))

    @property
    def autocommit(self) -> bool:
        return self._autocommit

    @autocommit.setter
    def autocommit(self, on: bool) -> None:
        self._record("autocommit", on)
        self._autocommit = on

    def cursor(self) -> RecordingCursor:
        return RecordingCursor(self)

    def commit(self) -> None:
        self._record("commit")

    def rollback(self) -> None:
        self._record("rollback")

    def close(self) -> None:
        self._record("close")

    def add_output_converter(self, sql_type: int, converter: Any) -> None: ...


class RecordingCursor:
    """A pyodbc ``Cursor`` stand-in: ``execute`` and ``setinputsizes`` are recorded."""

    def __init__(self, connection: RecordingConnection) -> None:
        self.connection = connection
        self.rowcount = -1
        self.description: list[tuple[Any, ...]] | None = None

    def setinputsizes(self, sizes: list[Any]) -> None:
        self.connection._record("setinputsizes", list(sizes))

    def execute(self, sql: str, parameters: Any = ()) -> RecordingCursor:
        self.connection._record("execute", sql, tuple(parameters))
        tree = sqlglot.parse_one(sql, read="tsql") if sql.lstrip().startswith("SELECT") else None
        if isinstance(tree, sqlglot.exp.Select):  # no rows, columns as the query names them
            self.description = [(f"c{i}", str) + (None,) * 5 for i in range(len(tree.selects))]
        else:
            self.rowcount = 1
        return self

    def fetchall(self) -> list[Any]:
        return []

    def fetchone(self) -> Any:
        return None

    def close(self) -> None: ...


def _as_sql_server_2022(dialect: Any) -> Callable[[Any], None]:
    def initialize(connection: Any) -> None:  # what connecting to SQL Server 2022 sets
        dialect.server_version_info = SQL_SERVER_2022
        dialect._setup_version_attributes()
        dialect._supports_nvarchar_max = True
        dialect.default_schema_name = "dbo"

    return initialize


def recording_engine(driver: RecordingPyodbc, **options: Any) -> Engine:
    """``create_state_engine`` for ``mssql+pyodbc`` (options and hooks as in production) on
    ``driver``'s recording connections; the dialect initialized as after connecting to SQL
    Server 2022."""
    engine = create_state_engine(
        "mssql+pyodbc://u:p@sqlserver.invalid/db?driver=FreeTDS",
        module=driver,
        creator=driver.connect,
        **options,
    )
    engine.dialect.initialize = _as_sql_server_2022(engine.dialect)  # type: ignore[method-assign]
    return engine
