"""SQL Server, offline: what the storages ask of the driver per call.

No SQL Server runs here; the behaviour suite counts the requests a real server receives when
``DPONE_STATE_TEST_MSSQL_URL`` is set (``tests/test_round_trips.py``). Here the production
engine (``create_state_engine``'s options and hooks, the ``mssql+pyodbc`` dialect, the pool)
runs on a recording stand-in for pyodbc (``tests/mssql_offline.py``): each call is one
``execute`` of its golden statement, declared as the golden file says, with no ``commit()`` or
``rollback()``; a connection is switched to autocommit once, not per call, and back for any
other user of the pool.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dpone_state import XMinState
from dpone_state.mssql import declared_type_name
from tests.backends import BACKENDS
from tests.conftest import StateDB
from tests.mssql_offline import RecordingPyodbc, recording_engine
from tests.test_statements import CALLS

GOLDEN = Path(__file__).parent / "golden" / "mssql"
_DECLARED = re.compile(r"^--\s+\d+\. \w+: (.+?) = ")


def _golden(name: str) -> tuple[str, list[str]]:
    """A golden file's statement and the declared type of each of its parameters."""
    lines = (GOLDEN / f"{name}.sql").read_text(encoding="utf-8").splitlines()
    sql = "\n".join(line for line in lines if not line.startswith("--"))
    types = [match[1] for line in lines if (match := _DECLARED.match(line))]
    return sql.strip(), types


def _normalized(sql: str) -> str:
    """As the golden files keep it: no trailing blanks on a line."""
    return "\n".join(line.rstrip() for line in sql.strip().splitlines())


@pytest.fixture
def store() -> Iterator[tuple[RecordingPyodbc, StateDB]]:
    """The SQL Server store behind an engine of one pooled (recording) connection."""
    driver = RecordingPyodbc()
    engine = recording_engine(driver, pool_size=1, max_overflow=0)
    try:
        yield driver, StateDB(BACKENDS["mssql"], engine, str(engine.url), "etl_state")
    finally:
        engine.dispose()


def _sent(driver: RecordingPyodbc, since: int) -> list[tuple[Any, ...]]:
    """The driver calls since ``since`` (without the connection number)."""
    return [call[1:] for call in driver.calls[since:]]


def _statements(sent: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Declarations and statements with their parameter counts (values hold clock times)."""
    return [
        (what, detail[0] if what == "setinputsizes" else (detail[0], len(detail[1])))
        for what, *detail in sent
        if what in ("setinputsizes", "execute")
    ]


@pytest.mark.parametrize("call", list(CALLS))
def test_each_call_is_one_execute_of_its_golden_statement(
    store: tuple[RecordingPyodbc, StateDB], call: str
) -> None:
    driver, db = store
    db.xmin().save_state("s", "t", XMinState(1))  # connects: session settings, autocommit on
    since = len(driver.calls)
    CALLS[call](db)
    sent = _sent(driver, since)
    assert [what for what, *_ in sent] == ["setinputsizes", "execute"], sent
    sql, types = _golden(call)
    assert _normalized(sent[1][1]) == sql
    assert [declared_type_name(size) for size in sent[0][1]] == types
    assert len(sent[1][2]) == len(types)


def test_autocommit_is_switched_once_per_connection_and_nothing_is_committed(
    store: tuple[RecordingPyodbc, StateDB],
) -> None:
    driver, db = store
    for _ in range(3):
        for call in CALLS.values():
            call(db)
    assert len(driver.connections) == 1
    sent = _sent(driver, 0)
    setup = sent.index(("autocommit", True))
    # Connecting: the dialect's first-connect rollback, then the session settings (one batch).
    assert [what for what, *_ in sent[:setup]] == ["connect", "rollback", "execute"]
    calls = sent[setup + 1 :]
    assert {what for what, *_ in calls} == {"setinputsizes", "execute"}, calls
    assert [what for what, *_ in calls].count("execute") == 3 * len(CALLS)


def test_another_user_of_the_pool_gets_a_transaction(
    store: tuple[RecordingPyodbc, StateDB],
) -> None:
    """A connection a storage left in autocommit is transactional again for anyone else, and
    back in autocommit (one switch) for the next storage call."""
    driver, db = store
    xmin = db.xmin()
    xmin.load_state("s", "t")
    since = len(driver.calls)
    with db.engine.connect() as conn:
        assert conn.connection.dbapi_connection.autocommit is False  # type: ignore[union-attr]
        conn.exec_driver_sql("SELECT 1")
    with db.engine.begin() as conn:
        conn.exec_driver_sql("SELECT 2")
    xmin.load_state("s", "t")
    sent = [call[:2] if call[0] != "setinputsizes" else call[:1] for call in _sent(driver, since)]
    assert sent == [
        ("autocommit", False),
        ("execute", "SELECT 1"),
        ("rollback",),  # the pool's reset on return: a transaction to end
        ("execute", "SELECT 2"),
        ("commit",),
        ("rollback",),  # Core's reset after a committed transaction, as with any pool
        ("autocommit", True),
        ("setinputsizes",),
        ("execute", sent[-1][1]),
    ], sent
    assert _normalized(sent[-1][1]) == _golden("load_state")[0]


@pytest.mark.parametrize("call", list(CALLS))
def test_core_declares_and_sends_what_the_direct_path_does(
    store: tuple[RecordingPyodbc, StateDB], call: str
) -> None:
    """With a listener on the engine the storages run through plain Core, whose
    ``do_setinputsizes`` hook must declare exactly what the direct path's plan does."""
    driver, db = store
    db.xmin().save_state("s", "t", XMinState(1))
    since = len(driver.calls)
    CALLS[call](db)
    direct = _statements(_sent(driver, since))

    def watch(*args: Any) -> None: ...

    sa.event.listen(db.engine, "before_cursor_execute", watch)
    assert not db.xmin()._runner.usable()
    since = len(driver.calls)
    CALLS[call](db)
    assert _statements(_sent(driver, since)) == direct
    sa.event.remove(db.engine, "before_cursor_execute", watch)
    assert db.xmin()._runner.usable()


def test_an_autocommit_engine_is_never_switched_out_of_autocommit() -> None:
    """``isolation_level="AUTOCOMMIT"``: every user of the engine keeps autocommit."""
    driver = RecordingPyodbc()
    engine = recording_engine(driver, pool_size=1, max_overflow=0, isolation_level="AUTOCOMMIT")
    try:
        db = StateDB(BACKENDS["mssql"], engine, str(engine.url), "etl_state")
        db.xmin().save_state("s", "t", XMinState(1))
        with engine.connect() as conn:
            assert conn.connection.dbapi_connection.autocommit is True  # type: ignore[union-attr]
            conn.exec_driver_sql("DELETE FROM t")
        db.xmin().load_state("s", "t")
    finally:
        engine.dispose()
    assert ("autocommit", False) not in _sent(driver, 0)
    assert ("commit",) not in _sent(driver, 0)


def test_a_declaration_listener_of_the_callers_own_takes_the_storages_to_core(
    store: tuple[RecordingPyodbc, StateDB],
) -> None:
    """Only the backend's own declarations are replayed by the direct path; anyone else's
    ``do_setinputsizes`` listener may depend on the values, so Core runs the calls."""
    _, db = store

    def declare(inputsizes: Any, cursor: Any, statement: Any, parameters: Any, ctx: Any) -> None:
        pass

    assert db.xmin()._runner.usable()
    sa.event.listen(db.engine, "do_setinputsizes", declare)
    assert not db.xmin()._runner.usable()
    sa.event.remove(db.engine, "do_setinputsizes", declare)
    assert db.xmin()._runner.usable()
