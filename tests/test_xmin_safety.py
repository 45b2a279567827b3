"""XMin around the window: rows that join a table with an old xmin, foreign partitions, a
failover, shared checkpoints, a caller's bind names, abandoned runs; and the health view.

Every scenario runs pipelines the way a runtime does (extract, load, commit) and checks what
the issue asks of each: every committed row version of the table's final content was
delivered at least once, and checkpoints never move backward as 64-bit values; or the run is
refused with a typed error before a row is read. The source is one throwaway cluster this
module owns (scripts/services/pg-cluster.sh, autovacuum off, on its own port and data dir);
the failover test builds a standby of it with pg_basebackup, promotes it and then restores
the module's cluster; the last test moves the cluster across 2^32 with ``wrap``.
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

import dpone_state
from dpone_state import (
    WindowKind,
    XMinError,
    XMinExtractor,
    XMinState,
    XMinStateStorage,
    create_state_engine,
)
from tests.backends import IN_CI, free_port
from tests.test_xmin_extraction import PG_BIN, SCRIPT, _cluster_unavailable

EPOCH = 1 << 32
PORT = os.environ.get("DPONE_STATE_TEST_XMIN_SAFETY_PORT") or free_port()
STANDBY_PORT = os.environ.get("DPONE_STATE_TEST_XMIN_STANDBY_PORT") or free_port()
DATA_DIR = os.environ.get("DPONE_STATE_TEST_XMIN_SAFETY_DIR") or (
    f"/tmp/dpone-state-pg-xmin-safety-{PORT}"
)
STANDBY_DIR = f"{DATA_DIR}-standby"


@dataclass
class Server:
    """One throwaway server: its port, data dir and an engine on it."""

    port: str
    data_dir: str
    engine: Engine = field(init=False)

    def __post_init__(self) -> None:
        self.engine = create_state_engine(self.url())

    def url(self, user: str = "postgres", database: str = "postgres") -> str:
        return f"postgresql+psycopg2://{user}@127.0.0.1:{self.port}/{database}"

    def script(self, command: str) -> None:
        env = {
            **os.environ,
            "DPONE_STATE_PG_CLUSTER_DIR": self.data_dir,
            "DPONE_STATE_PG_CLUSTER_PORT": self.port,
            "DPONE_STATE_PG_BIN": str(PG_BIN),
        }
        done = subprocess.run(
            ["bash", str(SCRIPT), command], env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"pg-cluster.sh {command} failed: {done.stderr[-2000:]}")
        self.engine.dispose()

    def sql(self, *statements: str, **params: Any) -> Any:
        """Run statements in autocommit; the first column of the last one's first row."""
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            result = None
            for statement in statements:
                rows = conn.execute(sa.text(statement), params)
                result = rows.first() if rows.returns_rows else None
            return None if result is None else result[0]

    def next_xid(self) -> int:
        return int(self.sql("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"))

    def burn(self, count: int) -> None:
        """Use ``count`` transaction IDs (one committed transaction each, server-side)."""
        if count > 0:
            self.sql(
                "DO $$ BEGIN FOR i IN 1.." + str(int(count)) + " LOOP "
                "PERFORM pg_current_xact_id(); COMMIT; END LOOP; END $$"
            )


def _as_postgres(*command: str) -> None:
    subprocess.run(
        ["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, cwd="/"
    )


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    problem = _cluster_unavailable()
    if problem is not None:
        if IN_CI:
            pytest.fail(f"required in CI: throwaway PostgreSQL cluster: {problem}", pytrace=False)
        pytest.skip(f"throwaway PostgreSQL cluster: {problem}")
    made = Server(PORT, DATA_DIR)
    made.script("destroy")
    made.script("init")
    try:
        made.sql("ALTER SYSTEM SET autovacuum = off", "SELECT pg_reload_conf()")
        yield made
    finally:
        made.engine.dispose()
        made.script("destroy")


@pytest.fixture
def schema(server: Server) -> Iterator[str]:
    name = f"s_{uuid.uuid4().hex[:8]}"
    server.sql(f"CREATE SCHEMA {name}")
    yield name
    server.sql(f"DROP SCHEMA {name} CASCADE")


@pytest.fixture
def checkpoints(tmp_path: Path) -> XMinStateStorage:
    storage = XMinStateStorage(f"sqlite:///{tmp_path / 'state.db'}")
    storage.create_tables()
    return storage


@dataclass
class Pipeline:
    """A runtime's loop over one table: every run loads its rows into ``delivered``."""

    extractor: XMinExtractor
    schema: str
    table: str
    options: dict[str, Any] = field(default_factory=dict)
    delivered: set[tuple[Any, ...]] = field(default_factory=set)
    saved: list[XMinState] = field(default_factory=list)
    kinds: list[WindowKind] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def run(self) -> None:
        with self.extractor.extract(
            self.schema, self.table, batch_size=50, **self.options
        ) as extraction:
            self.delivered |= {(row["id"], row["v"]) for row in extraction}
            self.saved.append(extraction.commit())
            self.kinds.append(extraction.window.kind)
            self.reasons.append(extraction.window.reason)

    def final_content(self, engine: Engine, where: str = "true") -> set[tuple[Any, ...]]:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(f"SELECT id, v FROM {self.schema}.{self.table} WHERE {where}")
            )
            return {tuple(row) for row in rows}

    def check(self, engine: Engine, where: str = "true") -> None:
        """Nothing lost; checkpoints never moved backward (as 64-bit values)."""
        missing = self.final_content(engine, where) - self.delivered
        assert not missing, f"rows never delivered: {sorted(missing)}"
        values = [s.xmin_value for s in self.saved]
        assert all(a <= b for a, b in itertools.pairwise(values)), values


# --- 1. rows that join the table with an old xmin ---------------------------------------------


def test_attaching_a_partition_filled_before_the_checkpoint_forces_a_full_refresh(
    server: Server, schema: str, checkpoints: XMinStateStorage, caplog: pytest.LogCaptureFixture
) -> None:
    server.sql(
        f"CREATE TABLE {schema}.events (id int, month int, v text) PARTITION BY LIST (month)",
        f"CREATE TABLE {schema}.events_1 PARTITION OF {schema}.events FOR VALUES IN (1)",
        f"INSERT INTO {schema}.events VALUES (1, 1, 'jan')",
        # the backfilled month, filled before the checkpoint and attached after it
        f"CREATE TABLE {schema}.events_2 (id int, month int, v text)",
        f"INSERT INTO {schema}.events_2 SELECT g, 2, 'feb' FROM generate_series(100, 149) g",
    )
    pipeline = Pipeline(XMinExtractor(server.engine, checkpoints), schema, "events")
    pipeline.run()
    server.sql(f"INSERT INTO {schema}.events VALUES (2, 1, 'jan')")
    # A partition created after the checkpoint holds only rows of the next window: its rows
    # are checked in the run's snapshot, and no full refresh is needed.
    server.sql(
        f"CREATE TABLE {schema}.events_3 PARTITION OF {schema}.events FOR VALUES IN (3)",
        f"INSERT INTO {schema}.events VALUES (300, 3, 'mar')",
    )
    pipeline.run()
    assert pipeline.kinds == [WindowKind.FULL, WindowKind.SAME_EPOCH]
    assert pipeline.delivered >= {(2, "jan"), (300, "mar")}

    server.sql(
        f"ALTER TABLE {schema}.events ATTACH PARTITION {schema}.events_2 FOR VALUES IN (2)",
        f"INSERT INTO {schema}.events VALUES (3, 1, 'jan')",
    )
    with caplog.at_level(logging.WARNING, logger="dpone_state.xmin"):
        pipeline.run()
    pipeline.check(server.engine)
    assert pipeline.kinds[-1] is WindowKind.FULL and pipeline.saved[-1].is_initial
    assert "partitions" in pipeline.reasons[-1]
    assert "partitions" in caplog.text  # logged with the reason

    pipeline.run()  # the new shape is the checkpoint's now: windows again
    assert pipeline.kinds[-1] is WindowKind.SAME_EPOCH and not pipeline.saved[-1].is_initial

    # A partition that leaves brings no row in: no full refresh either.
    server.sql(f"ALTER TABLE {schema}.events DETACH PARTITION {schema}.events_3")
    pipeline.run()
    assert pipeline.kinds[-1] is WindowKind.SAME_EPOCH
    pipeline.check(server.engine)


def test_a_rename_swap_with_a_shadow_table_forces_a_full_refresh(
    server: Server, schema: str, checkpoints: XMinStateStorage
) -> None:
    server.sql(
        f"CREATE TABLE {schema}.orders (id int, v text)",
        f"INSERT INTO {schema}.orders VALUES (1, 'blue')",
        f"CREATE TABLE {schema}.orders_green (id int, v text)",  # built before the checkpoint
        f"INSERT INTO {schema}.orders_green SELECT g, 'green' FROM generate_series(1, 40) g",
    )
    pipeline = Pipeline(XMinExtractor(server.engine, checkpoints), schema, "orders")
    pipeline.run()
    server.sql(
        f"BEGIN; ALTER TABLE {schema}.orders RENAME TO orders_blue; "
        f"ALTER TABLE {schema}.orders_green RENAME TO orders; COMMIT"
    )
    pipeline.run()
    pipeline.check(server.engine)
    assert pipeline.kinds[-1] is WindowKind.FULL and "replaced" in pipeline.reasons[-1]

    # Rewrites keep the oid: they are re-reads at worst, never a refresh or a loss.
    server.sql(f"VACUUM FULL {schema}.orders", f"INSERT INTO {schema}.orders VALUES (41, 'x')")
    pipeline.run()
    pipeline.check(server.engine)
    assert "replaced" not in pipeline.reasons[-1]


def test_a_new_partition_the_user_may_not_read_directly_is_a_full_refresh_not_an_error(
    server: Server, schema: str, checkpoints: XMinStateStorage
) -> None:
    role = f"reader_{uuid.uuid4().hex[:6]}"
    server.sql(
        f"CREATE TABLE {schema}.events (id int, month int, v text) PARTITION BY LIST (month)",
        f"CREATE TABLE {schema}.events_1 PARTITION OF {schema}.events FOR VALUES IN (1)",
        f"INSERT INTO {schema}.events VALUES (1, 1, 'jan')",
        f"CREATE ROLE {role} LOGIN",
        f"GRANT USAGE ON SCHEMA {schema} TO {role}",
        f"GRANT SELECT ON {schema}.events TO {role}",  # the parent only
    )
    reader = create_state_engine(server.url(role))
    try:
        pipeline = Pipeline(XMinExtractor(reader, checkpoints), schema, "events")
        pipeline.run()
        server.sql(
            f"CREATE TABLE {schema}.events_2 PARTITION OF {schema}.events FOR VALUES IN (2)",
            f"INSERT INTO {schema}.events VALUES (2, 2, 'feb')",
        )
        pipeline.run()  # cannot check the new partition's rows: reads everything instead
        assert pipeline.kinds[-1] is WindowKind.FULL and "partitions" in pipeline.reasons[-1]
        pipeline.check(server.engine)
    finally:
        reader.dispose()
        server.sql(f"DROP OWNED BY {role}", f"DROP ROLE {role}")


def test_inherit_of_a_child_filled_before_the_checkpoint_forces_a_full_refresh(
    server: Server, schema: str, checkpoints: XMinStateStorage
) -> None:
    server.sql(
        f"CREATE TABLE {schema}.parent (id int, v text)",
        f"INSERT INTO {schema}.parent VALUES (1, 'p')",
        f"CREATE TABLE {schema}.child (id int, v text)",
        f"INSERT INTO {schema}.child SELECT g, 'c' FROM generate_series(10, 29) g",
    )
    pipeline = Pipeline(XMinExtractor(server.engine, checkpoints), schema, "parent")
    pipeline.run()
    server.sql(f"ALTER TABLE {schema}.child INHERIT {schema}.parent")
    pipeline.run()
    pipeline.check(server.engine)
    assert pipeline.kinds[-1] is WindowKind.FULL and "inheritance" in pipeline.reasons[-1]


# --- 2. foreign partitions -----------------------------------------------------------------------


def test_a_foreign_partition_is_refused_never_skipped(
    server: Server, schema: str, checkpoints: XMinStateStorage
) -> None:
    server.sql(
        "CREATE EXTENSION IF NOT EXISTS postgres_fdw",
        f"CREATE SERVER IF NOT EXISTS loopback_{PORT} FOREIGN DATA WRAPPER postgres_fdw "
        f"OPTIONS (host '127.0.0.1', port '{PORT}', dbname 'postgres')",
        f"CREATE USER MAPPING IF NOT EXISTS FOR postgres SERVER loopback_{PORT} "
        "OPTIONS (user 'postgres')",
        f"CREATE TABLE {schema}.remote (id int, region text, v text)",
        f"CREATE TABLE {schema}.sales (id int, region text, v text) PARTITION BY LIST (region)",
        f"CREATE TABLE {schema}.sales_eu PARTITION OF {schema}.sales FOR VALUES IN ('eu')",
        f"CREATE FOREIGN TABLE {schema}.sales_us PARTITION OF {schema}.sales "
        f"FOR VALUES IN ('us') SERVER loopback_{PORT} "
        f"OPTIONS (schema_name '{schema}', table_name 'remote')",
        f"INSERT INTO {schema}.sales VALUES (1, 'eu', 'a'), (2, 'us', 'b')",
    )
    pipeline = Pipeline(XMinExtractor(server.engine, checkpoints), schema, "sales")
    try:
        pipeline.run()
        server.sql(f"INSERT INTO {schema}.sales VALUES (3, 'eu', 'c'), (4, 'us', 'd')")
        pipeline.run()
    except XMinError as refused:
        assert type(refused).__name__ == "ForeignPartitionError"
        assert isinstance(refused, dpone_state.SourceNotATableError)
        assert "xmin = 0" in str(refused) and f"{schema}.sales_us" in str(refused)
        assert pipeline.saved == []  # refused at the first run, before any checkpoint
        assert checkpoints.load_state(schema, "sales") is None
        return
    pipeline.check(server.engine)  # otherwise every row must have arrived


# --- 3. failover to an asynchronous standby ---------------------------------------------------


def _wait_for_replay(primary: Server, standby: Server) -> None:
    lsn = primary.sql("SELECT pg_current_wal_lsn()::text")
    deadline = time.monotonic() + 30
    while not standby.sql("SELECT pg_last_wal_replay_lsn() >= CAST(:lsn AS pg_lsn)", lsn=lsn):
        if time.monotonic() > deadline:
            raise TimeoutError("the standby did not catch up")
        time.sleep(0.05)


def test_failover_to_a_lagging_standby_forces_a_full_refresh(
    server: Server, schema: str, checkpoints: XMinStateStorage
) -> None:
    standby = Server(STANDBY_PORT, STANDBY_DIR)
    standby.script("destroy")
    server.sql(f"CREATE TABLE {schema}.t (id int, v text)")
    server.sql(f"INSERT INTO {schema}.t SELECT g, 'before' FROM generate_series(1, 10) g")
    try:
        _as_postgres(
            str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", server.port, "-U",
            "postgres", "-D", STANDBY_DIR, "-R", "-X", "stream", "--no-sync",
        )  # fmt: skip
        standby.script("start")
        old = Pipeline(XMinExtractor(server.engine, checkpoints), schema, "t")
        old.run()
        _wait_for_replay(server, standby)

        # The standby falls behind: what the primary does now never reaches it.
        standby.script("stop")
        server.sql(f"INSERT INTO {schema}.t VALUES (1000, 'lost with the old primary')")
        server.burn(100)
        old.run()
        checkpoint = old.saved[-1].xmin_value
        server.script("stop")

        # Promote the standby: it hands out transaction IDs below the checkpoint again.
        standby.script("start")
        _as_postgres(str(PG_BIN / "pg_ctl"), "promote", "-D", STANDBY_DIR, "-w")
        assert standby.next_xid() < checkpoint
        for i in range(60):
            standby.sql(f"INSERT INTO {schema}.t VALUES ({100 + i}, 'after failover')")
        standby.burn(checkpoint - standby.next_xid() + 5)  # past the old checkpoint
        for i in range(40):
            standby.sql(f"INSERT INTO {schema}.t VALUES ({200 + i}, 'after failover')")
        assert standby.next_xid() > checkpoint  # the "checkpoint ahead" guard cannot fire

        new = Pipeline(XMinExtractor(standby.engine, checkpoints), schema, "t")
        new.delivered, new.saved = set(old.delivered), list(old.saved)
        new.run()
        new.check(standby.engine)
        assert new.kinds[-1] is WindowKind.FULL and "timeline" in new.reasons[-1]
        assert new.saved[-1].is_initial
        new.run()  # the new timeline is recorded: windows again
        assert new.kinds[-1] is WindowKind.SAME_EPOCH
    finally:
        standby.engine.dispose()
        standby.script("destroy")
        server.script("start")  # the module's cluster, on its own timeline again


def test_an_unreadable_history_is_said_in_the_result(
    server: Server, schema: str, checkpoints: XMinStateStorage
) -> None:
    role = f"reader_{uuid.uuid4().hex[:6]}"
    server.sql(
        f"CREATE TABLE {schema}.t (id int, v text)",
        f"CREATE ROLE {role} LOGIN",
        f"GRANT USAGE ON SCHEMA {schema} TO {role}",
        f"GRANT SELECT ON {schema}.t TO {role}",
        "REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC",
        "REVOKE EXECUTE ON FUNCTION pg_walfile_name(pg_lsn) FROM PUBLIC",
    )
    reader = create_state_engine(server.url(role))
    try:
        with XMinExtractor(reader, checkpoints).extract(schema, "t") as extraction:
            list(extraction)
            assert extraction.snapshot.history is not None
            assert extraction.snapshot.history.system_identifier is None
            (warning,) = extraction.warnings
            assert "system identifier and timeline" in warning and "EXECUTE" in warning
            extraction.commit()
        (health,) = dpone_state.xmin_health(reader, checkpoints)
        assert health.verdict == "warn" and health.timeline is None
        assert any("failover" in reason for reason in health.reasons)
    finally:
        reader.dispose()
        server.sql(
            "GRANT EXECUTE ON FUNCTION pg_control_system() TO PUBLIC",
            "GRANT EXECUTE ON FUNCTION pg_walfile_name(pg_lsn) TO PUBLIC",
            f"DROP OWNED BY {role}",
            f"DROP ROLE {role}",
        )


# --- 4. shared checkpoints -------------------------------------------------------------------------


def test_two_pipelines_with_different_predicates_never_share_a_checkpoint(
    server: Server, schema: str, checkpoints: XMinStateStorage
) -> None:
    server.sql(
        f"CREATE TABLE {schema}.orders (id int, region text, v text)",
        f"INSERT INTO {schema}.orders SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, 'x' "
        "FROM generate_series(1, 20) g",
    )
    extractor = XMinExtractor(server.engine, checkpoints)
    eu = Pipeline(extractor, schema, "orders", {"where": sa.column("region") == "eu"})
    us = Pipeline(extractor, schema, "orders", {"where": sa.column("region") == "us"})
    eu.run()
    server.sql(f"INSERT INTO {schema}.orders VALUES (21, 'us', 'y'), (22, 'eu', 'y')")
    try:
        us.run()  # on the eu pipeline's checkpoint: today it skips the us rows 1..19
    except XMinError as refused:
        assert type(refused).__name__ == "CheckpointIdentityError"
        assert "checkpoint_key" in str(refused)
        us.options["checkpoint_key"] = "us"
        us.run()  # a checkpoint of its own: its initial full refresh
        assert us.kinds == [WindowKind.FULL]
        assert checkpoints.load_state(schema, "orders#us") == us.saved[-1]
    eu.run()
    us.run()
    eu.check(server.engine, "region = 'eu'")
    us.check(server.engine, "region = 'us'")
    assert checkpoints.load_state(schema, "orders") == eu.saved[-1]


def test_the_same_table_in_two_databases_never_shares_a_checkpoint(
    server: Server, checkpoints: XMinStateStorage
) -> None:
    database = f"db_{uuid.uuid4().hex[:6]}"
    server.sql(f"CREATE DATABASE {database}")
    other = create_state_engine(server.url(database=database))
    try:
        for engine in (server.engine, other):
            with engine.begin() as conn:
                conn.exec_driver_sql("CREATE TABLE public.shared (id int, v text)")
                conn.exec_driver_sql("INSERT INTO public.shared VALUES (1, 'one'), (2, 'two')")
        first = Pipeline(XMinExtractor(server.engine, checkpoints), "public", "shared")
        second = Pipeline(XMinExtractor(other, checkpoints), "public", "shared")
        first.run()
        try:
            second.run()
            second.check(other)  # if it ran at all, nothing may be missing
        except XMinError as refused:
            assert type(refused).__name__ == "CheckpointIdentityError"
            assert database in str(refused)
        second.options["checkpoint_key"] = database
        second.run()
        second.check(other)
        # The health view of one source judges that source's checkpoints only, unless asked.
        (mine,) = dpone_state.xmin_health(server.engine, checkpoints)
        assert (mine.checkpoint_table, mine.identity_mismatch) == ("shared", "")
        both = dpone_state.xmin_health(server.engine, checkpoints, all_databases=True)
        theirs = next(h for h in both if h.checkpoint_key == database)
        assert theirs.source_table == "shared" and theirs.checkpoint_table == f"shared#{database}"
        assert theirs.verdict == "warn" and database in theirs.identity_mismatch
    finally:
        other.dispose()
        server.sql("DROP TABLE IF EXISTS public.shared", f"DROP DATABASE {database}")


def test_a_legacy_checkpoint_is_adopted_by_the_first_save(
    server: Server, schema: str, checkpoints: XMinStateStorage
) -> None:
    server.sql(f"CREATE TABLE {schema}.t (id int, v text)")
    legacy = server.next_xid()
    server.sql(f"INSERT INTO {schema}.t VALUES (1, 'a')")
    checkpoints.save_state(schema, "t", XMinState(legacy))  # as dpone's runtime left it
    pipeline = Pipeline(XMinExtractor(server.engine, checkpoints), schema, "t")
    pipeline.run()
    assert pipeline.kinds == [WindowKind.SAME_EPOCH] and pipeline.delivered == {(1, "a")}
    stored = checkpoints.load_state(schema, "t")
    assert stored is not None and stored.extraction_identity is not None
    assert stored.source_fingerprint is not None
    with pytest.raises(dpone_state.CheckpointIdentityError):  # adopted: now it is owned
        XMinExtractor(server.engine, checkpoints).extract(schema, "t", columns=["id"])


# --- 5. and 6. bind names, abandoned runs ---------------------------------------------------------


@pytest.mark.parametrize(("name", "first_id"), [("xmin_low", 2_000_000_000), ("xmin_high", 1)])
def test_a_callers_bind_parameter_never_replaces_the_window_bounds(
    server: Server, schema: str, checkpoints: XMinStateStorage, name: str, first_id: int
) -> None:
    """A caller's ``:xmin_low`` / ``:xmin_high`` merged into the window's would move it away
    from the new rows (low up to 2e9, high down to 0); unique bind names keep them apart."""
    server.sql(f"CREATE TABLE {schema}.t (id int, v text)")
    where = sa.column("id") > sa.bindparam(name, first_id - 1)
    pipeline = Pipeline(XMinExtractor(server.engine, checkpoints), schema, "t", {"where": where})
    pipeline.run()
    server.sql(
        f"INSERT INTO {schema}.t SELECT g, 'v' FROM generate_series({first_id}, {first_id + 4}) g"
    )
    pipeline.run()
    pipeline.check(server.engine)
    assert len(pipeline.delivered) == 5


def test_an_abandoned_extraction_closes_quietly(
    server: Server, schema: str, checkpoints: XMinStateStorage, caplog: pytest.LogCaptureFixture
) -> None:
    server.sql(
        f"CREATE TABLE {schema}.t (id int, v text)",
        f"INSERT INTO {schema}.t SELECT g, 'v' FROM generate_series(1, 100) g",
    )
    extractor = XMinExtractor(server.engine, checkpoints)

    def abandon() -> None:
        with extractor.extract(schema, "t", batch_size=10) as extraction:
            batches = extraction.batches()
            next(batches)  # the load stops after one batch, the generator stays unfinished
        # leaving the block closed the extraction; the generator is dropped when this returns

    with caplog.at_level(logging.DEBUG):
        abandon()
        gc.collect()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert checkpoints.load_state(schema, "t") is None
    with server.engine.connect() as conn:  # nothing left open on the source
        open_transactions = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_xmin IS NOT NULL "
                "AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    assert open_transactions == 0


# --- the health view --------------------------------------------------------------------------------


def test_health_near_a_forced_freeze(
    server: Server, schema: str, checkpoints: XMinStateStorage
) -> None:
    """autovacuum_freeze_max_age at its minimum (100,000) brings a forced freeze within reach."""
    server.sql("ALTER SYSTEM SET autovacuum_freeze_max_age = 100000")
    server.script("restart")
    try:
        server.sql("VACUUM (FREEZE)")  # this database's datfrozenxid is recent
        server.sql(
            f"CREATE TABLE {schema}.t (id int, v text)", f"INSERT INTO {schema}.t VALUES (1, 'a')"
        )
        pipeline = Pipeline(XMinExtractor(server.engine, checkpoints), schema, "t")
        pipeline.run()
        # thresholds for a freeze age of 100,000 (the defaults suit the default 200 million)
        limits = dpone_state.HealthThresholds(
            xids_until_forced_freeze=20_000, freeze_headroom=20_000
        )

        def health(**kwargs: Any) -> list[dpone_state.CheckpointHealth]:
            return dpone_state.xmin_health(server.engine, checkpoints, thresholds=limits, **kwargs)

        (fresh,) = health()
        assert fresh.verdict == "ok", fresh.reasons
        assert fresh.xids_behind == 0 and fresh.full_refresh_reason == ""
        assert 90_000 < (fresh.xids_until_forced_freeze or 0) <= 100_000
        assert fresh.freeze_max_age == 100_000

        server.burn(92_000)  # below the limit: no anti-wraparound autovacuum yet
        (near,) = health()
        assert near.verdict == "warn"
        assert near.xids_until_forced_freeze is not None and near.xids_until_forced_freeze < 10_000
        assert near.xids_behind >= 92_000
        assert any("relfrozenxid passes the checkpoint" in r for r in near.reasons)
        assert any("autovacuum_freeze_max_age" in r for r in near.reasons)
        strict = dpone_state.HealthThresholds(
            xids_behind=None, age=None, xids_until_forced_freeze=None, freeze_headroom=None
        )
        assert (
            dpone_state.xmin_health(server.engine, checkpoints, thresholds=strict)[0].verdict
            == "ok"
        )
        assert dpone_state.xmin_health(
            server.engine,
            checkpoints,
            thresholds=dpone_state.HealthThresholds(age=timedelta(0)),
            now=near.updated_at + timedelta(hours=2),
        )[0].age == timedelta(hours=2)

        server.sql(f"VACUUM (FREEZE) {schema}.t")  # what the forced autovacuum would do
        (frozen,) = health()
        assert frozen.verdict == "full refresh due"
        assert "relfrozenxid" in frozen.full_refresh_reason and frozen.xids_until_forced_freeze == 0
        assert frozen.to_dict()["verdict"] == "full refresh due"

        pipeline.run()  # what the view predicted
        assert pipeline.kinds[-1] is WindowKind.FULL
        server.sql("VACUUM (FREEZE)")
        (after,) = health()
        assert after.verdict == "ok", after.reasons
    finally:
        server.sql("ALTER SYSTEM RESET autovacuum_freeze_max_age")
        server.script("restart")


def test_health_across_the_wraparound(
    server: Server, schema: str, checkpoints: XMinStateStorage
) -> None:
    server.script("wrap")  # next XID just below 2**32
    assert EPOCH - 2000 < server.next_xid() < EPOCH
    server.sql(
        f"CREATE TABLE {schema}.t (id int, v text)", f"INSERT INTO {schema}.t VALUES (1, 'a')"
    )
    pipeline = Pipeline(XMinExtractor(server.engine, checkpoints), schema, "t")
    pipeline.run()
    before = pipeline.saved[-1].xmin_value
    assert before < EPOCH

    server.burn(EPOCH + 500 - server.next_xid())
    server.sql(f"INSERT INTO {schema}.t VALUES (2, 'b')")
    (health,) = dpone_state.xmin_health(server.engine, checkpoints)
    assert health.anchor > EPOCH and health.xids_behind == health.anchor - before
    assert 500 < health.xids_behind < 3000
    assert health.frozen_xid is not None and health.frozen_xid < EPOCH  # epoch-extended right
    assert health.verdict == "ok", health.reasons

    # A checkpoint two epochs back, and one ahead of the source: full refreshes due.
    checkpoints.save_state(schema, "t", XMinState(health.anchor - EPOCH - 10))
    assert dpone_state.xmin_health(server.engine, checkpoints)[0].verdict == "full refresh due"
    checkpoints.save_state(schema, "t", XMinState(health.anchor + 1000))
    ahead = dpone_state.xmin_health(server.engine, checkpoints)[0]
    assert ahead.verdict == "full refresh due" and ahead.xids_behind < 0

    checkpoints.save_state(schema, "t", pipeline.saved[-1])
    pipeline.run()
    assert pipeline.kinds[-1] is WindowKind.WRAPAROUND and pipeline.saved[-1].wraparound_detected
    pipeline.check(server.engine)
    assert dpone_state.xmin_health(server.engine, checkpoints)[0].verdict == "ok"
