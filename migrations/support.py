"""What the revisions share: the resolved settings and operations that adopt what exists.

Online, "only if absent" is decided by inspecting the database (exact on every dialect);
offline, the statements carry their own guard (``IF NOT EXISTS`` / T-SQL ``IF``) so a DBA's
script also adopts existing tables.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from alembic import context, op
from sqlalchemy import Column, Index, Table, func, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateIndex, CreateTable

from dpone_state.ddl import (
    AddColumnIfMissing,
    AddStateColumn,
    CreateIndexIfMissing,
    CreateTableIfMissing,
    default_constraint_name,
)
from dpone_state.errors import IncompatibleTableError
from dpone_state.migrate import DowngradeRefusedError, MigrationSettings

__all__ = [
    "RESOLVED_KEY",
    "add_bigquery_column",
    "add_column_if_absent",
    "create_index_if_absent",
    "create_table_if_absent",
    "dialect_name",
    "drop_column",
    "drop_index",
    "refuse_if_tables_hold_rows",
    "refuse_to_drop_rows",
    "set_bigquery_default",
    "settings",
    "shape_differences",
]

log = logging.getLogger("dpone_state.migrations")

#: Key in ``Config.attributes`` of the settings resolved for this run's dialect.
RESOLVED_KEY = "dpone_state_resolved"


def settings() -> MigrationSettings:
    """The schema and table names of this run (resolved by ``env.py``)."""
    resolved: MigrationSettings = context.config.attributes[RESOLVED_KEY]
    return resolved


def dialect_name() -> str:
    """The dialect this run migrates (or writes SQL for)."""
    return str(op.get_context().dialect.name)


def _inspector() -> Any:
    return inspect(op.get_bind())


def create_table_if_absent(table: Table) -> None:
    """Create ``table`` unless a table of that name exists (adoption keeps it as it is, after
    checking it is the shape ``table`` describes: ``IncompatibleTableError`` otherwise).

    BigQuery's tables are created clustered by their key (``CreateTableIfMissing``).
    """
    if context.is_offline_mode():
        op.execute(CreateTableIfMissing(table))
    elif _inspector().has_table(table.name, schema=table.schema):
        differences = shape_differences(table)
        if differences:
            raise IncompatibleTableError(table.fullname, differences)
        log.info("adopting the existing table %s", table.fullname)
    elif dialect_name() == "bigquery":
        op.execute(CreateTableIfMissing(table))
    else:
        op.execute(CreateTable(table))


def shape_differences(table: Table) -> list[str]:
    """How the existing table of ``table``'s name differs from it, where adopting it would break
    it: columns missing, columns it requires that dpone-state never writes (dpone's newer
    process-scoped run table: ``run_state_key``, ``process_name NOT NULL``), another key."""
    inspector = _inspector()
    found = {c["name"]: c for c in inspector.get_columns(table.name, schema=table.schema)}
    differences = []
    missing = [column.name for column in table.columns if column.name not in found]
    if missing:
        differences.append(f"missing column(s) {', '.join(missing)}")
    for name, column in found.items():
        if name in table.c or column.get("nullable", True):
            continue
        if (
            column.get("default") is None
            and not column.get("identity")
            and column.get("autoincrement") is not True
        ):
            differences.append(f"column {name} is NOT NULL and dpone-state never writes it")
    process_name = found.get("process_name")
    if process_name is not None and not process_name.get("nullable", True):
        differences.append("process_name is NOT NULL (dpone's process-scoped run table)")
    if dialect_name() != "bigquery":  # BigQuery has no enforced keys
        expected = [column.name for column in table.primary_key.columns]
        key = inspector.get_pk_constraint(table.name, schema=table.schema)
        actual = list(key.get("constrained_columns") or [])
        if actual != expected:
            differences.append(
                f"primary key is ({', '.join(actual)}), expected ({', '.join(expected)})"
            )
    return differences


def add_column_if_absent(table: str, column: Column[Any], schema: str | None) -> None:
    """Add ``column`` to ``table`` unless the table already has a column of that name.

    BigQuery cannot add a REQUIRED column: there it is added NULLABLE, its default set, and the
    rows it already holds get the default (``backfill_bigquery_column``).
    """
    if dialect_name() == "bigquery":
        add_bigquery_column(table, column, schema)
        return
    if context.is_offline_mode():
        op.execute(AddColumnIfMissing(table, column, schema))
        return
    existing = {c["name"] for c in _inspector().get_columns(table, schema=schema)}
    if column.name in existing:
        log.info("adopting the existing column %s.%s", table, column.name)
    else:
        op.execute(AddStateColumn(table, column, schema))


def add_bigquery_column(table: str, column: Column[Any], schema: str | None) -> None:
    """BigQuery: ``ADD COLUMN IF NOT EXISTS`` as NULLABLE; with a default, ``SET DEFAULT`` and
    ``UPDATE … SET col = default WHERE col IS NULL`` (readers also take NULL for it)."""
    target = _bigquery_target(table, schema)
    name = op.get_context().dialect.identifier_preparer.quote(column.name)
    sql_type = column.type.compile(dialect=op.get_context().dialect)
    op.execute(text(f"ALTER TABLE {target} ADD COLUMN IF NOT EXISTS {name} {sql_type}"))
    default = column.server_default
    if default is None:
        return
    value = str(getattr(default, "arg", default))
    set_bigquery_default(table, column.name, value, schema)
    op.execute(text(f"UPDATE {target} SET {name} = {value} WHERE {name} IS NULL"))


def _bigquery_target(table: str, schema: str | None) -> str:
    preparer = op.get_context().dialect.identifier_preparer
    quoted = preparer.quote(table)
    return f"{preparer.quote_schema(schema)}.{quoted}" if schema else quoted


def set_bigquery_default(table: str, column: str, expression: str, schema: str | None) -> None:
    """BigQuery: ``ALTER TABLE … ALTER COLUMN … SET DEFAULT expression`` (idempotent)."""
    name = op.get_context().dialect.identifier_preparer.quote(column)
    target = _bigquery_target(table, schema)
    op.execute(text(f"ALTER TABLE {target} ALTER COLUMN {name} SET DEFAULT {expression}"))


def create_index_if_absent(index: Index) -> None:
    """Create ``index`` unless its table has an index of that name (BigQuery has no indexes:
    nothing there; its tables are clustered by their key instead)."""
    if dialect_name() == "bigquery":
        return
    if context.is_offline_mode():
        op.execute(CreateIndexIfMissing(index))
        return
    table = index.table
    assert table is not None
    existing = {i["name"] for i in _inspector().get_indexes(table.name, schema=table.schema)}
    if index.name in existing:
        log.info("adopting the existing index %s", index.name)
    else:
        op.execute(CreateIndex(index))


def drop_index(index: Index) -> None:
    """Drop ``index`` (nothing on BigQuery, which has none)."""
    if dialect_name() == "bigquery":
        return
    table = index.table
    assert table is not None
    op.drop_index(str(index.name), table_name=table.name, schema=table.schema)


def drop_column(table: str, column: str, schema: str | None, *, has_default: bool) -> None:
    """Drop a column; on SQL Server its named DEFAULT constraint first."""
    if has_default and dialect_name() == "mssql":
        op.drop_constraint(default_constraint_name(table, column), table, schema=schema)
    op.drop_column(table, column, schema=schema)


def refuse_to_drop_rows(*tables: Table) -> None:
    """Stop a downgrade that would drop tables holding rows, unless ``drop_data`` confirms it.

    Offline there is nothing to count: the script says what it drops and the DBA decides.
    """
    if context.is_offline_mode() or settings().drop_data:
        return
    refuse_if_tables_hold_rows(op.get_bind(), tables)


def refuse_if_tables_hold_rows(bind: Connection, tables: Sequence[Table]) -> None:
    """``DowngradeRefusedError`` if any of ``tables`` that exists holds a row."""
    inspector = inspect(bind)
    held = {
        t.fullname: int(bind.execute(select(func.count()).select_from(t)).scalar_one())
        for t in tables
        if inspector.has_table(t.name, schema=t.schema)
    }
    nonempty = {name: count for name, count in held.items() if count}
    if nonempty:
        rows = ", ".join(f"{name}: {count} row(s)" for name, count in nonempty.items())
        raise DowngradeRefusedError(
            f"downgrading to base drops the state tables, which hold data ({rows}); "
            "confirm with `-x drop_data=true` (alembic) or `drop_data=True` (downgrade())"
        )
