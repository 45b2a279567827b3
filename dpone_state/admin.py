"""Operator reads beyond the runtime's eight methods: list every checkpoint, count prunable runs.

Core queries over a storage's own table (so configured names and dialects apply as they do for
the runtime), through the storage's error translation. The ``dpone-state`` command uses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from dpone_state.errors import InvalidStateError
from dpone_state.models import XMinState, to_utc, utc_now
from dpone_state.storage import RunStateStorage, XMinStateStorage, xmin_state_from_row
from dpone_state.tables import LOADED_AT, UPDATED_AT

__all__ = ["Checkpoint", "count_runs_before", "list_checkpoints", "prune_cutoff"]


@dataclass(frozen=True)
class Checkpoint:
    """One stored checkpoint with its key and last update time."""

    source_schema: str
    source_table: str
    state: XMinState
    updated_at: datetime


def list_checkpoints(storage: XMinStateStorage) -> list[Checkpoint]:
    """Every checkpoint of the table, ordered by source schema and table."""
    t = storage.table
    statement = select(
        t.c.source_schema,
        t.c.source_table,
        t.c.xmin_value,
        t.c[LOADED_AT],
        t.c.is_initial,
        t.c.wraparound_detected,
        t.c.frozen_xid,
        t.c.revision,
        t.c[UPDATED_AT],
    ).order_by(t.c.source_schema, t.c.source_table)
    return [
        Checkpoint(
            source_schema=row[0],
            source_table=row[1],
            state=xmin_state_from_row(row[2:8]),
            updated_at=to_utc(UPDATED_AT, row[8]),
        )
        for row in storage._read(statement, {})
    ]


def prune_cutoff(days_to_keep: int, now: datetime | None = None) -> datetime:
    """The ``execution_date`` before which ``delete_old_states(days_to_keep)`` deletes runs."""
    if isinstance(days_to_keep, bool) or not isinstance(days_to_keep, int) or days_to_keep < 0:
        raise InvalidStateError("days_to_keep", "must be an integer >= 0")
    try:
        return (now or utc_now()) - timedelta(days=days_to_keep)
    except OverflowError:
        raise InvalidStateError("days_to_keep", f"{days_to_keep} days is too far back") from None


def count_runs_before(storage: RunStateStorage, cutoff: datetime) -> int:
    """How many runs have an ``execution_date`` before ``cutoff`` (what a prune would delete)."""
    t = storage.table
    statement = (
        select(func.count()).select_from(t).where(t.c.execution_date < to_utc("cutoff", cutoff))
    )
    return int(storage._read(statement, {})[0][0])
