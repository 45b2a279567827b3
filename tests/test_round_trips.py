"""One statement per call at the server, counted by the server itself, and the direct path.

``test_statements`` counts what SQLAlchemy sends (its listener makes the storages use plain
Core); here the server's own counters count what arrives on the path the storages take without
listeners: MariaDB's per-session ``Questions`` status, SQLite's statement trace. The direct path
(``dpone_state.execution``) must send exactly the statements Core sends, and leave pooled
connections as a transaction-using caller of the same engine expects them.
"""

from __future__ import annotations

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
COUNTED = ("mariadb", "sqlite")


class _ServerCount:
    """Statements the server received on the engine's one pooled connection."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.traced: list[str] = []
        self.connection: Any = None

        @sa.event.listens_for(engine.pool, "connect")
        def _remember(dbapi_connection: Any, record: Any) -> None:
            self.connection = dbapi_connection
            if self.dialect == "sqlite":
                dbapi_connection.set_trace_callback(self.traced.append)

    def read(self) -> int:
        """The server's count so far (reading MariaDB's counter is itself one statement)."""
        if self.dialect == "sqlite":
            return len(self.traced)
        cursor = self.connection.cursor()  # directly on the idle pooled connection
        cursor.execute("SHOW SESSION STATUS LIKE 'Questions'")
        count = int(cursor.fetchone()[1])
        cursor.close()
        return count

    def during(self, call: Callable[[], object]) -> int:
        before = self.read()
        call()
        overhead = 1 if self.dialect != "sqlite" else 0  # the second SHOW STATUS
        return self.read() - before - overhead


@pytest.fixture
def one_connection(db: StateDB) -> Iterator[tuple[StateDB, _ServerCount]]:
    """The backend's store behind a fresh default engine with a single pooled connection."""
    if db.backend.name not in COUNTED:
        pytest.skip(f"{db.backend.name}: no per-connection statement counter to read here")
    engine = create_state_engine(db.url, pool_size=1, max_overflow=0)
    counter = _ServerCount(engine)
    try:
        yield StateDB(db.backend, engine, db.url, db.schema), counter
    finally:
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
    if db.backend.name != "mariadb":
        pytest.skip("the server-side switch is MariaDB's")
    xmin = db.xmin()
    xmin.save_state("s", "t", XMinState(1))
    killer = create_state_engine(db.url)
    try:
        with killer.connect() as conn:
            conn.exec_driver_sql(f"KILL {counter.connection.thread_id()}")
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
    if db.backend.name in ("bigquery", "mssql"):
        pytest.skip(f"{db.backend.name}: its driver always runs through Core")
    engine = create_state_engine(db.url, echo=True)
    try:
        xmin = XMinStateStorage(engine, schema=db.schema)
        assert not xmin._runner.usable()
        xmin.save_state("s", "echo", XMinState(1))
        assert xmin.load_state("s", "echo") is not None
    finally:
        engine.dispose()
