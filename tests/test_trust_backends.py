"""Trust on the real servers: every failure a caller meets is a typed ``StateError`` (faults
injected into SQLite, PostgreSQL and MariaDB), "retryable" means nothing was applied, a lost
reply is recognised, revisions are never reused, and provisioning never races."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dpone_state import (
    RevisionConflictError,
    RunState,
    RunStateStatus,
    RunStateStorage,
    StateAuthenticationError,
    StateConfigError,
    StateDatabaseError,
    StateError,
    StateLockTimeoutError,
    StateNotProvisionedError,
    StateOutcomeUnknownError,
    StateRowCountUnknownError,
    StateUnavailableError,
    XMinExtractor,
    XMinState,
    XMinStateStorage,
    create_state_engine,
    migrate,
)
from dpone_state.dialects import RetryPolicy
from tests.conftest import StateDB
from tests.test_cli import run_cli

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)


def _run(dag: str = "dag", when: datetime = T0) -> RunState:
    return RunState(
        dag_id=dag,
        source_schema="s",
        source_table="t",
        target_schema="s",
        target_table="t",
        load_strategy="full",
        execution_date=when,
        state=RunStateStatus.RUNNING,
        started_at=when,
    )


def _only(backend: StateDB, *names: str) -> None:
    if backend.backend.name not in names:
        pytest.skip(f"a fault of {' / '.join(names)}")


def _storages(db: StateDB, engine: Engine) -> tuple[XMinStateStorage, RunStateStorage]:
    return (
        XMinStateStorage(engine, schema=db.schema),
        RunStateStorage(engine, schema=db.schema),
    )


def _seed(db: StateDB) -> None:
    db.xmin().save_state("s", "t", XMinState(1))
    db.runs().save_run_state(_run())


def _public_calls(
    xmin: XMinStateStorage, runs: RunStateStorage
) -> list[tuple[str, bool, Callable[[], object]]]:
    """(name, writes, call) for every public method of both storages."""
    return [
        ("save_state", True, lambda: xmin.save_state("s", "t", XMinState(5))),
        ("save_state cas 0", True, lambda: xmin.save_state("s", "n", XMinState(5), expected_revision=0)),
        ("save_state cas 1", True, lambda: xmin.save_state("s", "t", XMinState(6), expected_revision=1)),
        ("save_states", True, lambda: xmin.save_states({("s", "a"): XMinState(1), ("s", "b"): XMinState(2)})),
        ("load_state", False, lambda: xmin.load_state("s", "t")),
        ("delete_state", True, lambda: xmin.delete_state("s", "t")),
        ("save_run_state", True, lambda: runs.save_run_state(_run("other"))),
        ("update_run_state", True, lambda: runs.update_run_state(_run())),
        ("get_run_state", False, lambda: runs.get_run_state("dag", T0)),
        ("get_run_states_by_dag", False, lambda: runs.get_run_states_by_dag("dag")),
        ("delete_old_states", True, lambda: runs.delete_old_states(0)),
        ("delete_old_states batched", True, lambda: runs.delete_old_states(0, batch_size=1)),
        ("create_tables", True, xmin.create_tables),
    ]  # fmt: skip


def _outcomes(calls: list[tuple[str, bool, Callable[[], object]]]) -> dict[str, type | None]:
    """What each call raised (``None``: it succeeded); anything but a StateError escapes."""
    seen: dict[str, type | None] = {}
    for name, _, call in calls:
        try:
            call()
            seen[name] = None
        except StateError as error:
            seen[name] = type(error)
    return seen


# --- 5. faults of each backend: only StateErrors come out ------------------------------------


def _sqlite_path(db: StateDB) -> str:
    database = sa.engine.make_url(db.url).database
    assert database
    return database


def test_sqlite_locked_past_the_busy_timeout_is_a_typed_lock_timeout(db: StateDB) -> None:
    _only(db, "sqlite")
    _seed(db)
    engine = create_state_engine(db.url)

    @sa.event.listens_for(engine, "connect")
    def _short_busy_timeout(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout = 100")

    holder = sqlite3.connect(_sqlite_path(db), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        seen = _outcomes(_public_calls(*_storages(db, engine)))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        engine.dispose()
    writes = {name for name, writes, _ in _public_calls(*_storages(db, db.engine)) if writes}
    assert {seen[name] for name in writes} == {StateLockTimeoutError}, seen
    assert issubclass(StateLockTimeoutError, StateUnavailableError)  # nothing applied: retryable


def test_sqlite_read_only_file_and_full_disk_are_typed(db: StateDB) -> None:
    _only(db, "sqlite")
    _seed(db)
    read_only = create_state_engine(f"sqlite:///file:{_sqlite_path(db)}?mode=ro&uri=true")
    try:
        seen = _outcomes(_public_calls(*_storages(db, read_only)))
    finally:
        read_only.dispose()
    assert seen["load_state"] is None and seen["get_run_states_by_dag"] is None
    assert seen["save_state"] is StateDatabaseError, seen
    assert seen["save_run_state"] is StateDatabaseError, seen

    full = create_state_engine(db.url)

    @sa.event.listens_for(full, "connect")
    def _no_room(dbapi_connection: Any, record: Any) -> None:
        pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    xmin, runs = _storages(db, full)
    try:
        _outcomes(_public_calls(xmin, runs))  # whatever fits may pass; nothing raw escapes
        with pytest.raises(StateDatabaseError, match="full"):  # free pages fill up first
            for batch in range(200):
                xmin.save_states({("s", f"t{batch}_{i}"): XMinState(i) for i in range(2000)})
    finally:
        full.dispose()


@contextmanager
def _pg_tables_locked(db: StateDB) -> Iterator[int]:
    """Another session holds ACCESS EXCLUSIVE locks on both tables; yields its pid."""
    with db.engine.connect() as holder:
        holder.execute(
            sa.text(
                f"LOCK TABLE {db.schema}.etl_xmin_state, {db.schema}.etl_run_state "
                "IN ACCESS EXCLUSIVE MODE"
            )
        )
        pid = int(holder.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
        try:
            yield pid
        finally:
            holder.rollback()


@pytest.mark.parametrize("setting", ["lock_timeout", "statement_timeout"])
def test_postgresql_lock_and_statement_timeouts_are_typed(db: StateDB, setting: str) -> None:
    _only(db, "postgresql")
    _seed(db)
    engine = create_state_engine(db.url, connect_args={"options": f"-c {setting}=300"})
    try:
        with _pg_tables_locked(db):
            seen = _outcomes(_public_calls(*_storages(db, engine)))
    finally:
        engine.dispose()
    seen.pop("create_tables")  # reads only the catalogs: not blocked
    assert set(seen.values()) == {StateLockTimeoutError}, seen


def _canceller(db: StateDB, sql: str, stop: threading.Event) -> threading.Thread:
    """Cancels the statements ``sql`` finds waiting for the test's lock (pg_cancel_backend /
    KILL QUERY): ``sql`` finds the test's own only, as the suite runs in several workers and
    other runs may share the server."""

    def loop() -> None:
        with db.engine.connect() as conn:
            while not stop.is_set():
                for (victim,) in conn.execute(sa.text(sql)).all():
                    kill = "SELECT pg_cancel_backend(:v)" if "pg_" in sql else "KILL QUERY :v"
                    with contextlib.suppress(sa.exc.DBAPIError):  # it finished meanwhile
                        conn.execute(sa.text(kill), {"v": victim})
                conn.commit()
                time.sleep(0.05)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def test_postgresql_pg_cancel_backend_is_typed(db: StateDB) -> None:
    _only(db, "postgresql")
    _seed(db)
    stop = threading.Event()
    with _pg_tables_locked(db) as holder:
        waiting = (
            # the sessions this test's holder blocks: never another run's
            f"SELECT pid FROM pg_stat_activity WHERE {holder} = ANY(pg_blocking_pids(pid))"
        )
        thread = _canceller(db, waiting, stop)
        try:
            seen = _outcomes(_public_calls(*_storages(db, db.engine)))
        finally:
            stop.set()
            thread.join(10)
    seen.pop("create_tables")
    assert set(seen.values()) == {StateLockTimeoutError}, seen


def test_mariadb_kill_query_is_typed(db: StateDB) -> None:
    _only(db, "mariadb")
    _seed(db)
    stop = threading.Event()
    with db.engine.connect() as holder:
        holder.execute(
            sa.text(
                f"LOCK TABLES {db.schema}.etl_xmin_state WRITE, {db.schema}.etl_run_state WRITE"
            )
        )
        me = int(holder.execute(sa.text("SELECT CONNECTION_ID()")).scalar_one())
        waiting = (
            "SELECT id FROM information_schema.processlist WHERE state LIKE '%%lock%%' "
            f"AND id <> {me} AND command = 'Query' AND info NOT LIKE '%%processlist%%' "
            f"AND info LIKE '%%{db.schema}%%'"  # this test's: not another run's
        )
        thread = _canceller(db, waiting, stop)
        try:
            seen = _outcomes(_public_calls(*_storages(db, db.engine)))
        finally:
            stop.set()
            thread.join(10)
            holder.execute(sa.text("UNLOCK TABLES"))
    seen.pop("create_tables")
    assert set(seen.values()) == {StateLockTimeoutError}, seen


# --- 11. a MariaDB lock wait is bounded and typed, not retried as a deadlock -------------------


def test_mariadb_lock_wait_is_bounded_and_typed(db: StateDB) -> None:
    _only(db, "mariadb")
    _seed(db)
    xmin = db.xmin()
    with db.engine.connect() as holder:
        holder.execute(sa.select(xmin.table).with_for_update())
        started = time.monotonic()
        with pytest.raises(StateLockTimeoutError, match="nothing was applied"):
            xmin.save_state("s", "t", XMinState(9))
        waited = time.monotonic() - started
        holder.rollback()
    assert 5 < waited < 20, waited  # one wait of LOCK_WAIT_SECONDS (10 s), never five
    loaded = xmin.load_state("s", "t")
    assert loaded is not None and loaded.xmin_value == 1


# --- 6. authentication and a missing database are configuration errors ------------------------


def _variant(url: str, **parts: Any) -> str:
    return sa.engine.make_url(url).set(**parts).render_as_string(hide_password=False)


def test_refused_credentials_and_a_missing_database_are_configuration_errors(db: StateDB) -> None:
    _only(db, "postgresql", "mariadb")
    urls = [
        _variant(db.url, username="no_such_role_h15"),
        _variant(db.url, database="no_such_database_h15"),
    ]
    if db.backend.name == "mariadb":
        urls.append(_variant(db.url, password="wrong-password"))
    else:
        urls += [u.replace("+psycopg2://", "+psycopg://") for u in urls]
    for url in urls:
        storage = XMinStateStorage(url, schema=db.schema)
        try:
            with pytest.raises(StateAuthenticationError) as raised:
                storage.load_state("s", "t")
        finally:
            storage.engine.dispose()
        assert isinstance(raised.value, StateConfigError)
        assert not isinstance(raised.value, StateUnavailableError)  # not retryable
        assert "wrong-password" not in str(raised.value)
        # The migrations say the same, and the command exits 2 (configuration), not 1.
        with pytest.raises(StateAuthenticationError):
            migrate.current(url, schema=db.schema)
    for command in (["xmin", "list"], ["upgrade"]):
        done = run_cli(*command, "--url", urls[0])
        assert done.code == 2, (command, done)
        assert "refused the connection" in done.err


# --- 8. outcome unknown vs nothing applied; a lost reply is recognised -------------------------


def _lose_replies(engine: Engine, state: dict[str, int]) -> None:
    """Fault injection on the real server: the next write runs (and commits), then the
    connection is terminated and the driver reports it lost, as when a reply never arrives;
    ``refuse`` later connection attempts fail as if the server were unreachable."""
    import psycopg2  # noqa: PLC0415

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _lost(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if state["lose"] and statement.lstrip().upper().startswith(("INSERT", "UPDATE")):
            state["lose"] -= 1
            pid = conn.connection.dbapi_connection.get_backend_pid()
            with psycopg2.connect(engine.url.render_as_string(hide_password=False).replace(
                "postgresql+psycopg2", "postgresql"
            )) as side:  # fmt: skip
                side.cursor().execute("SELECT pg_terminate_backend(%s)", (pid,))
            state["refuse"] = state.get("refuse_after", 0)
            raise psycopg2.OperationalError("server closed the connection unexpectedly")

    @sa.event.listens_for(engine, "do_connect")
    def _refuse(*args: Any) -> None:
        if state.get("refuse"):
            state["refuse"] -= 1
            raise psycopg2.OperationalError("could not connect to server: injected")


@pytest.mark.parametrize("expected_revision", [None, 0, 1])
def test_a_save_whose_reply_was_lost_recognises_its_own_write(
    db: StateDB, expected_revision: int | None
) -> None:
    _only(db, "postgresql")
    xmin = db.xmin()
    if expected_revision == 1:
        xmin.save_state("s", "t", XMinState(1))
    engine = create_state_engine(db.url)
    state = {"lose": 1}
    _lose_replies(engine, state)
    try:
        XMinStateStorage(engine, schema=db.schema).save_state(
            "s", "t", XMinState(7), expected_revision=expected_revision
        )
    finally:
        engine.dispose()
    assert state["lose"] == 0, "the reply was lost"
    loaded = xmin.load_state("s", "t")
    assert loaded is not None
    assert (loaded.xmin_value, loaded.revision) == (7, (expected_revision or 0) + 1)


def test_an_outcome_the_storage_cannot_learn_is_unknown_and_commit_recognises_it(
    db: StateDB,
) -> None:
    _only(db, "postgresql")
    with db.engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {db.schema}.orders_h15 (id int PRIMARY KEY)"))
        conn.execute(sa.text(f"INSERT INTO {db.schema}.orders_h15 VALUES (1), (2)"))
    engine = create_state_engine(db.url)
    state = {"lose": 1, "refuse_after": 2}  # the reply is lost and the check cannot connect
    _lose_replies(engine, state)
    checkpoints = XMinStateStorage(engine, schema=db.schema)
    try:
        with XMinExtractor(db.engine, checkpoints).extract(db.schema, "orders_h15") as extraction:
            assert len(list(extraction)) == 2
            with pytest.raises(StateOutcomeUnknownError) as raised:
                extraction.commit()
            assert not isinstance(raised.value, StateUnavailableError)  # not "retryable"
            saved = extraction.commit()  # retried: finds its own write, not a conflict
    finally:
        engine.dispose()
    assert saved.revision == 1
    stored = db.xmin().load_state(db.schema, "orders_h15")
    assert stored is not None and stored.revision == 1
    assert stored.xmin_value == saved.xmin_value


def test_a_connection_lost_before_commit_applied_nothing_and_says_so(db: StateDB) -> None:
    """MariaDB runs a write in a transaction: a connection lost before its COMMIT was sent
    rolls it back, so that error is the retryable one."""
    _only(db, "mariadb")
    import pymysql  # noqa: PLC0415

    engine = create_state_engine(db.url)

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _killed(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            victim = conn.connection.dbapi_connection.thread_id()
            with db.engine.connect() as side:
                side.execute(sa.text("KILL CONNECTION :v"), {"v": victim})
            raise pymysql.err.OperationalError(2013, "Lost connection to server during query")

    try:
        with pytest.raises(StateUnavailableError, match="nothing was applied"):
            XMinStateStorage(engine, schema=db.schema).save_state("s", "k", XMinState(3))
    finally:
        engine.dispose()
    assert db.xmin().load_state("s", "k") is None


# --- 9. revisions are never reused ---------------------------------------------------------------


def test_revisions_stay_monotonic_across_delete_state(xmin: XMinStateStorage) -> None:
    xmin.save_state("s", "t", XMinState(1))
    xmin.save_state("s", "t", XMinState(2))  # revision 2
    stale = 2  # a writer that loaded revision 2 and is slow
    assert xmin.delete_state("s", "t") is True
    assert xmin.load_state("s", "t") is None
    assert xmin.delete_state("s", "t") is False  # nothing left to delete
    xmin.save_state("s", "t", XMinState(10), expected_revision=0)  # a new checkpoint
    fresh = xmin.load_state("s", "t")
    assert fresh is not None and fresh.revision == 4 and fresh.xmin_value == 10
    xmin.save_state("s", "t", XMinState(11))  # revision 5
    xmin.delete_state("s", "t")
    xmin.save_state("s", "t", XMinState(12))  # revision 7
    with pytest.raises(RevisionConflictError):
        xmin.save_state("s", "t", XMinState(99), expected_revision=stale)
    final = xmin.load_state("s", "t")
    assert final is not None and (final.xmin_value, final.revision) == (12, 7)
    # A revision once returned is never seen again for the key (ABA).
    assert final.revision > fresh.revision > stale


# --- 10. a row count the driver cannot report ---------------------------------------------------


class _NoRowCountCursor(sqlite3.Cursor):
    @property
    def rowcount(self) -> int:  # type: ignore[override]
        return -1


class _NoRowCountConnection(sqlite3.Connection):
    def cursor(self, factory: Any = None) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(_NoRowCountCursor)


def test_a_row_count_the_driver_cannot_report_is_not_a_conflict(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    engine = sa.create_engine(
        "sqlite://",
        creator=lambda: sqlite3.connect(path, factory=_NoRowCountConnection),
    )
    xmin = XMinStateStorage(engine)
    runs = RunStateStorage(engine)
    xmin.create_tables()
    runs.create_tables()
    xmin.save_state("s", "t", XMinState(1))  # a plain upsert needs no count
    with pytest.raises(StateRowCountUnknownError):
        xmin.save_state("s", "t", XMinState(2), expected_revision=1)
    with pytest.raises(StateRowCountUnknownError):
        xmin.delete_state("s", "t")
    with pytest.raises(StateRowCountUnknownError):
        runs.delete_old_states(0)
    assert not issubclass(StateRowCountUnknownError, RevisionConflictError)


# --- 12. bulk writes in key order never deadlock each other -------------------------------------


def test_bulk_writers_with_overlapping_keys_in_any_order_never_deadlock(db: StateDB) -> None:
    _only(db, "postgresql", "mariadb")
    keys = [("s", f"t{i:03d}") for i in range(120)]
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        xmin = db.xmin()
        # One attempt: no retry may hide a deadlock.
        xmin.backend_row = replace(xmin.backend_row, retry=RetryPolicy(write_attempts=1))
        start.wait()
        for call in range(5):
            shuffled = rng.sample(keys, len(keys))
            try:
                xmin.save_states({key: XMinState(seed * 10 + call) for key in shuffled})
            except BaseException as error:  # collected: the test reports them all
                errors.append(error)

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, f"{len(errors)} of 40 bulk calls failed: {errors[0]!r}"
    loaded = db.xmin().load_state("s", "t000")
    assert loaded is not None and loaded.revision == 40


# --- 15. create_tables() from several processes at once ----------------------------------------


def test_create_tables_concurrently_never_fails(db: StateDB, tmp_path: Path) -> None:
    _only(db, "sqlite", "postgresql", "mariadb", "bigquery")
    for round_ in range(2 if db.backend.name == "bigquery" else 4):
        if db.backend.name == "sqlite":
            engine, schema = create_state_engine(f"sqlite:///{tmp_path / f'r{round_}.db'}"), None
        else:
            engine, schema = db.engine, f"dpone_race_{uuid.uuid4().hex[:8]}"
        errors: list[BaseException] = []
        start = threading.Barrier(6)

        def provision(
            engine: Engine = engine,
            schema: str | None = schema,
            start: threading.Barrier = start,
            errors: list[BaseException] = errors,
        ) -> None:
            xmin = XMinStateStorage(engine, schema=schema)
            runs = RunStateStorage(engine, schema=schema)
            start.wait()
            try:
                xmin.create_tables()
                runs.create_tables()
            except BaseException as error:  # collected: the test reports them all
                errors.append(error)

        threads = [threading.Thread(target=provision) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        try:
            assert not errors, f"round {round_}: {errors[0]!r}"
            XMinStateStorage(engine, schema=schema).save_state("s", "t", XMinState(1))
        finally:
            db.backend.drop_schema(engine, schema)
            if engine is not db.engine:
                engine.dispose()


# --- 14. concurrent upgrades on SQLite take turns ---------------------------------------------


def _upgrade(urls: list[str], start: Any, errors: Any) -> None:
    for url in urls:
        start.wait()  # every process starts each round's upgrade at once
        try:
            migrate.upgrade(url)
        except BaseException as error:  # reported to the parent
            errors.put(f"{type(error).__name__}: {error}")


def test_concurrent_sqlite_upgrades_take_turns_and_end_at_head(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    urls = [f"sqlite:///{tmp_path / f'up{round_}.db'}" for round_ in range(15)]
    start, errors = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_upgrade, args=(urls, start, errors)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(180)
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert not failures, f"{len(failures)} of {4 * len(urls)} upgrades failed: {failures[:3]}"
    for url in urls:
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT * FROM dpone_state_alembic_version")).all()
        engine.dispose()
        assert len(versions) == 1, versions
        assert migrate.current(url) == versions[0][0]


# --- 16. tables downgraded under a running runtime -------------------------------------------------


def test_calls_on_tables_downgraded_mid_run_say_not_provisioned(db: StateDB) -> None:
    _only(db, "sqlite", "postgresql", "mariadb")
    names = {"xmin_table": "x_h15", "run_table": "r_h15", "version_table": "v_h15"}
    schema = db.schema if db.schema is not None else None
    migrate.upgrade(db.engine, schema=schema, **names)
    xmin = XMinStateStorage(db.engine, schema=schema, table="x_h15")
    runs = RunStateStorage(db.engine, schema=schema, table="r_h15")
    xmin.save_state("s", "t", XMinState(1))
    runs.save_run_state(_run())
    try:
        migrate.downgrade(db.engine, "0001", schema=schema, **names)
        calls = [call for call in _public_calls(xmin, runs) if call[0] != "create_tables"]
        seen = _outcomes(calls)
        failing = {name for name, error in seen.items() if error is not None}
        assert {seen[name] for name in failing} == {StateNotProvisionedError}, seen
        assert {"save_state", "load_state", "save_run_state", "get_run_state"} <= failing
    finally:
        migrate.downgrade(db.engine, "base", schema=schema, drop_data=True, **names)


def test_old_runs_are_pruned_with_timezone_aware_cutoffs(runs: RunStateStorage) -> None:
    """A guard for the fault helpers above: the prune they call deletes what it should."""
    runs.save_run_state(_run("old", T0 - timedelta(days=400)))
    assert runs.delete_old_states(30) == 1
