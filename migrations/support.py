"""What the revisions share: the resolved settings and operations that adopt what exists.

Online, "only if absent" is decided by inspecting the database (exact on every dialect);
offline, the statements carry their own guard (``IF NOT EXISTS`` / T-SQL ``IF``) so a DBA's
script also adopts existing tables.
"""

from __future__ import annotations

import logging
from typing import Any

from alembic import context, op
from sqlalchemy import Column, Index, Table, func, inspect, select
from sqlalchemy.schema import CreateIndex, CreateTable

from dpone_state.ddl import (
    AddColumnIfMissing,
    CreateIndexIfMissing,
    CreateTableIfMissing,
    default_constraint_name,
)
from dpone_state.migrate import DowngradeRefusedError, MigrationSettings

__all__ = [
    "RESOLVED_KEY",
    "add_column_if_absent",
    "create_index_if_absent",
    "create_table_if_absent",
    "dialect_name",
    "drop_column",
    "refuse_to_drop_rows",
    "settings",
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
    """Create ``table`` unless a table of that name exists (adoption keeps it as it is)."""
    if context.is_offline_mode():
        op.execute(CreateTableIfMissing(table))
    elif _inspector().has_table(table.name, schema=table.schema):
        log.info("adopting the existing table %s", table.fullname)
    else:
        op.execute(CreateTable(table))


def add_column_if_absent(table: str, column: Column[Any], schema: str | None) -> None:
    """Add ``column`` to ``table`` unless the table already has a column of that name."""
    if context.is_offline_mode():
        op.execute(AddColumnIfMissing(table, column, schema))
        return
    existing = {c["name"] for c in _inspector().get_columns(table, schema=schema)}
    if column.name in existing:
        log.info("adopting the existing column %s.%s", table, column.name)
    else:
        op.add_column(table, column, schema=schema)


def create_index_if_absent(index: Index) -> None:
    """Create ``index`` unless its table has an index of that name."""
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
    bind = op.get_bind()
    inspector = _inspector()
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
