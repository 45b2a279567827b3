"""Widen the run table's ``process_name`` to 512 characters (dpone's process names).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

dpone's runtime names a run ``schema.table->schema.table`` (up to ~516 characters; its newer
SQL Server run table holds 512). Where the column is bounded (SQL Server ``NVARCHAR``,
MySQL/MariaDB ``VARCHAR``) it becomes 512 wide; elsewhere it is unbounded and nothing changes.
Widening keeps every value; the downgrade narrows it back (values over 256 must not exist).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from dpone_state.coltypes import name_text
from dpone_state.migrations import support

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Dialects whose ``process_name`` has a length.
_BOUNDED = frozenset({"mssql", "mysql", "mariadb"})


def _resize(old: int, new: int) -> None:
    if support.dialect_name() not in _BOUNDED:
        return
    s = support.settings()
    op.alter_column(
        s.run_table,
        "process_name",
        type_=name_text(new),
        existing_type=name_text(old),
        existing_nullable=True,
        schema=s.schema,
    )


def upgrade() -> None:
    """``process_name`` 256 -> 512 characters where the column is bounded."""
    _resize(256, 512)


def downgrade() -> None:
    """Back to 256 characters."""
    _resize(512, 256)
