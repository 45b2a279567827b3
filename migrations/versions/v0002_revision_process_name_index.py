"""Additive pieces: XMin ``revision``, run ``process_name`` and the retention index.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-01

``revision bigint NOT NULL DEFAULT 0`` gives every adopted checkpoint revision 0 (compare-and-
set treats it as "never saved by dpone-state"); ``process_name`` is nullable; the index
``ix_<run table>_execution_date`` serves ``delete_old_states``. Each piece is added only where
it is missing. On BigQuery (no REQUIRED columns can be added, no indexes) ``revision`` is added
NULLABLE with DEFAULT 0 and existing rows are set to 0; readers take NULL as 0 too.
Downgrade removes them again (their values are lost).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy import Column, Index, Table, text

from dpone_state.coltypes import UTCDateTime, big_integer, name_text
from dpone_state.migrations import support
from dpone_state.tables import new_metadata

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME = 256


def _index() -> Index:
    s = support.settings()
    run = Table(
        s.run_table,
        new_metadata(),
        Column("execution_date", UTCDateTime(), nullable=False),
        schema=s.schema,
    )
    return Index(None, run.c.execution_date)


def upgrade() -> None:
    """Add ``revision``, ``process_name`` and the ``execution_date`` index where missing."""
    s = support.settings()
    support.add_column_if_absent(
        s.xmin_table,
        Column("revision", big_integer(), nullable=False, server_default=text("0")),
        s.schema,
    )
    support.add_column_if_absent(
        s.run_table, Column("process_name", name_text(_NAME), nullable=True), s.schema
    )
    support.create_index_if_absent(_index())


def downgrade() -> None:
    """Remove the index and the two columns; deleted checkpoints (tombstones, revision < 0)
    go first, since without ``revision`` they would read as live checkpoints."""
    s = support.settings()
    xmin = Table(
        s.xmin_table,
        new_metadata(),
        Column("revision", big_integer(), nullable=False),
        schema=s.schema,
    )
    op.execute(xmin.delete().where(xmin.c.revision < 0))
    index = _index()
    support.drop_index(index)
    support.drop_column(s.run_table, "process_name", s.schema, has_default=False)
    support.drop_column(s.xmin_table, "revision", s.schema, has_default=True)
