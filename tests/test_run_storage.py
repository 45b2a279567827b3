"""Run-state storage: the same behaviour on every backend."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from dpone_state import InvalidStateError, RunState, RunStateStatus, RunStateStorage
from tests.conftest import StateDB

T0 = datetime(2026, 5, 6, 7, 8, 9, 654321, tzinfo=timezone.utc)


def make_run(execution_date: datetime = T0, **overrides: object) -> RunState:
    fields: dict[str, object] = dict(
        dag_id="dag_a",
        source_schema="public",
        source_table="orders",
        target_schema="dwh",
        target_table="orders",
        load_strategy="incremental_merge",
        execution_date=execution_date,
        state=RunStateStatus.RUNNING,
        started_at=T0,
    )
    fields.update(overrides)
    return RunState(**fields)  # type: ignore[arg-type]


def without_id(state: RunState | None) -> RunState | None:
    if state is None:
        return None
    fields = {name: getattr(state, name) for name in state.__dataclass_fields__}
    fields["id"] = None
    return RunState(**fields)


def test_missing_run_is_none(runs: RunStateStorage) -> None:
    assert runs.get_run_state("dag_a", T0) is None


def test_save_and_get_round_trips_every_field(runs: RunStateStorage) -> None:
    run = make_run(
        ended_at=T0 + timedelta(minutes=3),
        duration_min=3.25,
        error_message="boom: ünïcode\nsecond line",
        rows_read=2**40,
        rows_written=5,
        rows_updated=0,
        rows_deleted=1,
        process_name="worker-1",
        state="failed",
    )
    runs.save_run_state(run)
    assert without_id(runs.get_run_state("dag_a", T0)) == run


def test_upsert_changes_exactly_the_outcome_columns(runs: RunStateStorage) -> None:
    runs.save_run_state(make_run(process_name="first"))
    finished = make_run(
        source_schema="other",
        source_table="other",
        target_schema="other",
        target_table="other",
        started_at=T0 + timedelta(hours=1),
        load_strategy="full",
        state="success",
        ended_at=T0 + timedelta(minutes=5),
        duration_min=5.0,
        error_message="warn",
        rows_read=10,
        rows_written=9,
        rows_updated=8,
        rows_deleted=7,
        process_name="second",
    )
    runs.update_run_state(finished)
    stored = runs.get_run_state("dag_a", T0)
    assert stored is not None
    # changed
    assert (stored.state, stored.load_strategy, stored.ended_at, stored.duration_min) == (
        RunStateStatus.SUCCESS,
        "full",
        T0 + timedelta(minutes=5),
        5.0,
    )
    assert (stored.error_message, stored.rows_read, stored.rows_written) == ("warn", 10, 9)
    assert (stored.rows_updated, stored.rows_deleted) == (8, 7)
    # kept
    assert (stored.source_schema, stored.source_table) == ("public", "orders")
    assert (stored.target_schema, stored.target_table) == ("dwh", "orders")
    assert stored.started_at == T0 and stored.process_name == "first"


def test_update_of_a_new_run_inserts_it(runs: RunStateStorage) -> None:
    runs.update_run_state(make_run(state="success"))
    stored = runs.get_run_state("dag_a", T0)
    assert stored is not None and stored.state is RunStateStatus.SUCCESS


def test_naive_and_aware_execution_dates_are_the_same_key(runs: RunStateStorage) -> None:
    runs.save_run_state(make_run(execution_date=T0.replace(tzinfo=None)))
    plus_three = timezone(timedelta(hours=3))
    assert runs.get_run_state("dag_a", T0.astimezone(plus_three)) is not None
    runs.save_run_state(make_run(execution_date=T0.astimezone(plus_three), state="success"))
    listed = runs.get_run_states_by_dag("dag_a")
    assert len(listed) == 1 and listed[0].state is RunStateStatus.SUCCESS
    assert listed[0].execution_date == T0 and listed[0].execution_date.tzinfo is timezone.utc


def test_runs_by_dag_newest_first_with_limit_and_paging(runs: RunStateStorage) -> None:
    dates = [T0 - timedelta(days=i) for i in (3, 0, 5, 1, 4, 2)]
    for date in dates:
        runs.save_run_state(make_run(execution_date=date))
    runs.save_run_state(make_run(dag_id="dag_b", execution_date=T0 + timedelta(days=1)))
    listed = runs.get_run_states_by_dag("dag_a")
    assert [r.execution_date for r in listed] == sorted(dates, reverse=True)
    assert {r.dag_id for r in listed} == {"dag_a"}
    assert [r.execution_date for r in runs.get_run_states_by_dag("dag_a", limit=2)] == [
        T0,
        T0 - timedelta(days=1),
    ]
    page = runs.get_run_states_by_dag("dag_a", before=T0 - timedelta(days=2), limit=2)
    assert [r.execution_date for r in page] == [T0 - timedelta(days=3), T0 - timedelta(days=4)]
    assert runs.get_run_states_by_dag("dag_a", before=T0 - timedelta(days=5)) == []
    assert runs.get_run_states_by_dag("nobody") == []


def test_execution_date_means_the_runs_at_that_date_as_in_dpone(runs: RunStateStorage) -> None:
    for days in (0, 1, 2):
        runs.save_run_state(make_run(execution_date=T0 - timedelta(days=days)))
    runs.save_run_state(make_run(dag_id="dag_b", execution_date=T0 - timedelta(days=1)))
    at = runs.get_run_states_by_dag("dag_a", execution_date=T0 - timedelta(days=1))
    assert [(r.dag_id, r.execution_date) for r in at] == [("dag_a", T0 - timedelta(days=1))]
    positional = runs.get_run_states_by_dag("dag_a", T0 - timedelta(days=1), 100)  # dpone's call
    assert [r.execution_date for r in positional] == [T0 - timedelta(days=1)]
    assert runs.get_run_states_by_dag("dag_a", execution_date=T0 + timedelta(seconds=1)) == []
    both = runs.get_run_states_by_dag("dag_a", execution_date=T0, before=T0)
    assert both == []


def test_delete_old_states_prunes_by_execution_date_and_counts(runs: RunStateStorage) -> None:
    now = datetime.now(timezone.utc)
    for days in (0, 10, 29, 31, 45, 400):
        # started_at is recent for all: pruning must look at execution_date only
        runs.save_run_state(make_run(execution_date=now - timedelta(days=days), started_at=now))
    assert runs.delete_old_states(30) == 3
    assert runs.delete_old_states(30) == 0
    left = runs.get_run_states_by_dag("dag_a")
    assert len(left) == 3
    assert all(r.execution_date > now - timedelta(days=30) for r in left)
    assert runs.delete_old_states(days_to_keep=0) == 3


@pytest.mark.parametrize("bad", [-1, 1.5, True, "30"])
def test_delete_old_states_rejects_bad_days(runs: RunStateStorage, bad: object) -> None:
    with pytest.raises(InvalidStateError, match="days_to_keep"):
        runs.delete_old_states(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -1, 10_001, 2.0, True])
def test_limit_is_checked(runs: RunStateStorage, bad: object) -> None:
    with pytest.raises(InvalidStateError, match="limit"):
        runs.get_run_states_by_dag("dag_a", limit=bad)  # type: ignore[arg-type]


def test_bad_input_writes_nothing(db: StateDB, runs: RunStateStorage) -> None:
    with pytest.raises(InvalidStateError):
        runs.save_run_state({"dag_id": "x"})  # type: ignore[arg-type]
    with pytest.raises(InvalidStateError):
        runs.get_run_state("", T0)
    with db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(runs.table)).scalar_one() == 0


def test_custom_run_table_is_used(db: StateDB) -> None:
    custom = db.runs(table="custom_runs")
    custom.create_tables()
    custom.save_run_state(make_run())
    assert custom.get_run_state("dag_a", T0) is not None
    assert db.runs().get_run_state("dag_a", T0) is None


def test_batched_prune_deletes_everything_old_in_bounded_batches(
    db: StateDB, runs: RunStateStorage
) -> None:
    from tests.backends import recorded  # noqa: PLC0415

    now = datetime.now(timezone.utc)
    old = now - timedelta(days=40)
    for i in range(7):  # ties on execution_date across DAGs, and distinct dates
        runs.save_run_state(make_run(dag_id=f"dag_{i}", execution_date=old))
        runs.save_run_state(make_run(dag_id="dag_x", execution_date=old - timedelta(hours=i + 1)))
    runs.save_run_state(make_run(dag_id="dag_new", execution_date=now))
    with recorded(db.engine) as statements:
        assert runs.delete_old_states(30, batch_size=3) == 14
    deletes = [i for i, sql in enumerate(statements) if sql.lstrip().upper().startswith("DELETE")]
    if db.engine.dialect.name == "bigquery":
        assert len(deletes) == 1  # batch_size ignored: each statement is a billed job
    else:
        assert len(deletes) == 5  # 3 + 3 + 3 + 3 + 2
    assert [r.dag_id for r in runs.get_run_states_by_dag("dag_new")] == ["dag_new"]
    assert runs.delete_old_states(30, batch_size=3) == 0
    with pytest.raises(InvalidStateError, match="batch_size"):
        runs.delete_old_states(30, batch_size=0)


def test_batched_prune_sends_one_statement_per_batch_where_the_backend_can(
    db: StateDB, runs: RunStateStorage
) -> None:
    """25 old runs in batches of 10: three DELETEs (10, 10, 5), each alone where the backend's
    row deletes a batch in one statement, each after a read of its boundary where it does not."""
    from dpone_state.dialects import by_dialect  # noqa: PLC0415
    from tests.backends import recorded  # noqa: PLC0415

    now = datetime.now(timezone.utc)
    old = now - timedelta(days=40)
    for i in range(25):
        runs.save_run_state(
            make_run(dag_id=f"dag_{i % 4}", execution_date=old - timedelta(hours=i))
        )
    runs.save_run_state(make_run(dag_id="dag_new", execution_date=now))
    with recorded(db.engine) as statements:
        assert runs.delete_old_states(30, batch_size=10) == 25
    deletes = [sql for sql in statements if sql.lstrip().upper().startswith("DELETE")]
    way = by_dialect(db.engine.dialect.name).prune_batches
    if way == "unbatched":
        assert len(statements) == len(deletes) == 1
    elif way == "delete_batch":
        assert len(statements) == len(deletes) == 3
    else:
        assert len(deletes) == 3
        assert len(statements) == 6  # a boundary read before each DELETE
    assert [r.dag_id for r in runs.get_run_states_by_dag("dag_new")] == ["dag_new"]


def test_the_operators_prune_of_one_dag_batches_as_the_runtimes_prune(
    db: StateDB, runs: RunStateStorage
) -> None:
    """``dpone-state runs prune --dag … --batch-size`` is the storage's prune (one statement per
    batch where the backend can; a bounded index range per batch elsewhere), never a loop of
    its own: 25 old runs of one DAG in batches of 10, another DAG's old runs left alone."""
    from dpone_state.dialects import by_dialect  # noqa: PLC0415
    from dpone_state.operations import prune_runs  # noqa: PLC0415
    from tests.backends import recorded  # noqa: PLC0415

    now = datetime.now(timezone.utc)
    old = now - timedelta(days=40)
    for i in range(25):
        runs.save_run_state(make_run(dag_id="dag_old", execution_date=old - timedelta(hours=i)))
        runs.save_run_state(make_run(dag_id="dag_kept", execution_date=old - timedelta(hours=i)))
    counts: list[int] = []
    with recorded(db.engine) as statements:
        deleted = prune_runs(
            runs, now - timedelta(days=30), dag_id="dag_old", batch_size=10, progress=counts.append
        )
    assert deleted == 25 and sum(counts) == 25
    deletes = [sql for sql in statements if sql.lstrip().upper().startswith("DELETE")]
    way = by_dialect(db.engine.dialect.name).prune_batches
    if way == "unbatched":
        assert len(statements) == len(deletes) == 1
    elif way == "delete_batch":
        assert len(statements) == len(deletes) == 3
    else:
        assert len(deletes) == 3 and len(statements) == 6
        assert all("<=" in sql for sql in deletes[:2])  # the batch's bound the index stops at
    assert runs.get_run_states_by_dag("dag_old") == []
    assert len(runs.get_run_states_by_dag("dag_kept")) == 25
