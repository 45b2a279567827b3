"""DDL that differs per dialect, in one place: named DEFAULTs on SQL Server and guarded creation.

SQL Server makes every column DEFAULT a constraint and names it randomly when the DDL does
not; a migration (or a DBA's script) could then not drop it by name. The hooks below render
``CONSTRAINT df_<table>_<column> DEFAULT …`` in ``CREATE TABLE`` of dpone-state's own tables
(those in a ``new_metadata()``, marked in ``MetaData.info``) and in the ``AddStateColumn``
construct the migrations use; every other table's DDL compiles exactly as SQLAlchemy and
Alembic compile it (importing dpone-state changes nobody else's SQL).

The ``…IfMissing`` constructs create a schema, table, column or index only
where it is absent, spelled per dialect (``IF NOT EXISTS``, or an ``IF`` guard on SQL Server),
for offline migration scripts that must adopt existing tables. ``create_tables()`` and the
migrations both use this module.
"""

from __future__ import annotations

import hashlib
import shlex
from typing import Any

from sqlalchemy import Column, Index, MetaData, Table, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateColumn, CreateIndex, CreateTable, ExecutableDDLElement
from sqlalchemy.sql.compiler import DDLCompiler

from dpone_state.dialects import BACKENDS
from dpone_state.errors import StateConfigError

__all__ = [
    "NO_SCHEMA_DIALECTS",
    "OWN_METADATA_KEY",
    "AddColumnIfMissing",
    "AddStateColumn",
    "CreateIndexIfMissing",
    "CreateSchemaIfMissing",
    "CreateTableIfMissing",
    "add_missing_nullable_columns",
    "capped_name",
    "create_schema_if_missing",
    "default_constraint_name",
]

#: Dialects without schemas (a schema there would be an attached database, never created).
NO_SCHEMA_DIALECTS = frozenset(
    name for row in BACKENDS if not row.has_schemas for name in row.dialects
)
#: Key in ``MetaData.info`` that marks dpone-state's own tables (``tables.new_metadata()``).
OWN_METADATA_KEY = "dpone_state"


def _is_own(column: Column[Any]) -> bool:
    table = getattr(column, "table", None)
    metadata = getattr(table, "metadata", None)
    return bool(metadata is not None and metadata.info.get(OWN_METADATA_KEY))


#: SQL Server's identifier limit (``sysname`` is ``nvarchar(128)``).
MSSQL_MAX_IDENTIFIER = 128


def capped_name(name: str, limit: int) -> str:
    """``name`` if it fits ``limit`` characters, else its first ``limit - 8`` characters, ``_`` and
    four hex digits of its MD5: deterministic, and the rule SQLAlchemy applies to the names the
    naming convention derives (indexes, and the ``conv`` primary-key names of tables.py)."""
    if len(name) <= limit:
        return name
    return f"{name[: limit - 8]}_{hashlib.md5(name.encode()).hexdigest()[-4:]}"  # noqa: S324


def default_constraint_name(table_name: str, column_name: str) -> str:
    """The name of a column's DEFAULT constraint on SQL Server: ``df_<table>_<column>``, capped
    at SQL Server's 128 characters (``capped_name``)."""
    return capped_name(f"df_{table_name}_{column_name}", MSSQL_MAX_IDENTIFIER)


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
    if not _is_own(column):  # someone else's table: SQLAlchemy's own rendering, untouched
        return compiler.visit_create_column(create, **kw)  # type: ignore[no-untyped-call]
    if column.system:
        return None
    text = _mssql_column_spec(compiler, column, first_pk=kw.get("first_pk", False))
    constraints = " ".join(compiler.process(c) for c in column.constraints)
    return f"{text} {constraints}" if constraints else text


class AddStateColumn(ExecutableDDLElement):
    """Alembic's ``ADD COLUMN`` for a column of dpone-state's tables; on SQL Server its DEFAULT
    is a named constraint (``df_<table>_<column>``)."""

    def __init__(self, table_name: str, column: Column[Any], schema: str | None) -> None:
        self.table_name = table_name
        self.column = column
        self.schema = schema
        if getattr(column, "table", None) is None:  # DDL needs a table-bound column
            Table(table_name, MetaData(), column, schema=schema)


def _alembic_add_column(
    table_name: str, column: Column[Any], schema: str | None, *, if_not_exists: bool
) -> Any:
    from alembic.ddl.base import AddColumn  # noqa: PLC0415 - Alembic stays off the hot path

    return AddColumn(table_name, column, schema, if_not_exists=if_not_exists)


@compiles(AddStateColumn)
def _add_state_column(element: AddStateColumn, compiler: DDLCompiler, **kw: Any) -> str:
    add = _alembic_add_column(
        element.table_name, element.column, element.schema, if_not_exists=False
    )
    return str(compiler.process(add, **kw))


@compiles(AddStateColumn, "mssql")
def _add_state_column_mssql(element: AddStateColumn, compiler: DDLCompiler, **kw: Any) -> str:
    from alembic.ddl.base import alter_table  # noqa: PLC0415

    return (
        f"{alter_table(compiler, element.table_name, element.schema)} "
        f"ADD {_mssql_column_spec(compiler, element.column)}"
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
        # BigQuery's table metadata can lag its catalog (an emulator's does): guard there too.
        guarded = conn.dialect.name == "bigquery"
        conn.execute(_alembic_add_column(table.name, detached, table.schema, if_not_exists=guarded))
        added.append(column.name)
    return added


# --- Guarded creation ------------------------------------------------------------------------


class CreateSchemaIfMissing(ExecutableDDLElement):
    """``CREATE SCHEMA`` only where it is missing (the database on MySQL/MariaDB, the dataset
    on BigQuery, created in ``location`` when one is given)."""

    def __init__(self, schema: str, location: str | None = None) -> None:
        self.schema = schema
        self.location = location


@compiles(CreateSchemaIfMissing)
def _create_schema(element: CreateSchemaIfMissing, compiler: DDLCompiler, **kw: Any) -> str:
    return f"CREATE SCHEMA IF NOT EXISTS {compiler.preparer.quote_schema(element.schema)}"


@compiles(CreateSchemaIfMissing, "bigquery")
def _create_schema_bigquery(
    element: CreateSchemaIfMissing, compiler: DDLCompiler, **kw: Any
) -> str:
    create = f"CREATE SCHEMA IF NOT EXISTS {compiler.preparer.quote_schema(element.schema)}"
    if element.location:
        location = element.location.replace("\\", "\\\\").replace("'", "\\'")
        create += f" OPTIONS(location='{location}')"
    return create


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


@compiles(CreateTableIfMissing, "bigquery")
def _create_table_bigquery(element: CreateTableIfMissing, compiler: DDLCompiler, **kw: Any) -> str:
    """``CREATE TABLE IF NOT EXISTS … CLUSTER BY <key>``: BigQuery has no keys or indexes, so a
    lookup by key reads only the blocks clustering puts that key in."""
    table = element.table
    create = str(compiler.process(CreateTable(table, if_not_exists=True), **kw)).rstrip()
    key = [compiler.preparer.quote(column.name) for column in table.primary_key.columns]
    return f"{create} CLUSTER BY {', '.join(key[:4])}" if key else create


@compiles(CreateTableIfMissing, "mssql")
def _create_table_mssql(element: CreateTableIfMissing, compiler: DDLCompiler, **kw: Any) -> str:
    """Create the table where missing; where it exists, THROW unless it has every column of
    ``table`` and no NOT NULL column without a default that dpone-state would never write
    (dpone's newer layouts: ``run_state_key``, ``process_name NOT NULL``) — the offline form of
    the adoption check of ``migrations/support.py``."""
    table = element.table
    target = _mssql_object(compiler, table.name, table.schema)
    created = _guarded(
        f"OBJECT_ID({target}, N'U') IS NULL", compiler.process(CreateTable(table), **kw)
    )
    missing = " OR ".join(
        f"COL_LENGTH({target}, {_nstring(column.name)}) IS NULL" for column in table.columns
    )
    known = ", ".join(_nstring(column.name) for column in table.columns)
    unwritten = (
        f"EXISTS (SELECT 1 FROM sys.columns WHERE object_id = OBJECT_ID({target}) "
        "AND is_nullable = 0 AND default_object_id = 0 AND is_identity = 0 AND is_computed = 0 "
        f"AND name NOT IN ({known}))"
    )
    process_name = f"COLUMNPROPERTY(OBJECT_ID({target}), N'process_name', 'AllowsNull') = 0"
    message = _nstring(
        f"dpone-state: {table.fullname} exists but is not dpone's v1 state table (a column is "
        "missing, or it has NOT NULL columns dpone-state never writes): not adopted"
    )
    # Checked after the (guarded) creation: a table created here has the shape by definition.
    return (
        f"{created};\nIF {missing} OR {unwritten} OR {process_name}\n    THROW 50000, {message}, 1"
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
    add = _alembic_add_column(
        element.table_name, element.column, element.schema, if_not_exists=True
    )
    return str(compiler.process(add, **kw))


@compiles(AddColumnIfMissing, "mssql")
def _add_column_mssql_guarded(element: AddColumnIfMissing, compiler: DDLCompiler, **kw: Any) -> str:
    target = _mssql_object(compiler, element.table_name, element.schema)
    add = compiler.process(AddStateColumn(element.table_name, element.column, element.schema), **kw)
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


def sqlite_schema_reason(schema: str, provision: str) -> str:
    """What a schema means on SQLite, for a ``schema`` that is not attached (``provision``:
    the command that provisions the file itself)."""
    return (
        f"on SQLite a schema names an attached database (ATTACH DATABASE 'file' AS {schema}), "
        f"and none called {schema!r} is attached. Leave the schema out (schema=None, or "
        f"--no-schema: the tables live in the file itself, which `{provision}` provisions), or "
        "attach a database of that name on every connection"
    )


def sqlite_schema_attached(connection: Connection, schema: str) -> bool:
    """Whether an SQLite connection has a database attached as ``schema``."""
    return schema in {row[1] for row in connection.exec_driver_sql("PRAGMA database_list")}


def create_schema_if_missing(connection: Connection, schema: str | None) -> bool:
    """Create ``schema`` where the dialect has schemas and it is missing; whether it was created.

    On SQLite a schema is an attached database, which no DDL creates: one not attached is a
    ``StateConfigError`` that says so.
    """
    if schema is None:
        return False
    no_schemas = connection.dialect.name in NO_SCHEMA_DIALECTS  # SQLite: attached databases
    if no_schemas and not sqlite_schema_attached(connection, schema):
        url = connection.engine.url.render_as_string(hide_password=True)
        raise StateConfigError(
            "schema", sqlite_schema_reason(schema, f"dpone-state upgrade --url {shlex.quote(url)}")
        )
    if no_schemas:
        return False
    if inspect(connection).has_schema(schema):
        return False
    connection.execute(CreateSchemaIfMissing(schema, _bigquery_location(connection)))
    return True


def _bigquery_location(connection: Connection) -> str | None:
    """The location of the BigQuery client behind ``connection`` (None elsewhere)."""
    if connection.dialect.name != "bigquery":
        return None
    client = getattr(connection.connection.dbapi_connection, "_client", None)
    location = getattr(client, "location", None)
    return location if isinstance(location, str) and location else None
