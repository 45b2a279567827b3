"""XMin checkpoints record which extraction owns them and what the source was.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

Two additive, nullable columns on the XMin table: ``extraction_identity`` (source database,
table, columns / predicate fingerprint and ``checkpoint_key`` of the extraction that saved the
checkpoint; another extraction is refused) and ``source_fingerprint`` (system identifier,
timeline, the table's oid and its partitions / inheritance children; a change forces a full
refresh). Existing checkpoints keep ``NULL`` in both and are adopted by the next run that
saves. Each column is added only where it is missing. Downgrade removes them again.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Column

from dpone_state.coltypes import name_text
from dpone_state.migrations import support

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here (not read from dpone_state.models) so this revision keeps meaning what it meant.
_TAG = 1000
_COLUMNS = ("extraction_identity", "source_fingerprint")


def upgrade() -> None:
    """Add ``extraction_identity`` and ``source_fingerprint`` where missing."""
    s = support.settings()
    for name in _COLUMNS:
        support.add_column_if_absent(
            s.xmin_table, Column(name, name_text(_TAG), nullable=True), s.schema
        )


def downgrade() -> None:
    """Remove the two columns (their values are lost)."""
    s = support.settings()
    for name in reversed(_COLUMNS):
        support.drop_column(s.xmin_table, name, s.schema, has_default=False)
