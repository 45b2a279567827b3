"""Property-based bad input: every value is stored and read back exactly, or rejected with a
typed error and the database left unchanged. Names only ever reach SQL as bound parameters.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpone_state import InvalidStateError, RunState, RunStateStorage, XMinState, XMinStateStorage
from tests.conftest import StateDB

PROPERTY_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)

#: Characters that break naive SQL or storage: quotes, separators, NUL, edge spaces,
#: surrogates, combining marks, right-to-left text, emoji (4-byte UTF-8).
NASTY = "'\";`\\%_\x00 \t\n-/*é漢字\u0301\u202e😀\ud800"
names = st.one_of(
    st.text(alphabet=st.sampled_from(NASTY) | st.characters(codec="utf-8"), max_size=40),
    st.text(alphabet="ab'; ", min_size=120, max_size=300),
    st.sampled_from(["x'; DROP TABLE etl_xmin_state; --", "Robert'); --", "a" * 128, "a" * 129]),
)
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 2**63 - 1, 2**63, -1, 2**32, 2**32 - 1]),
)
aware_offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
datetimes = st.one_of(
    st.datetimes(),  # naive: taken as UTC
    st.datetimes(timezones=aware_offsets),
    st.sampled_from([datetime.min, datetime.max, datetime(999, 12, 31), datetime(1000, 1, 1)]),
)


#: Each backend's property tables, made once: tables of their own (other tests leave rows in
#: the default ones) holding one sentinel row each, which every example must leave intact.
_PROVISIONED: set[int] = set()
SENTINEL = "property-sentinel"


def property_storages(db: StateDB) -> tuple[XMinStateStorage, RunStateStorage]:
    xmin, runs = db.xmin(table="prop_xmin"), db.runs(table="prop_runs")
    if id(db) not in _PROVISIONED:
        xmin.create_tables()
        runs.create_tables()
        xmin.save_state(SENTINEL, SENTINEL, XMinState(1))
        now = datetime(2026, 1, 1, tzinfo=timezone.utc)
        runs.save_run_state(RunState(SENTINEL, "s", "t", "ts", "tt", "full", now, "success", now))
        _PROVISIONED.add(id(db))
    return xmin, runs


def table_rows(db: StateDB, table: sa.Table) -> list[tuple[Any, ...]]:
    """The table's live rows (a deleted checkpoint stays as a tombstone, revision < 0)."""
    statement = sa.select(table)
    if "revision" in table.c:
        statement = statement.where(table.c.revision >= 0)
    with db.engine.connect() as conn:
        return sorted(tuple(row) for row in conn.execute(statement).all())


@PROPERTY_SETTINGS
@given(source_schema=names, source_table=names, value=numbers, timestamp=datetimes)
def test_checkpoints_round_trip_or_are_rejected(
    state_db: StateDB, source_schema: str, source_table: str, value: int, timestamp: datetime
) -> None:
    xmin, _ = property_storages(state_db)
    before = table_rows(state_db, xmin.table)
    try:
        state = XMinState(value, timestamp=timestamp, frozen_xid=value)
        written = xmin.save_state(source_schema, source_table, state)
    except InvalidStateError:
        assert table_rows(state_db, xmin.table) == before
        return
    try:
        loaded = xmin.load_state(source_schema, source_table)
        assert loaded is not None
        assert (loaded.xmin_value, loaded.frozen_xid) == (value, value)
        # __dpone__loaded_at is the storage's clock at first insert, never the given timestamp
        assert loaded.timestamp == written
        assert loaded.timestamp.tzinfo is timezone.utc
    finally:
        xmin.delete_state(source_schema, source_table)
    assert table_rows(state_db, xmin.table) == before


@PROPERTY_SETTINGS
@given(
    dag_id=names,
    target_table=names,
    error_message=st.none() | st.text(max_size=2000),
    rows=numbers,
    duration=st.none() | st.floats(allow_subnormal=False),
    execution_date=datetimes,
)
def test_runs_round_trip_or_are_rejected(
    state_db: StateDB,
    dag_id: str,
    target_table: str,
    error_message: str | None,
    rows: int,
    duration: float | None,
    execution_date: datetime,
) -> None:
    _, runs = property_storages(state_db)
    before = table_rows(state_db, runs.table)
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    try:
        run = RunState(
            dag_id, "s", "t", "ts", target_table, "full", execution_date, "failed", now,
            error_message=error_message, rows_read=rows, duration_min=duration,
        )  # fmt: skip
        runs.save_run_state(run)
    except InvalidStateError:
        assert table_rows(state_db, runs.table) == before
        return
    try:
        stored = runs.get_run_state(dag_id, execution_date)
        assert stored is not None
        # diagnostics as the model stored them (NUL replaced, a negative duration 0, …)
        assert (stored.dag_id, stored.target_table, stored.error_message) == (
            dag_id, target_table, run.error_message,
        )  # fmt: skip
        assert (stored.rows_read, stored.duration_min) == (rows, run.duration_min)
        assert stored.execution_date == run.execution_date
    finally:  # remove this example's row only: other tests' rows are part of `before`
        table = runs.table
        with state_db.engine.begin() as conn:
            conn.execute(
                sa.delete(table).where(
                    table.c.dag_id == dag_id, table.c.execution_date == run.execution_date
                )
            )
    assert table_rows(state_db, runs.table) == before
