"""The connection a thread keeps between storage calls (``dpone_state.keeper``), on every backend.

A kept connection skips the pool's checkout; it must never cost what the pool guarantees: other
users find a connection, ``engine.dispose()`` closes everything, a failure or a restart seen on
any thread retires it, and a forked child never touches its parent's.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dpone_state import XMinState, XMinStateStorage, create_state_engine
from dpone_state.engine import ping_when_idle, pings_when_idle
from tests.conftest import StateDB


class _Watched:
    """An engine on the backend's URL, with the DBAPI connections its pool opened and closed."""

    def __init__(self, db: StateDB, **options: Any) -> None:
        self.engine = create_state_engine(db.url, **options)
        self.opened: list[Any] = []
        self.closed: list[Any] = []
        self.checkouts = 0
        pool_events: dict[str, Callable[..., None]] = {
            "connect": lambda dbapi_connection, record: self.opened.append(dbapi_connection),
            "close": lambda dbapi_connection, record: self.closed.append(dbapi_connection),
            "checkout": lambda dbapi_connection, record, proxy: self._count(),
        }
        for name, listener in pool_events.items():
            sa.event.listen(self.engine.pool, name, listener)
        self.xmin = XMinStateStorage(self.engine, schema=db.schema)

    def _count(self) -> None:
        self.checkouts += 1


def _direct(db: StateDB) -> StateDB:
    """Skip where the storages' calls go through Core (nothing is kept there)."""
    xmin = db.xmin()
    if not xmin._runner.usable():
        pytest.skip(f"{db.backend.name}: its storages run statements through Core")
    return db


@pytest.fixture
def watched(db: StateDB) -> Iterator[Callable[..., _Watched]]:
    made: list[_Watched] = []

    def make(**options: Any) -> _Watched:
        made.append(_Watched(db, **options))
        return made[-1]

    yield make
    for each in made:
        each.engine.dispose()


def _session_id(engine: Engine, dbapi_connection: Any) -> int:
    if engine.dialect.name == "postgresql":
        info = getattr(dbapi_connection, "info", None)  # psycopg 3
        if info is not None and hasattr(info, "backend_pid"):
            return int(info.backend_pid)
        return int(dbapi_connection.get_backend_pid())  # psycopg2
    return int(dbapi_connection.thread_id())  # PyMySQL


def _drop_sessions(db: StateDB, engine: Engine, connections: list[Any]) -> None:
    """End the server sessions of ``connections`` from another connection (a restart, seen
    from those connections)."""
    if db.engine.dialect.name not in ("postgresql", "mysql", "mariadb"):
        pytest.skip(f"{db.backend.name}: no server session to drop from outside")
    ids = [_session_id(engine, c) for c in connections]
    killer = create_state_engine(db.url)
    try:
        with killer.connect() as conn:
            for session in ids:
                if engine.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_terminate_backend({session})")
                else:
                    conn.exec_driver_sql(f"KILL {session}")
    finally:
        killer.dispose()
    time.sleep(0.2)  # the server has closed them


def test_a_thread_reuses_its_connection_without_the_pool(
    db: StateDB, watched: Callable[..., _Watched]
) -> None:
    _direct(db)
    w = watched()
    w.xmin.save_state("s", "t", XMinState(1))
    before = w.checkouts
    for value in range(2, 12):
        w.xmin.save_state("s", "t", XMinState(value))
        loaded = w.xmin.load_state("s", "t")
        assert loaded is not None and loaded.xmin_value == value
    assert w.checkouts == before, "each call checked a connection out of the pool"
    assert len(w.opened) == 1


def test_dispose_closes_every_connection_including_the_kept_ones(
    db: StateDB, watched: Callable[..., _Watched]
) -> None:
    w = watched()
    done = threading.Barrier(3)

    def calls() -> None:
        w.xmin.save_state("s", threading.current_thread().name, XMinState(1))
        done.wait(30)  # alive (and keeping its connection) while the engine is disposed
        done.wait(30)

    threads = [threading.Thread(target=calls, name=f"t{i}") for i in range(2)]
    for thread in threads:
        thread.start()
    done.wait(30)
    w.engine.dispose()
    closed = list(w.closed)
    done.wait(30)
    for thread in threads:
        thread.join(30)
    assert w.opened and {id(c) for c in w.opened} <= {id(c) for c in closed}
    assert w.xmin.load_state("s", "t0") is not None  # the engine works on afterwards


def test_a_pool_of_one_keeps_nothing(db: StateDB, watched: Callable[..., _Watched]) -> None:
    w = watched(pool_size=1, max_overflow=0, pool_timeout=1)
    w.xmin.save_state("s", "t", XMinState(1))
    w.xmin.load_state("s", "t")
    assert w.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    with w.engine.connect() as conn:  # at once, not after the pool's timeout
        conn.execute(sa.text("SELECT 1"))


def test_other_users_always_find_a_connection(
    db: StateDB, watched: Callable[..., _Watched]
) -> None:
    """Threads keep at most ``pool_size - 1`` connections: the pool always has one left."""
    w = watched(pool_size=3, max_overflow=0, pool_timeout=2)
    ready, finish = threading.Barrier(6), threading.Event()

    def calls(name: str) -> None:
        for value in range(1, 4):
            w.xmin.save_state("s", name, XMinState(value))
        ready.wait(30)
        finish.wait(30)

    threads = [threading.Thread(target=calls, args=(f"t{i}",)) for i in range(5)]
    for thread in threads:
        thread.start()
    try:
        ready.wait(30)
        assert w.engine.pool.checkedout() <= 2  # type: ignore[attr-defined]
        with w.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    finally:
        finish.set()
        for thread in threads:
            thread.join(30)


def test_a_failure_seen_on_one_thread_retires_the_connections_others_keep(
    db: StateDB, watched: Callable[..., _Watched]
) -> None:
    """After a restart, the first call to notice it invalidates the pool; a connection another
    thread kept from before is not used again (its save would fail, outcome unknown)."""
    _direct(db)
    w = watched()
    kept = threading.Event()
    go, result = threading.Event(), []

    def other() -> None:
        w.xmin.save_state("s", "other", XMinState(1))
        kept.set()
        go.wait(30)
        try:
            w.xmin.save_state("s", "other", XMinState(2))
            result.append("ok")
        except Exception as error:  # reported below
            result.append(repr(error))

    thread = threading.Thread(target=other)
    thread.start()
    kept.wait(30)
    w.xmin.save_state("s", "main", XMinState(1))
    _drop_sessions(db, w.engine, list(w.opened))
    assert w.xmin.load_state("s", "main") is not None  # fails, invalidates, retried: found
    go.set()
    thread.join(30)
    assert result == ["ok"]


def test_a_kept_connection_idle_past_the_threshold_is_pinged_first(
    db: StateDB, watched: Callable[..., _Watched]
) -> None:
    _direct(db)
    w = watched()
    ping_when_idle(w.engine, idle_seconds=0.05)
    w.xmin.save_state("s", "t", XMinState(1))
    _drop_sessions(db, w.engine, list(w.opened))  # sleeps past the threshold
    w.xmin.save_state("s", "t", XMinState(2))  # pinged, replaced: no failed call
    loaded = w.xmin.load_state("s", "t")
    assert loaded is not None and loaded.xmin_value == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork only")
def test_a_forked_child_never_uses_or_closes_its_parents_connection(
    db: StateDB, watched: Callable[..., _Watched]
) -> None:
    _direct(db)
    w = watched()
    w.xmin.save_state("s", "parent", XMinState(1))
    opened = len(w.opened)
    pid = os.fork()
    if pid == 0:  # the child: SQLAlchemy's advice for a fork, then its own calls
        code = 1
        try:
            w.engine.dispose(close=False)
            w.xmin.save_state("s", "child", XMinState(7))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    w.xmin.save_state("s", "parent", XMinState(2))  # on the parent's own, untouched connection
    assert len(w.opened) == opened
    child = w.xmin.load_state("s", "child")
    assert child is not None and child.xmin_value == 7


def test_after_dispose_the_engine_keeps_its_hooks_and_its_direct_path(
    db: StateDB, watched: Callable[..., _Watched]
) -> None:
    """``engine.dispose()`` replaces the pool (its listeners move along): the engine still pings
    idle connections and its storages still take the direct path."""
    _direct(db)
    w = watched()
    pinging = pings_when_idle(w.engine)
    w.xmin.save_state("s", "t", XMinState(1))
    w.engine.dispose()
    assert pings_when_idle(w.engine) == pinging
    assert w.xmin._runner.usable()
    w.xmin.save_state("s", "t", XMinState(2))
    checkouts = w.checkouts
    w.xmin.save_state("s", "t", XMinState(3))
    assert w.checkouts == checkouts  # kept again, from the new pool
