"""Operator reads and repairs of run rows beyond the runtime's methods (the CLI's ``runs``).

Core queries over a storage's own table, through the storage's error translation and retries,
so configured names and every dialect apply as they do for the runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, select, update

from dpone_state.models import RunState, RunStateStatus, to_utc, utc_now
from dpone_state.storage import MAX_LIMIT, RunStateStorage
from dpone_state.tables import UPDATED_AT

__all__ = [
    "DagSummary",
    "count_runs_before",
    "dag_summaries",
    "delete_run",
    "list_runs",
    "mark_failed",
    "prune_runs",
    "runs_in_second",
]

_RUN_COLUMNS = (
    "dag_id", "source_schema", "source_table", "target_schema", "target_table",
    "load_strategy", "execution_date", "state", "started_at", "ended_at", "duration_min",
    "error_message", "rows_read", "rows_written", "rows_updated", "rows_deleted",
    "process_name",
)  # fmt: skip


@dataclass(frozen=True)
class DagSummary:
    """A DAG's number of stored runs and its newest run."""

    dag_id: str
    runs: int
    last_run: RunState


def _select_runs(storage: RunStateStorage) -> Any:
    t = storage.table
    return select(*(t.c[name] for name in _RUN_COLUMNS))


def _to_runs(rows: Sequence[Any]) -> list[RunState]:
    return [RunState.from_storage(**dict(zip(_RUN_COLUMNS, row, strict=True))) for row in rows]


def list_runs(
    storage: RunStateStorage,
    dag_id: str | None = None,
    *,
    states: Sequence[RunStateStatus] = (),
    since: datetime | None = None,
    before: datetime | None = None,
    limit: int = 20,
) -> list[RunState]:
    """Runs newest ``execution_date`` first: of one DAG or all, in ``states``, at or after
    ``since`` and strictly before ``before`` (to page back, pass the oldest date listed)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be in 1 .. {MAX_LIMIT}")
    t = storage.table
    statement = _select_runs(storage)
    params: dict[str, Any] = {}
    if dag_id is not None:
        statement = statement.where(t.c.dag_id == bindparam("o_dag"))
        params["o_dag"] = dag_id
    if states:
        statement = statement.where(t.c.state.in_([s.value for s in states]))
    if since is not None:
        statement = statement.where(
            t.c.execution_date >= bindparam("o_since", type_=t.c.execution_date.type)
        )
        params["o_since"] = to_utc("since", since)
    if before is not None:
        statement = statement.where(  # strictly earlier, as the runtime's ``before=``
            t.c.execution_date < bindparam("o_before", type_=t.c.execution_date.type)
        )
        params["o_before"] = to_utc("before", before)
    statement = statement.order_by(t.c.execution_date.desc(), t.c.dag_id).limit(limit)
    return _to_runs(storage.execute_read(statement, params))


def runs_in_second(storage: RunStateStorage, dag_id: str, second: datetime) -> list[RunState]:
    """The runs of ``dag_id`` whose ``execution_date`` falls in the second that starts at
    ``second`` (what a listing printed without microseconds)."""
    start = to_utc("execution_date", second)
    end = start + timedelta(seconds=1)
    t = storage.table
    statement = (
        _select_runs(storage)
        .where(
            t.c.dag_id == bindparam("o_dag"),
            t.c.execution_date >= bindparam("o_start", type_=t.c.execution_date.type),
            t.c.execution_date < bindparam("o_end", type_=t.c.execution_date.type),
        )
        .order_by(t.c.execution_date)
        .limit(10)
    )
    params = {"o_dag": dag_id, "o_start": start, "o_end": end}
    return _to_runs(storage.execute_read(statement, params))


def dag_summaries(storage: RunStateStorage) -> list[DagSummary]:
    """Every DAG with stored runs: its run count and newest run, by ``dag_id``."""
    t = storage.table
    newest = (
        select(
            t.c.dag_id.label("n_dag"),
            func.max(t.c.execution_date).label("n_last"),
            func.count().label("n_runs"),
        )
        .group_by(t.c.dag_id)
        .subquery()
    )
    statement = (
        select(*(t.c[name] for name in _RUN_COLUMNS), newest.c.n_runs)
        .join_from(
            t, newest, and_(t.c.dag_id == newest.c.n_dag, t.c.execution_date == newest.c.n_last)
        )
        .order_by(t.c.dag_id)
    )
    rows = storage.execute_read(statement, {})
    return [DagSummary(row[0], int(row[-1]), _to_runs([row[:-1]])[0]) for row in rows]


def mark_failed(storage: RunStateStorage, run: RunState, reason: str) -> RunState | None:
    """Set a run that is still ``running`` to ``failed`` with ``reason`` as its error message
    and now as its end; the updated run, or ``None`` if it is no longer running."""
    t = storage.table
    now = utc_now()
    duration = max((now - run.started_at).total_seconds() / 60, 0.0)
    statement = (
        update(t)
        .where(
            t.c.dag_id == bindparam("o_dag"),
            t.c.execution_date == bindparam("o_date", type_=t.c.execution_date.type),
            t.c.state == RunStateStatus.RUNNING.value,
        )
        .values(
            {
                "state": RunStateStatus.FAILED.value,
                "error_message": bindparam("o_reason", type_=t.c.error_message.type),
                "ended_at": bindparam("o_now", type_=t.c.ended_at.type),
                "duration_min": bindparam("o_duration", type_=t.c.duration_min.type),
                UPDATED_AT: bindparam("o_updated", type_=t.c[UPDATED_AT].type),
            }
        )
    )
    params = {
        "o_dag": run.dag_id,
        "o_date": run.execution_date,
        "o_reason": reason,
        "o_now": now,
        "o_duration": duration,
        "o_updated": now,
    }
    if storage.execute_write(statement, params).rowcount != 1:
        return None
    return storage.get_run_state(run.dag_id, run.execution_date)


def delete_run(storage: RunStateStorage, dag_id: str, execution_date: datetime) -> bool:
    """Delete one run; whether it existed."""
    t = storage.table
    statement = delete(t).where(
        t.c.dag_id == bindparam("o_dag"),
        t.c.execution_date == bindparam("o_date", type_=t.c.execution_date.type),
    )
    params = {"o_dag": dag_id, "o_date": to_utc("execution_date", execution_date)}
    return bool(storage.execute_write(statement, params).rowcount == 1)


def _older(storage: RunStateStorage, dag_id: str | None) -> Any:
    t = storage.table
    condition = t.c.execution_date < bindparam("o_cutoff", type_=t.c.execution_date.type)
    if dag_id is not None:
        condition = and_(condition, t.c.dag_id == bindparam("o_dag"))
    return condition


def _prune_params(cutoff: datetime, dag_id: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"o_cutoff": to_utc("cutoff", cutoff)}
    if dag_id is not None:
        params["o_dag"] = dag_id
    return params


def count_runs_before(storage: RunStateStorage, cutoff: datetime, dag_id: str | None = None) -> int:
    """How many runs (of ``dag_id``, or all) have an ``execution_date`` before ``cutoff``."""
    t = storage.table
    statement = select(func.count()).select_from(t).where(_older(storage, dag_id))
    rows = storage.execute_read(statement, _prune_params(cutoff, dag_id))
    return int(rows[0][0])


def prune_runs(
    storage: RunStateStorage,
    cutoff: datetime,
    *,
    dag_id: str | None = None,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Delete runs (of ``dag_id``, or all) older than ``cutoff``; the count deleted.

    The storage's own prune (``delete_old_states``): with ``batch_size``, in transactions of at
    most that many rows as the backend deletes a batch (``prune_batches``), so a large backlog
    never holds a long lock; ``progress`` gets each statement's count.
    """
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError("batch_size must be an integer >= 1")
    return storage._prune_before(cutoff, dag_id=dag_id, batch_size=batch_size, progress=progress)
