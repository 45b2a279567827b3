"""One statement per call at the server, counted by the server itself, and the direct path.

``test_statements`` counts what SQLAlchemy sends (its listener makes the storages use plain
Core); here the server's own counters count what arrives on the path the storages take without
listeners: MariaDB's per-session ``Questions`` status, SQLite's statement trace, and on SQL
Server (with ``DPONE_STATE_TEST_MSSQL_URL``) an Extended Events session that counts every
request the storage's session sends: RPCs, SQL batches, transaction-manager requests (the
ODBC drivers' COMMIT and ROLLBACK) and attentions. The direct path
(``dpone_state.execution``) must send exactly the statements Core sends, and leave pooled
connections as a transaction-using caller of the same engine expects them.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dpone_state import (
    StateOutcomeUnknownError,
    StateUnavailableError,
    XMinState,
    XMinStateStorage,
    create_state_engine,
)
from tests.backends import recorded
from tests.conftest import StateDB
from tests.test_statements import CALLS

#: Backends whose server counts the statements a connection sends.
COUNTED = ("mariadb", "sqlite", "mssql")

#: SQL Server's Extended Events for every request a client sends: parameterized statements
#: (RPC), batches, attentions (cancels), and the transaction-manager requests (the ``TM:``
#: events; Microsoft's ODBC driver commits and rolls back with them, FreeTDS with batches).
_REQUEST_EVENTS = ("rpc_starting", "sql_batch_starting", "attention")
_TM_EVENTS = ("begin_tran_starting", "commit_tran_starting", "rollback_tran_starting")


class _SqlServerRequests:
    """Requests one SQL Server session received: an Extended Events session filtered on it,
    into the synchronous ``event_counter`` target, read from another connection (so reading
    adds nothing to the count)."""

    def __init__(self, url: str, session_id: int) -> None:
        self.admin = create_state_engine(url, poolclass=sa.pool.NullPool)
        self.name = f"dpone_state_requests_{uuid.uuid4().hex[:10]}"
        with self._autocommit() as conn:
            found = set(
                conn.exec_driver_sql(
                    "SELECT o.name FROM sys.dm_xe_objects AS o JOIN sys.dm_xe_packages AS p "
                    "ON p.guid = o.package_guid WHERE p.name = 'sqlserver' AND o.object_type "
                    "= 'event' AND (o.name LIKE '%tran[_]starting' OR o.name IN "
                    f"({', '.join(repr(name) for name in _REQUEST_EVENTS)}))"
                ).scalars()
            )
            missing = set(_REQUEST_EVENTS + _TM_EVENTS) - found
            assert not missing, f"this server has no {sorted(missing)} event ({sorted(found)})"
            events = ",\n".join(
                f"ADD EVENT sqlserver.{name} (WHERE sqlserver.session_id = {int(session_id)})"
                for name in sorted(found)
            )
            conn.exec_driver_sql(
                f"CREATE EVENT SESSION {self.name} ON SERVER\n{events}\n"
                "ADD TARGET package0.event_counter"
            )
            conn.exec_driver_sql(f"ALTER EVENT SESSION {self.name} ON SERVER STATE = START")

    def _autocommit(self) -> Any:
        return self.admin.connect().execution_options(isolation_level="AUTOCOMMIT")

    def read(self) -> int:
        with self._autocommit() as conn:
            data = conn.exec_driver_sql(
                "SELECT CAST(t.target_data AS NVARCHAR(MAX)) FROM sys.dm_xe_session_targets AS t "
                "JOIN sys.dm_xe_sessions AS s ON s.address = t.event_session_address "
                f"WHERE s.name = '{self.name}' AND t.target_name = 'event_counter'"
            ).scalar_one()
        return sum(int(event.get("count", 0)) for event in ET.fromstring(data).iter("Event"))

    def close(self) -> None:
        try:
            with self._autocommit() as conn:
                conn.exec_driver_sql(f"DROP EVENT SESSION {self.name} ON SERVER")
        finally:
            self.admin.dispose()


class _ServerCount:
    """Statements the server received on the engine's one pooled connection."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url
        self.dialect = engine.dialect.name
        self.traced: list[str] = []
        self.connection: Any = None
        self.requests: _SqlServerRequests | None = None

        @sa.event.listens_for(engine.pool, "connect")
        def _remember(dbapi_connection: Any, record: Any) -> None:
            self.connection = dbapi_connection
            if self.dialect == "sqlite":
                dbapi_connection.set_trace_callback(self.traced.append)

    def session_id(self) -> int:
        """The server's id of the pooled connection (what ``KILL`` takes)."""
        if self.dialect == "mssql":
            cursor = self.connection.cursor()  # before any count: not counted
            cursor.execute("SELECT @@SPID")
            spid = int(cursor.fetchone()[0])
            cursor.close()
            return spid
        return int(self.connection.thread_id())

    def read(self) -> int:
        """The server's count so far (reading MariaDB's counter is itself one statement)."""
        if self.dialect == "sqlite":
            return len(self.traced)
        if self.dialect == "mssql":
            if self.requests is None:
                self.requests = _SqlServerRequests(str(self.url), self.session_id())
            return self.requests.read()
        cursor = self.connection.cursor()  # directly on the idle pooled connection
        cursor.execute("SHOW SESSION STATUS LIKE 'Questions'")
        count = int(cursor.fetchone()[1])
        cursor.close()
        return count

    def during(self, call: Callable[[], object]) -> int:
        before = self.read()
        call()
        overhead = 1 if self.dialect in ("mysql", "mariadb") else 0  # the second SHOW STATUS
        return self.read() - before - overhead

    def close(self) -> None:
        if self.requests is not None:
            self.requests.close()


@pytest.fixture
def one_connection(db: StateDB) -> Iterator[tuple[StateDB, _ServerCount]]:
    """The backend's store behind a fresh default engine with a single pooled connection."""
    if db.backend.name not in COUNTED:
        pytest.skip(f"{db.backend.name}: no per-connection statement counter to read here")
    engine = create_state_engine(db.url, pool_size=1, max_overflow=0)
    counter = _ServerCount(engine, db.url)
    try:
        yield StateDB(db.backend, engine, db.url, db.schema), counter
    finally:
        counter.close()
        engine.dispose()


@pytest.mark.parametrize("call", list(CALLS))
def test_the_server_receives_one_statement_per_call(
    one_connection: tuple[StateDB, _ServerCount], call: str
) -> None:
    db, counter = one_connection
    db.xmin().save_state("s", "t", XMinState(1))  # revision 1 for the CAS update
    db.xmin().load_state("s", "t")  # warm: the connection is in the mode the storages keep
    assert counter.during(lambda: CALLS[call](db)) == 1


def test_a_transaction_on_the_same_engine_is_still_a_transaction(
    one_connection: tuple[StateDB, _ServerCount],
) -> None:
    """A connection a storage left in autocommit is transactional again for anyone else."""
    db, _ = one_connection
    xmin = db.xmin()
    xmin.save_state("s", "kept", XMinState(1))
    with db.engine.connect() as conn:
        conn.execute(sa.delete(xmin.table))
        conn.rollback()
    assert xmin.load_state("s", "kept") is not None
    with pytest.raises(RuntimeError), db.engine.begin() as conn:
        conn.execute(sa.delete(xmin.table))
        raise RuntimeError("abort")
    assert xmin.load_state("s", "kept") is not None
    xmin.save_state("s", "kept", XMinState(2))  # and the storage's next call still works
    loaded = xmin.load_state("s", "kept")
    assert loaded is not None and loaded.xmin_value == 2


def test_a_replaced_connection_commits_its_writes(
    one_connection: tuple[StateDB, _ServerCount],
) -> None:
    """A connection the server dropped is replaced by a new one, in its default mode: the
    storage must switch that one to autocommit too, or its writes would never commit."""
    db, counter = one_connection
    if db.backend.name not in ("mariadb", "mssql"):
        pytest.skip("the server-side switch is MariaDB's and SQL Server's")
    xmin = db.xmin()
    xmin.save_state("s", "t", XMinState(1))
    killer = create_state_engine(db.url)
    try:
        with killer.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"KILL {counter.session_id()}")
        # On the dropped connection: a typed failure. The statement was sent in autocommit when
        # the connection died, so whether it applied is unknown unless the row says so.
        with pytest.raises((StateUnavailableError, StateOutcomeUnknownError)):
            xmin.save_state("s", "t", XMinState(2))
        xmin.save_state("s", "t", XMinState(3))  # on its replacement
        with killer.connect() as conn:  # another session sees it: it was committed
            value = conn.execute(
                sa.select(xmin.table.c.xmin_value).where(xmin.table.c.source_table == "t")
            ).scalar_one()
        assert value == 3
    finally:
        killer.dispose()


def test_an_autocommit_engine_stays_in_autocommit(db: StateDB) -> None:
    """``isolation_level="AUTOCOMMIT"`` means every user of the engine gets autocommit: a
    statement without a commit is committed (storages keeping their connections in autocommit
    must not switch the engine's back into transactions)."""
    if db.engine.dialect.name == "bigquery":
        pytest.skip(f"{db.backend.name}: BigQuery has no isolation levels")
    engine = create_state_engine(db.url, isolation_level="AUTOCOMMIT")
    try:
        xmin = XMinStateStorage(engine, schema=db.schema)
        xmin.save_state("s", "kept", XMinState(1))
        with engine.connect() as conn:
            conn.execute(sa.delete(xmin.table))  # never committed by this code
        assert db.xmin().load_state("s", "kept") is None  # another engine: it was committed
        xmin.save_state("s", "kept", XMinState(2))
        assert db.xmin().load_state("s", "kept") is not None
    finally:
        engine.dispose()


@pytest.mark.parametrize("call", list(CALLS))
def test_the_direct_path_sends_the_statement_core_sends(db: StateDB, call: str) -> None:
    """Same Core statements on both paths: the listener forces Core, whose SQL must be what
    the direct path compiled for the same call."""
    engine = create_state_engine(db.url) if db.backend.name != "bigquery" else db.engine
    fresh = StateDB(db.backend, engine, db.url, db.schema)
    direct = {}
    xmin, runs = fresh.xmin(), fresh.runs()
    storages = {"xmin": xmin, "runs": runs}
    fresh.xmin = lambda table="etl_xmin_state": xmin  # type: ignore[method-assign]
    fresh.runs = lambda table="etl_run_state": runs  # type: ignore[method-assign]
    if not xmin._runner.usable():
        pytest.skip(f"{db.backend.name}: its driver always runs through Core")

    def reset() -> None:
        with engine.begin() as conn:
            for storage in storages.values():
                conn.execute(sa.delete(storage.table).where(sa.true()))
        xmin.save_state("s", "t", XMinState(1))  # revision 1 for the CAS update

    reset()
    CALLS[call](fresh)
    for storage in storages.values():
        direct.update(
            {plan.sql: plan for plan in storage._runner._plans.values() if plan is not None}
        )
    reset()
    with recorded(engine) as statements:
        assert not xmin._runner.usable()  # a listener: plain Core
        CALLS[call](fresh)
    assert statements and all(sql in direct for sql in statements), (statements, list(direct))
    assert xmin._runner.usable()  # the listener is gone: direct again
    if engine is not db.engine:
        engine.dispose()


def test_echo_uses_plain_core(db: StateDB) -> None:
    if db.backend.name == "bigquery":
        pytest.skip(f"{db.backend.name}: its driver always runs through Core")
    engine = create_state_engine(db.url, echo=True)
    try:
        xmin = XMinStateStorage(engine, schema=db.schema)
        assert not xmin._runner.usable()
        xmin.save_state("s", "echo", XMinState(1))
        assert xmin.load_state("s", "echo") is not None
    finally:
        engine.dispose()
