"""DDL that differs per dialect, in one place: named DEFAULTs on SQL Server and guarded creation.

SQL Server makes every column DEFAULT a constraint and names it randomly when the DDL does
not; a migration (or a DBA's script) could then not drop it by name. The hooks below render
``CONSTRAINT df_<table>_<column> DEFAULT …`` in ``CREATE TABLE`` and in Alembic's
``ADD COLUMN``. The ``…IfMissing`` constructs create a schema, table, column or index only
where it is absent, spelled per dialect (``IF NOT EXISTS``, or an ``IF`` guard on SQL Server),
for offline migration scripts that must adopt existing tables. ``create_tables()`` and the
migrations both use this module.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Index, MetaData, Table, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateColumn, CreateIndex, CreateTable, ExecutableDDLElement
from sqlalchemy.sql.compiler import DDLCompiler

from dpone_state.dialects import BACKENDS

__all__ = [
    "NO_SCHEMA_DIALECTS",
    "AddColumnIfMissing",
    "CreateIndexIfMissing",
    "CreateSchemaIfMissing",
    "CreateTableIfMissing",
    "add_missing_nullable_columns",
    "create_schema_if_missing",
    "default_constraint_name",
    "install_alembic_hooks",
]

#: Dialects without schemas (a schema there would be an attached database, never created).
NO_SCHEMA_DIALECTS = frozenset(
    name for row in BACKENDS if not row.has_schemas for name in row.dialects
)


def default_constraint_name(table_name: str, column_name: str) -> str:
    """The name of a column's DEFAULT constraint on SQL Server: ``df_<table>_<column>``."""
    return f"df_{table_name}_{column_name}"


def _nstring(value: str) -> str:
    """A T-SQL national string literal."""
    return "N'" + value.replace("'", "''") + "'"


# --- SQL Server: named DEFAULT constraints ---------------------------------------------------


def _mssql_column_spec(compiler: DDLCompiler, column: Column[Any], **kw: Any) -> str:
    spec: str = compiler.get_column_specification(column, **kw)
    default = None if column.identity is not None else compiler.get_column_default_string(column)
    if default is None:
        return spec
    suffix = " DEFAULT " + default
    if not spec.endswith(suffix):  # never let SQL Server invent a name
        raise CompileError(f"cannot name the DEFAULT of column {column.name!r}: {spec!r}")
    name = compiler.preparer.quote(default_constraint_name(column.table.name, column.name))
    return f"{spec[: -len(suffix)]} CONSTRAINT {name}{suffix}"


@compiles(CreateColumn, "mssql")
def _create_column_mssql(create: CreateColumn, compiler: DDLCompiler, **kw: Any) -> Any:
    column = create.element
    if column.system:
        return None
    text = _mssql_column_spec(compiler, column, first_pk=kw.get("first_pk", False))
    constraints = " ".join(compiler.process(c) for c in column.constraints)
    return f"{text} {constraints}" if constraints else text


_alembic_hooks_installed = False


def install_alembic_hooks() -> None:
    """Name the DEFAULT of Alembic's ``ADD COLUMN`` on SQL Server too (called by env.py).

    Separate so that importing ``dpone_state`` (the runtime's hot path) does not import Alembic.
    """
    global _alembic_hooks_installed  # noqa: PLW0603 - registration happens once per process
    if _alembic_hooks_installed:
        return
    from alembic.ddl.base import AddColumn, alter_table  # noqa: PLC0415

    @compiles(AddColumn, "mssql")
    def _add_column_mssql(element: AddColumn, compiler: DDLCompiler, **kw: Any) -> str:
        return (
            f"{alter_table(compiler, element.table_name, element.schema)} "
            f"ADD {_mssql_column_spec(compiler, element.column)}"
        )

    _alembic_hooks_installed = True


def _alembic_add_column(element: AddColumnIfMissing, *, if_not_exists: bool) -> Any:
    from alembic.ddl.base import AddColumn  # noqa: PLC0415

    install_alembic_hooks()
    return AddColumn(
        element.table_name, element.column, element.schema, if_not_exists=if_not_exists
    )


def add_missing_nullable_columns(conn: Connection, table: Table) -> list[str]:
    """Add the nullable columns of ``table`` (no default) that the existing table lacks.

    The provisioning path of backends the migrations do not run on (BigQuery), and a safety net
    for ``create_tables()`` elsewhere: additive columns only, never a change to a row.
    Returns the names added.
    """
    inspector = inspect(conn)
    if not inspector.has_table(table.name, schema=table.schema):
        return []
    existing = {c["name"] for c in inspector.get_columns(table.name, schema=table.schema)}
    added = []
    for column in table.columns:
        if column.name in existing or not column.nullable or column.server_default is not None:
            continue
        detached = Column(column.name, column.type, nullable=True)
        Table(table.name, MetaData(), detached, schema=table.schema)
        element = AddColumnIfMissing(table.name, detached, table.schema)
        # BigQuery's table metadata can lag its catalog (an emulator's does): guard there too.
        guarded = conn.dialect.name == "bigquery"
        conn.execute(_alembic_add_column(element, if_not_exists=guarded))
        added.append(column.name)
    return added


# --- Guarded creation ------------------------------------------------------------------------


class CreateSchemaIfMissing(ExecutableDDLElement):
    """``CREATE SCHEMA`` only where it is missing (the database on MySQL/MariaDB)."""

    def __init__(self, schema: str) -> None:
        self.schema = schema


@compiles(CreateSchemaIfMissing)
def _create_schema(element: CreateSchemaIfMissing, compiler: DDLCompiler, **kw: Any) -> str:
    return f"CREATE SCHEMA IF NOT EXISTS {compiler.preparer.quote_schema(element.schema)}"


@compiles(CreateSchemaIfMissing, "mssql")
def _create_schema_mssql(element: CreateSchemaIfMissing, compiler: DDLCompiler, **kw: Any) -> str:
    # CREATE SCHEMA must be alone in its batch: run it as dynamic SQL behind the guard.
    create = f"CREATE SCHEMA {compiler.preparer.quote_schema(element.schema)}"
    return (
        f"IF SCHEMA_ID({_nstring(element.schema)}) IS NULL\n"
        f"BEGIN\n    EXEC sp_executesql {_nstring(create)};\nEND"
    )


def _mssql_object(compiler: DDLCompiler, table: str, schema: str | None) -> str:
    quote = compiler.preparer.quote
    return _nstring(f"{quote(schema)}.{quote(table)}" if schema else quote(table))


def _guarded(condition: str, statement: str) -> str:
    return f"IF {condition}\nBEGIN\n{statement.strip()};\nEND"


class CreateTableIfMissing(ExecutableDDLElement):
    """``CREATE TABLE`` only where the table is missing."""

    def __init__(self, table: Table) -> None:
        self.table = table


@compiles(CreateTableIfMissing)
def _create_table(element: CreateTableIfMissing, compiler: DDLCompiler, **kw: Any) -> str:
    return str(compiler.process(CreateTable(element.table, if_not_exists=True), **kw))


@compiles(CreateTableIfMissing, "mssql")
def _create_table_mssql(element: CreateTableIfMissing, compiler: DDLCompiler, **kw: Any) -> str:
    table = element.table
    target = _mssql_object(compiler, table.name, table.schema)
    return _guarded(
        f"OBJECT_ID({target}, N'U') IS NULL", compiler.process(CreateTable(table), **kw)
    )


class AddColumnIfMissing(ExecutableDDLElement):
    """Alembic's ``ADD COLUMN`` only where the column is missing."""

    def __init__(self, table_name: str, column: Column[Any], schema: str | None) -> None:
        self.table_name = table_name
        self.column = column
        self.schema = schema
        if getattr(column, "table", None) is None:  # DDL needs a table-bound column
            Table(table_name, MetaData(), column, schema=schema)


@compiles(AddColumnIfMissing)
def _add_column(element: AddColumnIfMissing, compiler: DDLCompiler, **kw: Any) -> str:
    return str(compiler.process(_alembic_add_column(element, if_not_exists=True), **kw))


@compiles(AddColumnIfMissing, "mssql")
def _add_column_mssql_guarded(element: AddColumnIfMissing, compiler: DDLCompiler, **kw: Any) -> str:
    target = _mssql_object(compiler, element.table_name, element.schema)
    add = compiler.process(_alembic_add_column(element, if_not_exists=False), **kw)
    return _guarded(f"COL_LENGTH({target}, {_nstring(element.column.name)}) IS NULL", add)


class CreateIndexIfMissing(ExecutableDDLElement):
    """``CREATE INDEX`` only where no index of that name exists on the table."""

    def __init__(self, index: Index) -> None:
        self.index = index


@compiles(CreateIndexIfMissing)
def _create_index(element: CreateIndexIfMissing, compiler: DDLCompiler, **kw: Any) -> str:
    return str(compiler.process(CreateIndex(element.index, if_not_exists=True), **kw))


@compiles(CreateIndexIfMissing, "mssql")
def _create_index_mssql(element: CreateIndexIfMissing, compiler: DDLCompiler, **kw: Any) -> str:
    index = element.index
    table = index.table
    assert table is not None
    condition = (
        f"NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = {_nstring(str(index.name))} "
        f"AND object_id = OBJECT_ID({_mssql_object(compiler, table.name, table.schema)}))"
    )
    return _guarded(condition, compiler.process(CreateIndex(index), **kw))


def create_schema_if_missing(connection: Connection, schema: str | None) -> bool:
    """Create ``schema`` where the dialect has schemas and it is missing; whether it was created."""
    if schema is None or connection.dialect.name in NO_SCHEMA_DIALECTS:
        return False
    if inspect(connection).has_schema(schema):
        return False
    connection.execute(CreateSchemaIfMissing(schema))
    return True
