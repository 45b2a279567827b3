"""dpone's existing SQL Server tables are read and written as they are.

The legacy layout differs from new tables in declared lengths (``nvarchar(256)`` keys,
``dag_id nvarchar(512)``), collation (the database default instead of BIN2) and the run
table's ``id bigint IDENTITY(1,1)``. Our statements name columns only — no lengths, no
collations, never ``id`` — so they work on both; this runs them on a real server when
``DPONE_STATE_TEST_MSSQL_URL`` is set. The first migration adds ``revision`` (XMin) and
``process_name`` (runs); the DDL below does the same.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import pytest
import sqlglot
from sqlglot import exp

from dpone_state import RunState, RunStateStorage, XMinState, XMinStateStorage
from dpone_state.models import KEY_NAME_MAX, MAX_DAG_ID
from tests.conftest import StateDB

T0 = datetime(2020, 3, 4, 5, 6, 7, 891011, tzinfo=timezone.utc)
T1 = datetime(2020, 3, 5, 5, 6, 7, tzinfo=timezone.utc)


def legacy_ddl(schema: str) -> list[str]:
    """dpone's v1 SQL Server tables (reference/dpone-legacy-tables.md) plus the migration's
    additive columns."""
    x, r = f"[{schema}].[legacy_xmin_state]", f"[{schema}].[legacy_run_state]"
    return [
        f"""CREATE TABLE {x} (
            source_schema nvarchar(256) NOT NULL,
            source_table nvarchar(256) NOT NULL,
            xmin_value bigint NOT NULL,
            is_initial bit NOT NULL,
            wraparound_detected bit NOT NULL,
            frozen_xid bigint NULL,
            __dpone__loaded_at datetime2 NOT NULL DEFAULT SYSUTCDATETIME(),
            __dpone__updated_at datetime2 NOT NULL DEFAULT SYSUTCDATETIME(),
            CONSTRAINT pk_legacy_xmin_state_source PRIMARY KEY (source_schema, source_table)
        )""",
        f"ALTER TABLE {x} ADD revision bigint NOT NULL DEFAULT 0",
        f"""CREATE TABLE {r} (
            id bigint IDENTITY(1,1) NOT NULL,
            dag_id nvarchar(512) NOT NULL,
            source_schema nvarchar(256) NOT NULL,
            source_table nvarchar(256) NOT NULL,
            target_schema nvarchar(256) NOT NULL,
            target_table nvarchar(256) NOT NULL,
            load_strategy nvarchar(64) NOT NULL,
            state nvarchar(32) NOT NULL,
            execution_date datetime2 NOT NULL,
            started_at datetime2 NOT NULL,
            ended_at datetime2 NULL,
            duration_min float NULL,
            error_message nvarchar(max) NULL,
            rows_read bigint NULL,
            rows_written bigint NULL,
            rows_updated bigint NULL,
            rows_deleted bigint NULL,
            __dpone__loaded_at datetime2 NOT NULL DEFAULT SYSUTCDATETIME(),
            __dpone__updated_at datetime2 NOT NULL DEFAULT SYSUTCDATETIME(),
            CONSTRAINT pk_legacy_run_state_dag_execution PRIMARY KEY (dag_id, execution_date)
        )""",
        f"ALTER TABLE {r} ADD process_name nvarchar(256) NULL",
        # A checkpoint the legacy runtime wrote: no revision of its own (the default 0).
        f"INSERT INTO {x} (source_schema, source_table, xmin_value, is_initial, "
        "wraparound_detected) VALUES (N'public', N'orders', 100, 1, 0)",
    ]


def test_legacy_ddl_is_t_sql() -> None:
    for statement in legacy_ddl("etl_state"):
        tree = sqlglot.parse_one(statement, read="tsql")
        assert not list(tree.find_all(exp.Command)), statement


@pytest.mark.parametrize("state_db", ["mssql"], indirect=True)
def test_legacy_tables_are_read_and_written_as_they_are(state_db: StateDB) -> None:
    schema = state_db.schema
    assert schema is not None
    with state_db.engine.begin() as conn:
        for statement in legacy_ddl(schema):
            conn.exec_driver_sql(statement)

    xmin = XMinStateStorage(state_db.engine, schema=schema, table="legacy_xmin_state")
    legacy = xmin.load_state("public", "orders")
    assert legacy is not None
    assert (legacy.xmin_value, legacy.is_initial, legacy.revision) == (100, True, 0)
    xmin.save_state("public", "orders", XMinState(200), expected_revision=0)
    saved = xmin.load_state("public", "orders")
    assert saved is not None
    assert (saved.xmin_value, saved.revision, saved.timestamp) == (200, 1, legacy.timestamp)
    longest = "s" * KEY_NAME_MAX
    xmin.save_state(longest, longest, XMinState(7, frozen_xid=3))
    stored = xmin.load_state(longest, longest)
    assert stored is not None and (stored.xmin_value, stored.frozen_xid) == (7, 3)
    assert xmin.delete_state(longest, longest) is True

    runs = RunStateStorage(state_db.engine, schema=schema, table="legacy_run_state")
    dag = "d" * MAX_DAG_ID
    run = RunState(dag, "public", "orders", "dwh", "orders", "full", T0, "running", T0)
    runs.save_run_state(run)
    first = runs.get_run_state(dag, T0)
    assert first is not None and first.id is not None and first.execution_date == T0
    runs.update_run_state(replace(run, state="success", ended_at=T1, rows_read=5))
    updated = runs.get_run_state(dag, T0)
    assert updated is not None
    assert (updated.id, updated.state.value, updated.rows_read) == (first.id, "success", 5)
    runs.save_run_state(replace(run, execution_date=T1))
    newest_first = runs.get_run_states_by_dag(dag)
    assert [r.execution_date for r in newest_first] == [T1, T0]
    assert newest_first[0].id is not None and newest_first[0].id > first.id
    assert runs.delete_old_states(0) == 2
