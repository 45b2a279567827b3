"""BigQuery: the lock table that makes concurrent first writes conflict, and column defaults.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26

Creates ``dpone_state_locks`` (``name``, ``holds``) in the dataset and the XMin table's row in it
(see ``dpone_state.upsert.LockedScript``), and gives adopted tables the defaults dpone-state's
tables have (dpone's runtime created its BigQuery tables without any): ``FALSE`` for the two
flags, ``CURRENT_TIMESTAMP()`` for both timestamps. Nothing on other backends: their upserts
already make first writes of one key conflict, and their legacy tables have the defaults.
Downgrade drops the lock table (BigQuery only); the defaults stay (harmless).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from dpone_state.migrations import support
from dpone_state.storage import provision_bigquery_lock
from dpone_state.tables import BIGQUERY_LOCK_TABLE, LOADED_AT, UPDATED_AT

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """BigQuery: create the lock table if missing and the XMin table's lock row."""
    if support.dialect_name() != "bigquery":
        return
    s = support.settings()
    provision_bigquery_lock(op.get_bind(), s.schema, s.xmin_table)
    for flag in ("is_initial", "wraparound_detected"):
        support.set_bigquery_default(s.xmin_table, flag, "FALSE", s.schema)
    for table in (s.xmin_table, s.run_table):
        for stamp in (LOADED_AT, UPDATED_AT):
            support.set_bigquery_default(table, stamp, "CURRENT_TIMESTAMP()", s.schema)


def downgrade() -> None:
    """BigQuery: drop the lock table."""
    if support.dialect_name() != "bigquery":
        return
    s = support.settings()
    op.drop_table(BIGQUERY_LOCK_TABLE, schema=s.schema)
