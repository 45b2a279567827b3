"""The two state tables, defined once for every dialect, for a given schema and table names.

Columns, keys and constraint names are those of dpone's existing tables (so they can be
adopted), plus ``revision``, ``extraction_identity``, ``source_fingerprint`` and the receipt
``last_load_id`` on the XMin table, ``process_name`` on the run table and an index on the run
table's ``execution_date`` (retention prunes by it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    Identity,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    false,
    text,
)
from sqlalchemy.sql.elements import conv

from dpone_state.coltypes import (
    MYSQL_TABLE_OPTIONS,
    UTCDateTime,
    big_integer,
    boolean,
    double,
    long_text,
    name_text,
    sql_utc_now,
)
from dpone_state.dialects import DEFAULT_SCHEMA, RunIdKind, find_dialect
from dpone_state.errors import InvalidIdentifierError
from dpone_state.models import (
    KEY_NAME_MAX,
    LOAD_ID_MAX,
    LOAD_STRATEGY_MAX,
    MAX_DAG_ID,
    NAME_MAX,
    PROCESS_NAME_MAX,
    XMIN_TAG_MAX,
)

__all__ = [
    "BIGQUERY_LOCK_TABLE",
    "DEFAULT_RUN_TABLE",
    "DEFAULT_SCHEMA",
    "DEFAULT_XMIN_TABLE",
    "LAST_LOAD_ID",
    "LOADED_AT",
    "NAMING_CONVENTION",
    "UPDATED_AT",
    "StateTables",
    "build_tables",
    "check_backend_names",
    "lock_table",
    "run_id_kind",
    "run_state_table",
    "xmin_extraction_columns",
    "xmin_state_table",
]

DEFAULT_XMIN_TABLE = "etl_xmin_state"
DEFAULT_RUN_TABLE = "etl_run_state"
LOADED_AT = "__dpone__loaded_at"
UPDATED_AT = "__dpone__updated_at"
#: The receipt: the id of the load whose transaction wrote the checkpoint (``None``: a save
#: made outside a load's transaction, or before revision 0005).
LAST_LOAD_ID = "last_load_id"

#: Every constraint and index gets a predictable name: SQL Server would otherwise invent one,
#: and an offline migration script could not drop it. Primary keys carry their legacy names.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def run_id_kind(dialect_name: str | None) -> RunIdKind:
    """The ``id`` column a dialect's run table has (identity when the dialect is unknown)."""
    row = find_dialect(dialect_name)
    return row.run_id_kind if row is not None else "identity"


def new_metadata() -> MetaData:
    """A MetaData with the project's naming convention, marked as dpone-state's own (the SQL
    Server DDL hooks of ``ddl.py`` apply to its tables only)."""
    return MetaData(naming_convention=NAMING_CONVENTION, info={"dpone_state": True})


def _timestamps() -> list[Column[Any]]:
    return [
        Column(LOADED_AT, UTCDateTime(), nullable=False, server_default=sql_utc_now()),
        Column(UPDATED_AT, UTCDateTime(), nullable=False, server_default=sql_utc_now()),
    ]


def xmin_state_table(metadata: MetaData, schema: str | None, name: str) -> Table:
    """The XMin checkpoint table: one row per ``(source_schema, source_table)``."""
    return Table(
        name,
        metadata,
        Column("source_schema", name_text(KEY_NAME_MAX, key=True), nullable=False),
        Column("source_table", name_text(KEY_NAME_MAX, key=True), nullable=False),
        Column("xmin_value", big_integer(), nullable=False),
        Column("is_initial", boolean(), nullable=False, server_default=false()),
        Column("wraparound_detected", boolean(), nullable=False, server_default=false()),
        Column("frozen_xid", big_integer(), nullable=True),
        *_timestamps(),
        Column("revision", big_integer(), nullable=False, server_default=text("0")),
        *xmin_extraction_columns(),
        Column(LAST_LOAD_ID, name_text(LOAD_ID_MAX), nullable=True),
        PrimaryKeyConstraint("source_schema", "source_table", name=conv(f"pk_{name}_source")),
        schema=schema,
        **MYSQL_TABLE_OPTIONS,
    )


def xmin_extraction_columns() -> list[Column[Any]]:
    """``extraction_identity`` and ``source_fingerprint``: additive, nullable (revision 0003)."""
    return [
        Column("extraction_identity", name_text(XMIN_TAG_MAX), nullable=True),
        Column("source_fingerprint", name_text(XMIN_TAG_MAX), nullable=True),
    ]


def run_state_table(
    metadata: MetaData, schema: str | None, name: str, *, id_kind: RunIdKind = "identity"
) -> Table:
    """The run-state table: one row per ``(dag_id, execution_date)``; ``id`` is not a key."""
    id_column: list[Column[int]] = []
    if id_kind == "identity":
        id_column.append(Column("id", big_integer(), Identity(), nullable=False))
    elif id_kind == "plain":
        id_column.append(Column("id", big_integer(), nullable=True))
    table = Table(
        name,
        metadata,
        *id_column,
        Column("dag_id", name_text(MAX_DAG_ID, key=True), nullable=False),
        Column("source_schema", name_text(NAME_MAX), nullable=False),
        Column("source_table", name_text(NAME_MAX), nullable=False),
        Column("target_schema", name_text(NAME_MAX), nullable=False),
        Column("target_table", name_text(NAME_MAX), nullable=False),
        Column("load_strategy", name_text(LOAD_STRATEGY_MAX), nullable=False),
        Column("state", name_text(32), nullable=False),
        Column("execution_date", UTCDateTime(), nullable=False),
        Column("started_at", UTCDateTime(), nullable=False),
        Column("ended_at", UTCDateTime(), nullable=True),
        Column("duration_min", double(), nullable=True),
        Column("error_message", long_text(), nullable=True),
        Column("rows_read", big_integer(), nullable=True),
        Column("rows_written", big_integer(), nullable=True),
        Column("rows_updated", big_integer(), nullable=True),
        Column("rows_deleted", big_integer(), nullable=True),
        *_timestamps(),
        Column("process_name", name_text(PROCESS_NAME_MAX), nullable=True),
        PrimaryKeyConstraint("dag_id", "execution_date", name=conv(f"pk_{name}_dag_execution")),
        schema=schema,
        **MYSQL_TABLE_OPTIONS,
    )
    Index(None, table.c.execution_date).ddl_if(callable_=_has_indexes)
    return table


#: BigQuery: the table of lock rows that make concurrent first writes conflict (one row per
#: XMin table, named after it; see ``upsert.LockedScript``).
BIGQUERY_LOCK_TABLE = "dpone_state_locks"


def lock_table(metadata: MetaData, schema: str | None) -> Table:
    """BigQuery's lock table: ``name`` (the locked table's name) and a counter ``holds``."""
    return Table(
        BIGQUERY_LOCK_TABLE,
        metadata,
        Column("name", name_text(NAME_MAX), nullable=False),
        Column("holds", big_integer(), nullable=False),
        schema=schema,
    )


def _has_indexes(*args: Any, dialect: Any, **kw: Any) -> bool:
    """Skipped where the backend has no ``CREATE INDEX`` (BigQuery: a scan prunes)."""
    row = find_dialect(dialect.name)
    return row is None or row.has_indexes


@dataclass(frozen=True)
class StateTables:
    """Both tables of one state store, in one MetaData."""

    metadata: MetaData
    xmin: Table
    run: Table


def build_tables(
    schema: str | None = DEFAULT_SCHEMA,
    xmin_table: str = DEFAULT_XMIN_TABLE,
    run_table: str = DEFAULT_RUN_TABLE,
    *,
    dialect_name: str | None = None,
) -> StateTables:
    """Both tables in one MetaData; ``dialect_name`` picks the run table's ``id`` column."""
    metadata = new_metadata()
    return StateTables(
        metadata=metadata,
        xmin=xmin_state_table(metadata, schema, xmin_table),
        run=run_state_table(metadata, schema, run_table, id_kind=run_id_kind(dialect_name)),
    )


def _derived_names(table: Table, dialect_name: str) -> list[tuple[str, str]]:
    """(what, name) of the table and every name its DDL creates on ``dialect_name``."""
    names = [("table", table.name)]
    names += [("constraint", str(c.name)) for c in table.constraints if c.name]
    names += [("index", str(i.name)) for i in table.indexes if i.name]
    if dialect_name == "mssql":
        from dpone_state.ddl import default_constraint_name  # noqa: PLC0415 - no import cycle

        names += [
            ("DEFAULT constraint", default_constraint_name(table.name, c.name))
            for c in table.columns
            if c.server_default is not None and c.identity is None
        ]
    return names


def check_backend_names(dialect_name: str, schema: str | None, table: Table) -> None:
    """Refuse a schema or table whose name, or a name derived from it (primary key, index,
    SQL Server DEFAULT constraint), the backend would truncate or refuse (the registry's
    ``name_limit`` and ``bmp_only_names``)."""
    row = find_dialect(dialect_name)
    if row is None:
        return
    for what, name in [("schema", schema or ""), *_derived_names(table, dialect_name)]:
        if not name:
            continue
        field = "schema" if what == "schema" else "table"
        if row.bmp_only_names and any(ord(ch) > 0xFFFF for ch in name):
            raise InvalidIdentifierError(
                field,
                f"{what} name {name!r}: {dialect_name} identifiers hold only characters of the "
                "Basic Multilingual Plane (no emoji or other characters above U+FFFF)",
            )
        if row.name_limit is None:
            continue
        limit, unit = row.name_limit
        size = len(name.encode("utf-8")) if unit == "bytes" else len(name)
        if size > limit:
            raise InvalidIdentifierError(
                field,
                f"{what} name {name!r} is {size} {unit} long; {dialect_name} keeps at most "
                f"{limit}: use a shorter {field} name",
            )
