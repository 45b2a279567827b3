"""The state tables as dpone's runtime creates them; existing ones are adopted as they are.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Creates the schema's two tables only where they are absent: a database that already holds
dpone's legacy tables upgrades without a change to a row. The columns are frozen here (not
read from ``dpone_state.tables``) so this revision keeps meaning what it meant.
Downgrade drops both tables, and refuses while they hold rows unless ``drop_data`` is set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alembic import op
from sqlalchemy import Column, Identity, PrimaryKeyConstraint, Table, false
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
from dpone_state.migrations import support
from dpone_state.tables import LOADED_AT, UPDATED_AT, new_metadata, run_id_kind

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Name lengths where the dialect bounds them (SQL Server, MySQL; PostgreSQL and SQLite use
# TEXT). Key columns are narrower than the legacy SQL Server layout (nvarchar(256) names,
# nvarchar(512) dag_id) so that a key fits SQL Server's 900-byte clustered key and MySQL's
# 3072-byte index limit; adopted legacy tables keep their wider columns (every value the
# library writes fits them).
_KEY_NAME, _NAME, _DAG_ID, _LOAD_STRATEGY, _STATE = 128, 256, 400, 64, 32


def _timestamps() -> list[Column[Any]]:
    return [
        Column(LOADED_AT, UTCDateTime(), nullable=False, server_default=sql_utc_now()),
        Column(UPDATED_AT, UTCDateTime(), nullable=False, server_default=sql_utc_now()),
    ]


def _legacy_tables() -> tuple[Table, Table]:
    s = support.settings()
    metadata = new_metadata()
    xmin = Table(
        s.xmin_table,
        metadata,
        Column("source_schema", name_text(_KEY_NAME, key=True), nullable=False),
        Column("source_table", name_text(_KEY_NAME, key=True), nullable=False),
        Column("xmin_value", big_integer(), nullable=False),
        Column("is_initial", boolean(), nullable=False, server_default=false()),
        Column("wraparound_detected", boolean(), nullable=False, server_default=false()),
        Column("frozen_xid", big_integer(), nullable=True),
        *_timestamps(),
        PrimaryKeyConstraint(
            "source_schema", "source_table", name=conv(f"pk_{s.xmin_table}_source")
        ),
        schema=s.schema,
        **MYSQL_TABLE_OPTIONS,
    )
    id_kind = run_id_kind(support.dialect_name())
    id_column: list[Column[Any]] = []
    if id_kind == "identity":
        id_column.append(Column("id", big_integer(), Identity(), nullable=False))
    elif id_kind == "plain":
        id_column.append(Column("id", big_integer(), nullable=True))
    run = Table(
        s.run_table,
        metadata,
        *id_column,
        Column("dag_id", name_text(_DAG_ID, key=True), nullable=False),
        Column("source_schema", name_text(_NAME), nullable=False),
        Column("source_table", name_text(_NAME), nullable=False),
        Column("target_schema", name_text(_NAME), nullable=False),
        Column("target_table", name_text(_NAME), nullable=False),
        Column("load_strategy", name_text(_LOAD_STRATEGY), nullable=False),
        Column("state", name_text(_STATE), nullable=False),
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
        PrimaryKeyConstraint(
            "dag_id", "execution_date", name=conv(f"pk_{s.run_table}_dag_execution")
        ),
        schema=s.schema,
        **MYSQL_TABLE_OPTIONS,
    )
    return xmin, run


def upgrade() -> None:
    """Create the XMin and run-state tables where they are missing."""
    for table in _legacy_tables():
        support.create_table_if_absent(table)


def downgrade() -> None:
    """Drop both tables (refused while they hold rows, unless ``drop_data`` confirms it)."""
    tables = _legacy_tables()
    support.refuse_to_drop_rows(*tables)
    for table in reversed(tables):
        op.drop_table(table.name, schema=table.schema)
