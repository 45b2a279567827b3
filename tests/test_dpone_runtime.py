"""dpone's runtime, switched to dpone-state: its call patterns, its models, its existing tables.

The helpers below reproduce what dpone's runtime does (GitHub ``PaulKov/dpone``):
``runtime/etl/run_state_tracker.py`` (a ``RunState`` built with naive *local*
``datetime.now()``, mutated in place, saved again by ``mark_success`` / ``mark_failed``) and
``runtime/sources/strategies/postgres/postgres_xmin_extract.py`` with
``runtime/etl/source_state.py`` (``get_state`` = ``load_state``; ``persist_after_load`` =
``save_state`` of an ``XMinState`` with a naive local ``timestamp``). The only changes the
runtime makes: an engine (URL) instead of its connector, and one provisioning step.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

import dpone_state
from dpone_state import (
    ConflictingConfigKeysError,
    DisabledState,
    InvalidSecretError,
    MissingConnectionError,
    MissingEnvironmentVariableError,
    RunState,
    RunStateStatus,
    RunStateStorage,
    StateConfigError,
    StateDisabledError,
    StateNotProvisionedError,
    TableRef,
    UnsupportedDponeFeatureError,
    XMinState,
    XMinStateStorage,
    cli,
    load_state_settings,
    migrate,
    open_state,
)
from dpone_state.models import ERROR_MESSAGE_MAX, PROCESS_NAME_MAX
from tests.backends import BACKENDS, Backend
from tests.conftest import StateDB, _engine_or_skip
from tests.dpone_models import DponeRunState, DponeStatus, DponeXMinState
from tests.test_open_state import PASSWORD, Server, Vault, exercise, server_secret

# The servers and Vault of tests/test_open_state.py, as fixtures of this module too.
from tests.test_open_state import mariadb, postgres, vault  # noqa: F401  isort: skip


class LoadStrategy(Enum):
    """dpone's ``LoadStrategy`` (the tracker stores its ``.value``)."""

    INCREMENTAL_MERGE = "incremental_merge"
    FULL_REFRESH = "full_refresh"


@dataclass
class LoadConfig:
    """The fields of dpone's ``LoadConfig`` the state layer sees."""

    source_schema: str = "public"
    source_table: str = "orders"
    target_schema: str = "dwh"
    target_table: str = "orders"
    load_strategy: LoadStrategy = LoadStrategy.INCREMENTAL_MERGE
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Tracker:
    """dpone's ``RunStateTracker``, call for call (naive local clock, in-place mutation)."""

    storage: RunStateStorage
    run_state: RunState | None = None
    started_at: datetime | None = None
    clock: Any = datetime.now  # dpone: datetime.now() - naive, local

    def start(self, load_config: LoadConfig, dag_id: str, execution_date: datetime) -> RunState:
        self.started_at = self.clock()
        self.run_state = RunState(
            dag_id=dag_id,
            process_name=(
                f"{load_config.source_schema}.{load_config.source_table}"
                f"->{load_config.target_schema}.{load_config.target_table}"
            ),
            source_schema=load_config.source_schema,
            source_table=load_config.source_table,
            target_schema=load_config.target_schema,
            target_table=load_config.target_table,
            load_strategy=load_config.load_strategy.value,
            execution_date=execution_date,
            state=RunStateStatus.RUNNING,
            started_at=self.started_at,
        )
        self.storage.save_run_state(self.run_state)
        return self.run_state

    def update_load_strategy(self, load_strategy: str) -> None:
        assert self.run_state is not None
        self.run_state.load_strategy = load_strategy

    def mark_failed(self, result: Mapping[str, Any], exc: Exception) -> None:
        assert self.run_state is not None and self.started_at is not None
        ended_at = self.clock()
        self.run_state.state = RunStateStatus.FAILED
        self.run_state.ended_at = ended_at
        self.run_state.duration_min = round((ended_at - self.started_at).total_seconds() / 60, 2)
        self.run_state.error_message = str(exc)
        self._apply_result_metrics(result)
        self.storage.update_run_state(self.run_state)

    def mark_success(self, result: Mapping[str, Any]) -> None:
        assert self.run_state is not None and self.started_at is not None
        ended_at = self.clock()
        self.run_state.state = RunStateStatus.SUCCESS
        self.run_state.ended_at = ended_at
        self.run_state.duration_min = round((ended_at - self.started_at).total_seconds() / 60, 2)
        self._apply_result_metrics(result)
        self.storage.update_run_state(self.run_state)

    def _apply_result_metrics(self, result: Mapping[str, Any]) -> None:
        assert self.run_state is not None
        inserted = int(result.get("inserted_rows", 0) or 0)
        updated = int(result.get("updated_rows", 0) or 0)
        self.run_state.rows_read = int(result.get("extracted_rows", 0) or 0)
        self.run_state.rows_written = inserted + updated
        self.run_state.rows_updated = updated
        self.run_state.rows_deleted = int(result.get("soft_deleted_rows", 0) or 0)


class XMinStrategy:
    """The state calls of dpone's ``PostgresXMinExtractStrategy`` and ``SourceStateService``."""

    def __init__(self, state_storage: XMinStateStorage) -> None:
        self.state_storage = state_storage

    def get_state(self, load_config: LoadConfig) -> XMinState | None:
        return self.state_storage.load_state(load_config.source_schema, load_config.source_table)

    def persist_after_load(self, load_config: LoadConfig, state: Any) -> None:
        self.state_storage.save_state(load_config.source_schema, load_config.source_table, state)


EXECUTION_DATE = datetime(2026, 5, 6, 2, 0, tzinfo=timezone.utc)  # Airflow's logical date
RESULT = {"extracted_rows": 10, "inserted_rows": 7, "updated_rows": 2, "soft_deleted_rows": 1}


def _near_now(value: datetime | None, clock: datetime) -> bool:
    """``value`` is ``clock`` as stored (naive values are kept as given, labelled UTC)."""
    assert value is not None
    expected = clock.replace(tzinfo=timezone.utc) if clock.tzinfo is None else clock
    return abs(value - expected) < timedelta(milliseconds=1)


# --- the tracker --------------------------------------------------------------------------


def test_tracker_success_lifecycle_mutates_in_place_and_saves_again(runs: RunStateStorage) -> None:
    tracker = Tracker(runs)
    state = tracker.start(LoadConfig(), "orders_daily", EXECUTION_DATE)
    stored = runs.get_run_state("orders_daily", EXECUTION_DATE)
    assert stored is not None and stored.state is RunStateStatus.RUNNING
    assert stored.process_name == "public.orders->dwh.orders"
    assert tracker.started_at is not None and _near_now(stored.started_at, tracker.started_at)

    tracker.update_load_strategy("full_refresh")
    tracker.mark_success(RESULT)  # the same object, mutated, saved with update_run_state
    assert state.state is RunStateStatus.SUCCESS
    done = runs.get_run_state("orders_daily", EXECUTION_DATE)
    assert done is not None and done.state is RunStateStatus.SUCCESS
    assert (done.rows_read, done.rows_written, done.rows_updated, done.rows_deleted) == (
        10,
        9,
        2,
        1,
    )
    assert done.load_strategy == "full_refresh" and done.duration_min is not None
    assert state.ended_at is not None and _near_now(done.ended_at, state.ended_at)
    # dpone's query: the runs of the DAG at that execution date
    listed = runs.get_run_states_by_dag("orders_daily", EXECUTION_DATE)
    assert [r.state for r in listed] == [RunStateStatus.SUCCESS]


def test_tracker_failure_is_recorded_whatever_the_diagnostics(runs: RunStateStorage) -> None:
    """The failure path's save must not fail: a huge message with NULs, a negative duration
    (naive local clocks across a DST change), a process name of dpone's full width."""
    times = iter([datetime(2026, 10, 25, 3, 30), datetime(2026, 10, 25, 3, 5)])  # clock set back
    tracker = Tracker(runs, clock=lambda: next(times))
    long_table = "t" * 127
    config = LoadConfig("s" * 127, long_table, "d" * 127, long_table)
    tracker.start(config, "orders_daily", EXECUTION_DATE)
    message = "boom\x00" + "x" * (ERROR_MESSAGE_MAX + 5)
    if runs.engine.dialect.name == "bigquery":  # the emulator's request size; the cut is tested
        message = "boom\x00" + "x" * 1000  # on the model (tests/test_models.py)
    tracker.mark_failed(RESULT, RuntimeError(message))
    failed = runs.get_run_state("orders_daily", EXECUTION_DATE)
    assert failed is not None and failed.state is RunStateStatus.FAILED
    assert failed.duration_min == 0.0
    assert failed.process_name is not None and len(failed.process_name) == PROCESS_NAME_MAX
    assert failed.error_message is not None and failed.error_message.startswith("boom\ufffdx")
    assert len(failed.error_message) <= ERROR_MESSAGE_MAX


def test_the_runtimes_own_model_objects_are_accepted(
    runs: RunStateStorage, xmin: XMinStateStorage
) -> None:
    """A runtime can switch storages before it switches models."""
    now = datetime.now()
    theirs = DponeRunState(
        "orders_daily", "public", "orders", "dwh", "orders", "incremental_merge",
        EXECUTION_DATE, DponeStatus.RUNNING, now,
    )  # fmt: skip
    runs.save_run_state(theirs)  # type: ignore[arg-type]
    theirs.state = DponeStatus.SUCCESS
    theirs.rows_read = 3
    runs.update_run_state(theirs)  # type: ignore[arg-type]
    stored = runs.get_run_state("orders_daily", EXECUTION_DATE)
    assert stored is not None and (stored.state, stored.rows_read) == (RunStateStatus.SUCCESS, 3)
    assert theirs.started_at is now  # never changed by the storage

    xmin.save_state("public", "orders", DponeXMinState(8_589_934_700, now, frozen_xid=5))  # type: ignore[arg-type]
    loaded = xmin.load_state("public", "orders")
    assert loaded is not None and (loaded.xmin_value, loaded.frozen_xid) == (8_589_934_700, 5)


# --- the XMin strategy --------------------------------------------------------------------


def test_xmin_strategy_get_state_and_persist_after_load(xmin: XMinStateStorage) -> None:
    strategy, config = XMinStrategy(xmin), LoadConfig()
    assert strategy.get_state(config) is None  # first run: full snapshot
    # dpone builds the checkpoint with a naive *local* timestamp; on a UTC+3 host it is 3 h
    # ahead of UTC. dpone's storages ignore it (the server's UTC now()); so does dpone-state.
    local = datetime.now() + timedelta(hours=3)
    before = datetime.now(timezone.utc)
    strategy.persist_after_load(config, XMinState(xmin_value=1_000, timestamp=local))
    first = strategy.get_state(config)
    assert first is not None and first.xmin_value == 1_000
    assert before - timedelta(seconds=1) <= first.timestamp <= datetime.now(timezone.utc)
    later = XMinState(2_000, timestamp=local + timedelta(days=1), wraparound_detected=True)
    strategy.persist_after_load(config, later)
    second = strategy.get_state(config)
    assert second is not None and (second.xmin_value, second.wraparound_detected) == (2_000, True)
    assert second.timestamp == first.timestamp  # __dpone__loaded_at is the first insert's time


# --- dpone's existing tables --------------------------------------------------------------


def _dpone_postgres_tables(engine: Engine, schema: str) -> None:
    """dpone's own DDL and writes (``runtime/state/postgres.py``), verbatim but for names."""
    s = f'"{schema}"'
    statements = [
        f"CREATE SCHEMA IF NOT EXISTS {s}",
        f"""CREATE TABLE IF NOT EXISTS {s}.etl_xmin_state (
            source_schema text NOT NULL,
            source_table text NOT NULL,
            xmin_value bigint NOT NULL,
            is_initial boolean NOT NULL DEFAULT false,
            wraparound_detected boolean NOT NULL DEFAULT false,
            frozen_xid bigint NULL,
            __dpone__loaded_at timestamp NOT NULL DEFAULT timezone('utc', now()),
            __dpone__updated_at timestamp NOT NULL DEFAULT timezone('utc', now()),
            CONSTRAINT pk_etl_xmin_state_source PRIMARY KEY (source_schema, source_table)
        )""",
        f"""CREATE TABLE IF NOT EXISTS {s}.etl_run_state (
            id bigserial NOT NULL,
            dag_id text NOT NULL,
            source_schema text NOT NULL,
            source_table text NOT NULL,
            target_schema text NOT NULL,
            target_table text NOT NULL,
            load_strategy text NOT NULL,
            execution_date timestamp NOT NULL,
            state text NOT NULL,
            started_at timestamp NOT NULL,
            ended_at timestamp NULL,
            duration_min double precision NULL,
            error_message text NULL,
            rows_read bigint NULL,
            rows_written bigint NULL,
            rows_updated bigint NULL,
            rows_deleted bigint NULL,
            __dpone__loaded_at timestamp NOT NULL DEFAULT timezone('utc', now()),
            __dpone__updated_at timestamp NOT NULL DEFAULT timezone('utc', now()),
            CONSTRAINT pk_etl_run_state_dag_execution PRIMARY KEY (dag_id, execution_date)
        )""",
    ]
    save_state = f"""
        INSERT INTO {s}.etl_xmin_state (
            source_schema, source_table, xmin_value, is_initial, wraparound_detected,
            frozen_xid, __dpone__loaded_at, __dpone__updated_at
        )
        VALUES (%s, %s, %s, %s, %s, %s, timezone('utc', now()), timezone('utc', now()))
        ON CONFLICT (source_schema, source_table) DO UPDATE SET
            xmin_value = EXCLUDED.xmin_value,
            is_initial = EXCLUDED.is_initial,
            wraparound_detected = EXCLUDED.wraparound_detected,
            frozen_xid = EXCLUDED.frozen_xid,
            __dpone__updated_at = timezone('utc', now())
    """
    save_run_state = f"""
        INSERT INTO {s}.etl_run_state (
            dag_id, source_schema, source_table, target_schema, target_table, load_strategy,
            execution_date, state, started_at, ended_at, duration_min, error_message,
            rows_read, rows_written, rows_updated, rows_deleted, __dpone__loaded_at,
            __dpone__updated_at
        )
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
            timezone('utc', now()), timezone('utc', now()))
        ON CONFLICT (dag_id, execution_date) DO UPDATE SET
            state = EXCLUDED.state,
            ended_at = EXCLUDED.ended_at,
            duration_min = EXCLUDED.duration_min,
            error_message = EXCLUDED.error_message,
            rows_read = EXCLUDED.rows_read,
            rows_written = EXCLUDED.rows_written,
            rows_updated = EXCLUDED.rows_updated,
            rows_deleted = EXCLUDED.rows_deleted,
            load_strategy = EXCLUDED.load_strategy,
            __dpone__updated_at = timezone('utc', now())
    """
    naive = EXECUTION_DATE.replace(tzinfo=None)
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
        conn.exec_driver_sql(save_state, ("public", "orders", 8_589_934_700, False, False, None))
        conn.exec_driver_sql(save_state, ("public", "orders", 8_589_934_800, False, True, 7))
        for state in ("running", "success"):
            conn.exec_driver_sql(
                save_run_state,
                ("orders_daily", "public", "orders", "dwh", "orders", "incremental_merge", naive,
                 state, naive, None, 1.5, None, 10, 9, 0, 0),
            )  # fmt: skip


def _dpone_bigquery_tables(engine: Engine, schema: str) -> None:
    """dpone's BigQuery schema (``runtime/state/xmin_storage.py``, ``run_state.py``)."""
    from google.cloud import bigquery  # noqa: PLC0415

    with engine.connect() as conn:
        client = conn.connection.dbapi_connection._client  # type: ignore[union-attr]
    client.create_dataset(schema, exists_ok=True)
    required = {"mode": "REQUIRED"}
    xmin_fields = [
        ("source_schema", "STRING", required), ("source_table", "STRING", required),
        ("xmin_value", "INT64", required), ("is_initial", "BOOL", required),
        ("wraparound_detected", "BOOL", required), ("frozen_xid", "INT64", {}),
        ("__dpone__loaded_at", "TIMESTAMP", required),
        ("__dpone__updated_at", "TIMESTAMP", required),
    ]  # fmt: skip
    run_fields = [
        *((n, "STRING", required) for n in ("dag_id", "source_schema", "source_table",
                                           "target_schema", "target_table", "load_strategy")),
        ("execution_date", "TIMESTAMP", required), ("state", "STRING", required),
        ("started_at", "TIMESTAMP", required), ("ended_at", "TIMESTAMP", {}),
        ("duration_min", "FLOAT64", {}), ("error_message", "STRING", {}),
        *((n, "INT64", {}) for n in ("rows_read", "rows_written", "rows_updated",
                                    "rows_deleted")),
        ("__dpone__loaded_at", "TIMESTAMP", required),
        ("__dpone__updated_at", "TIMESTAMP", required),
    ]  # fmt: skip
    project = client.project
    for name, spec in (("etl_xmin_state", xmin_fields), ("etl_run_state", run_fields)):
        table = bigquery.Table(
            f"{project}.{schema}.{name}",
            schema=[bigquery.SchemaField(n, t, **kw) for n, t, kw in spec],
        )
        client.create_table(table, exists_ok=True)
    client.query(
        f"INSERT INTO `{project}.{schema}.etl_xmin_state` VALUES "
        "('public', 'orders', 8589934800, FALSE, TRUE, 7, CURRENT_TIMESTAMP(), "
        "CURRENT_TIMESTAMP())"
    ).result()


@dataclass
class Legacy:
    """dpone's existing tables, never migrated, on one backend."""

    backend: Backend
    engine: Engine
    url: str
    schema: str | None

    def xmin(self) -> XMinStateStorage:
        return XMinStateStorage(self.engine, schema=self.schema)

    def runs(self) -> RunStateStorage:
        return RunStateStorage(self.engine, schema=self.schema)


@pytest.fixture(params=sorted(BACKENDS))
def legacy(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Legacy]:
    backend = BACKENDS[request.param]
    engine, url = _engine_or_skip(backend, tmp_path)
    schema = backend.new_schema_name()
    try:
        if engine.dialect.name == "postgresql":
            assert schema is not None
            _dpone_postgres_tables(engine, schema)
        elif engine.dialect.name == "bigquery":
            assert schema is not None
            _dpone_bigquery_tables(engine, schema)
        else:  # dpone has no SQLite / MySQL state: its v1 shape is migration 0001's tables
            migrate.upgrade(engine, "0001", schema=schema)
            xmin = sa.Table("etl_xmin_state", sa.MetaData(), schema=schema, autoload_with=engine)
            with engine.begin() as conn:
                conn.execute(
                    xmin.insert().values(
                        source_schema="public", source_table="orders", xmin_value=8_589_934_800,
                        is_initial=False, wraparound_detected=True, frozen_xid=7,
                    )
                )  # fmt: skip
        yield Legacy(backend, engine, url, schema)
    finally:
        backend.drop_schema(engine, schema)
        engine.dispose()


def _every_call(legacy: Legacy) -> dict[str, Any]:
    xmin, runs = legacy.xmin(), legacy.runs()
    run = RunState(
        dag_id="orders_daily", source_schema="public", source_table="orders",
        target_schema="dwh", target_table="orders", load_strategy="incremental_merge",
        execution_date=EXECUTION_DATE, state=RunStateStatus.RUNNING, started_at=EXECUTION_DATE,
    )  # fmt: skip
    return {
        "load_state": lambda: xmin.load_state("public", "orders"),
        "save_state": lambda: xmin.save_state("public", "orders", XMinState(9)),
        "save_state_cas": lambda: xmin.save_state(
            "public", "orders", XMinState(9), expected_revision=0
        ),
        "save_states": lambda: xmin.save_states({("public", "orders"): XMinState(9)}),
        "delete_state": lambda: xmin.delete_state("public", "orders"),
        "save_run_state": lambda: runs.save_run_state(run),
        "update_run_state": lambda: runs.update_run_state(run),
        "get_run_state": lambda: runs.get_run_state("orders_daily", EXECUTION_DATE),
        "get_run_states_by_dag": lambda: runs.get_run_states_by_dag("orders_daily"),
        "delete_old_states": lambda: runs.delete_old_states(0),
        "delete_old_states_batched": lambda: runs.delete_old_states(0, batch_size=1),
    }


def test_unmigrated_dpone_tables_give_the_typed_error_on_every_call(legacy: Legacy) -> None:
    for name, call in _every_call(legacy).items():
        with pytest.raises(StateNotProvisionedError) as caught:
            call()
        error = caught.value
        assert error.command is not None, name
        assert error.command.startswith("dpone-state upgrade --url "), name
        assert error.command in str(error), name
        if legacy.schema is not None:
            assert f"--schema {legacy.schema}" in error.command, name
        assert "not yet migrated" in str(error), name
    # and nothing was written or deleted meanwhile
    table = sa.table("etl_xmin_state", sa.column("xmin_value"), schema=legacy.schema)
    with legacy.engine.connect() as conn:
        assert conn.execute(sa.select(table.c.xmin_value)).scalars().all() == [8_589_934_800]


def test_the_named_command_masks_the_password(legacy: Legacy) -> None:
    if legacy.engine.dialect.name != "postgresql":
        pytest.skip("one server with a password in its URL is enough (trust auth ignores it)")
    url = legacy.engine.url.set(password="s3cr3t-pw")
    with sa.create_engine(url).connect():
        pass
    storage = XMinStateStorage(str(url.render_as_string(hide_password=False)), schema=legacy.schema)
    try:
        with pytest.raises(StateNotProvisionedError) as caught:
            storage.load_state("public", "orders")
    finally:
        storage.engine.dispose()
    assert "s3cr3t-pw" not in str(caught.value) and "***" in str(caught.value)


def test_dpone_tables_are_served_after_the_named_upgrade(legacy: Legacy) -> None:
    if legacy.engine.dialect.name == "bigquery":
        pytest.skip(
            "dpone-state upgrade does not adopt BigQuery tables in this version (README: "
            "BigQuery, Provisioning); the typed error above names the command"
        )
    with pytest.raises(StateNotProvisionedError) as caught:
        legacy.xmin().load_state("public", "orders")
    command = caught.value.command
    assert command is not None
    assert cli.main(shlex.split(command)[1:]) == 0  # exactly the command the error names
    xmin, runs = legacy.xmin(), legacy.runs()
    adopted = xmin.load_state("public", "orders")
    assert adopted is not None
    assert (adopted.xmin_value, adopted.frozen_xid, adopted.revision) == (8_589_934_800, 7, 0)
    if legacy.engine.dialect.name == "postgresql":  # rows dpone wrote with its own SQL
        run = runs.get_run_state("orders_daily", EXECUTION_DATE)
        assert run is not None and run.state is RunStateStatus.SUCCESS and run.rows_read == 10
    # and the runtime's calls work on them
    strategy, config = XMinStrategy(xmin), LoadConfig()
    strategy.persist_after_load(config, XMinState(8_589_934_900, timestamp=datetime.now()))
    saved = strategy.get_state(config)
    assert saved is not None and saved.revision == 1 and saved.timestamp == adopted.timestamp
    tracker = Tracker(runs)
    tracker.start(LoadConfig(), "orders_daily", EXECUTION_DATE + timedelta(days=1))
    tracker.mark_success(RESULT)
    dated = runs.get_run_states_by_dag("orders_daily", EXECUTION_DATE + timedelta(days=1))
    assert [r.state for r in dated] == [RunStateStatus.SUCCESS]
    assert xmin.delete_state("public", "orders") is True


def test_dpones_names_for_provisioning_and_sql_server(db: StateDB) -> None:
    assert dpone_state.MSSQLXMinStateStorage is dpone_state.MssqlXMinStateStorage
    assert dpone_state.MSSQLRunStateStorage is dpone_state.MssqlRunStateStorage
    storage = db.xmin(table="dpone_named_xmin")
    storage.create_state_table()  # dpone's public provisioning call
    storage.save_state("public", "orders", XMinState(1))
    assert storage.load_state("public", "orders") is not None
    runs = db.runs(table="dpone_named_runs")
    runs.create_state_table()
    assert runs.get_run_states_by_dag("orders_daily") == []


# --- manifests shaped like dpone's docs ---------------------------------------------------


def test_dpones_xmin_guide_block_opens_postgres_through_vault(
    vault: Vault,  # noqa: F811 - the fixture
    postgres: Server,  # noqa: F811
) -> None:
    """dpone's XMin guide: vault_mount_point / vault_path, credentials_source, run_name."""
    path = vault.write(server_secret(postgres.url))
    manifest = f"""
state:
  type: postgres
  connection_id: postgres_meta
  credentials_source: vault
  vault_mount_point: secret
  vault_path: {path}
  atomicity: after_target
  table: {{schema: {postgres.schema}, name: etl_xmin_state}}
  run_table: {{schema: {postgres.schema}, run_name: dpone_runs}}
sink:
  type: bigquery
  connection_id: bq_dwh
"""
    stores = open_state(manifest, environ=vault.environ)
    assert stores.enabled
    with stores:
        assert (stores.settings.vault.mount_point, stores.settings.vault_path) == ("secret", path)
        assert stores.settings.connection_type == "vault"
        assert stores.runs.qualified_name == f"{postgres.schema}.dpone_runs"
        exercise(stores)


def test_airflow_connections_by_environment_variable(
    postgres: Server,  # noqa: F811 - the fixture
    mariadb: Server,  # noqa: F811
) -> None:
    """Airflow's conventions: AIRFLOW_CONN_<ID> as a URI (percent-encoded) or as JSON."""
    uri = (
        f"postgres://{postgres.url.username}:{quote(PASSWORD, safe='')}@{postgres.url.host}:"
        f"{postgres.url.port}/{postgres.url.database}?sslmode=disable"
    )
    block = {"type": "postgres", "connection_id": "pg_meta", "connection_type": "airflow"}
    block["table"] = {"schema": postgres.schema}
    with open_state(block, environ={"AIRFLOW_CONN_PG_META": uri}) as stores:
        assert stores.enabled
        assert stores.engine.url.password == PASSWORD
        assert stores.engine.url.query["sslmode"] == "disable"
        exercise(stores)
    as_json = json.dumps(
        {
            "conn_type": "mysql",
            "host": mariadb.url.host,
            "port": mariadb.url.port,
            "login": mariadb.url.username,
            "schema": mariadb.url.database,  # Airflow's "schema" is the database
            "extra": {"charset": "utf8mb4", "cursor": "sscursor"},  # hook-only extras ignored
        }
    )
    block = {"type": "mysql", "credentials_source": "airflow", "connection_id": "my_meta"}
    block["table"] = {"schema": mariadb.schema}
    with open_state(block, environ={"AIRFLOW_CONN_MY_META": as_json}) as stores:
        assert stores.enabled
        exercise(stores)
    with pytest.raises(MissingEnvironmentVariableError, match="AIRFLOW_CONN_NOPE"):
        open_state({"type": "postgres", "connection_id": "nope", "connection_type": "airflow"})
    wrong = {"AIRFLOW_CONN_PG_META": uri.replace("postgres://", "mysql://")}
    with pytest.raises(InvalidSecretError, match=r"'mysql' connection but state\.type"):
        open_state({**block, "type": "postgres", "connection_id": "pg_meta"}, environ=wrong)


def test_airflows_own_lookup_when_airflow_is_importable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the variable, Airflow's ``BaseHook.get_connection`` (secrets backends, DB)."""
    asked: list[str] = []

    class BaseHook:
        @staticmethod
        def get_connection(conn_id: str) -> Any:
            asked.append(conn_id)
            return SimpleNamespace(
                conn_type="sqlite", host=str(tmp_path / "state.db"), login=None,
                password=None, port=None, schema=None, extra_dejson={},
            )  # fmt: skip

    hooks = ModuleType("airflow.hooks")
    base = ModuleType("airflow.hooks.base")
    base.BaseHook = BaseHook  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "airflow", ModuleType("airflow"))
    monkeypatch.setitem(sys.modules, "airflow.hooks", hooks)
    monkeypatch.setitem(sys.modules, "airflow.hooks.base", base)
    block = {"type": "sqlite", "connection_id": "local_state", "connection_type": "airflow"}
    with open_state(block, environ={}) as stores:
        assert stores.enabled
        exercise(stores)
    assert asked == ["local_state"]


@pytest.mark.parametrize("spelling", ["disabled", "noop", "None", "OFF"])
def test_disabled_state_connects_nothing(spelling: str) -> None:
    # a connection that cannot be resolved: any attempt to connect would raise
    block = {"type": spelling, "connection_id": "nowhere", "connection_type": "env"}
    result = open_state({"state": block, "sink": {"type": "mssql"}}, environ={})
    assert not result.enabled
    assert isinstance(result, DisabledState) and result.type == spelling.lower()
    with pytest.raises(StateDisabledError, match="keeps no state"):
        load_state_settings(block)


def test_provisioning_runtime_creates_the_tables_once_on_open(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with open_state({"type": "sqlite", "url": url, "provisioning": "runtime"}) as stores:
        assert stores.enabled
        assert stores.xmin.load_state("public", "orders") is None  # provisioned: no error
    with open_state({"type": "sqlite", "url": f"sqlite:///{tmp_path / 'b.db'}"}) as stores:
        assert stores.enabled
        with pytest.raises(StateNotProvisionedError):
            stores.xmin.load_state("public", "orders")


@pytest.mark.parametrize(
    ("key", "value", "feature"),
    [
        ("atomicity", "target_atomic", "target-atomic SQL Server state"),
        ("receipt_table", {"name": "dpone_commit_receipt"}, "commit receipts"),
        ("audit_table", {"name": "dpone_load_audit"}, "load audit"),
        ("kafka_table", {"kafka_name": "etl_kafka_offsets"}, "Kafka offset state"),
        ("repair_authority_table", {"name": "r"}, "repair authority"),
        ("partition_checkpoint_table", {"name": "p"}, "partition checkpoints"),
    ],
)
def test_sql_server_only_keys_are_refused_by_the_feature_they_name(
    key: str, value: object, feature: str
) -> None:
    block = {"type": "mssql", "connection_id": "mssql_dwh", key: value}
    with pytest.raises(UnsupportedDponeFeatureError) as caught:
        load_state_settings(block)
    assert caught.value.field == f"state.{key}"
    assert feature in str(caught.value) and "unknown key" not in str(caught.value)


def test_sql_server_keys_that_are_honoured() -> None:
    block = {
        "type": "mssql",
        "connection_id": "mssql_dwh",
        "atomicity": "after_target",
        "provisioning": "external",
        "table": {"database": "dwh", "schema": "etl_state", "name": "etl_xmin_state"},
        "run_table": {"database": "dwh", "name": "etl_run_state"},
    }
    settings = load_state_settings(block)
    assert (settings.database, settings.provisioning) == ("dwh", "external")
    assert settings.run_table == TableRef("etl_state", "etl_run_state")
    with pytest.raises(UnsupportedDponeFeatureError, match="three-part name"):
        load_state_settings({**block, "type": "postgres"})
    with pytest.raises(ConflictingConfigKeysError, match="one database"):
        load_state_settings({**block, "run_table": {"database": "other"}})
    with pytest.raises(StateConfigError, match="after_target or target_atomic"):
        load_state_settings({**block, "atomicity": "eventually"})


def test_dpone_aliases_conflicting_with_ours_are_refused() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"run_table": {"name": "a", "run_name": "b"}}, "state.run_table.run_name"),
        ({"connection_type": "env", "credentials_source": "vault"}, "state.credentials_source"),
        ({"vault": {"path": "a"}, "vault_path": "b"}, "state.vault_path"),
        ({"vault": {"mount_point": "a"}, "vault_mount_point": "b"}, "state.vault_mount_point"),
    ]
    for extra, named in cases:
        with pytest.raises(ConflictingConfigKeysError) as caught:
            load_state_settings({"type": "postgres", "connection_id": "pg", **extra})
        assert caught.value.field == named
    same = load_state_settings(
        {"type": "postgres", "connection_id": "pg", "run_table": {"name": "r", "run_name": "r"}}
    )
    assert same.run_table.name == "r"


def test_bigquery_state_reuses_the_sinks_connection_as_dpone_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = {"type": "bigquery", "connection_id": "bq_dwh", "connection_type": "env"}
    for block in ({"type": "bigquery"}, {}):  # explicit, or omitted (BigQuery, logged)
        with caplog.at_level(logging.INFO, logger="dpone_state"):
            settings = load_state_settings({"state": block, "sink": sink})
        assert (settings.type, settings.connection_id) == ("bigquery", "bq_dwh")
        assert settings.connection_from_sink and settings.connection_type == "env"
    assert any("state.type is not set" in r.getMessage() for r in caplog.records)
    mssql_sink = {"type": "mssql", "connection_id": "mssql_dwh"}
    with pytest.raises(MissingConnectionError):  # an omitted type never reuses an MSSQL sink
        load_state_settings({"state": {}, "sink": mssql_sink})


def test_tables_downgraded_under_a_running_runtime_give_the_typed_error(legacy: Legacy) -> None:
    migrate.upgrade(legacy.engine, schema=legacy.schema)
    xmin, runs = legacy.xmin(), legacy.runs()  # built while the tables are at head
    xmin.save_state("public", "orders", XMinState(8_589_934_900))
    migrate.downgrade(legacy.engine, "0001", schema=legacy.schema)
    for call in _every_call(legacy).values():
        with pytest.raises(StateNotProvisionedError, match="dpone-state upgrade"):
            call()
    with pytest.raises(StateNotProvisionedError):
        xmin.load_state("public", "orders")
    with pytest.raises(StateNotProvisionedError):
        runs.get_run_states_by_dag("orders_daily")
