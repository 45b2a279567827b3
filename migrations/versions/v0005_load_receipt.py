"""The checkpoint's receipt: ``last_load_id`` on the XMin table.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

A nullable ``last_load_id`` records the id of the load whose transaction committed the
checkpoint (``load_exactly_once``); ``probe()`` reads it after a lost commit reply. Existing
checkpoints keep ``NULL`` (no receipt). Added only where missing; downgrade removes it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Column

from dpone_state.coltypes import name_text
from dpone_state.migrations import support

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LOAD_ID = 128


def upgrade() -> None:
    """Add ``last_load_id`` where missing."""
    s = support.settings()
    support.add_column_if_absent(
        s.xmin_table, Column("last_load_id", name_text(_LOAD_ID), nullable=True), s.schema
    )


def downgrade() -> None:
    """Remove ``last_load_id`` (the receipts are lost)."""
    s = support.settings()
    support.drop_column(s.xmin_table, "last_load_id", s.schema, has_default=False)
