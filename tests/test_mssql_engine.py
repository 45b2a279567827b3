"""SQL Server engines without a server: options, the real pyodbc + ODBC driver connect path.

The connect test loads pyodbc, unixODBC and the FreeTDS driver for real and dials a closed
port; `.ci/run` installs them (``scripts/services/odbc.sh``), so under ``CI=true`` a missing
driver fails the test, while on a laptop it skips and says what to install.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dpone_state import (
    BackendMismatchError,
    StateUnavailableError,
    XMinState,
    create_state_engine,
)
from dpone_state.backends import keeps_autocommit
from dpone_state.engine import pings_when_idle
from dpone_state.failures import (
    is_connection_failure,
    is_lock_timeout,
    is_missing_column,
    is_missing_table,
)
from dpone_state.mssql import (
    FREETDS_TDS_VERSION,
    LOCK_TIMEOUT_MS,
    LOGIN_TIMEOUT_SECONDS,
    SESSION_SETTINGS,
    MssqlRunStateStorage,
    MssqlXMinStateStorage,
    declared_type_name,
    engine_options,
)
from tests.backends import IN_CI
from tests.mssql_offline import CapturingRuns, capture

PASSWORD = "Sup3r-s3cret-pw"
ODBC_HINT = (
    "install unixODBC and the FreeTDS ODBC driver (Debian/Ubuntu: apt-get install unixodbc "
    "tdsodbc, or `bash scripts/services/odbc.sh install`)"
)


def _pyodbc_with_freetds() -> Any:
    """pyodbc with the FreeTDS driver registered; skip (fail in CI) saying what to install."""
    problem = None
    try:
        import pyodbc  # noqa: PLC0415  (loads libodbc.so.2: only where the test needs it)
    except ImportError as error:
        problem = f"pyodbc cannot load ({error})"
    else:
        if "FreeTDS" not in pyodbc.drivers():
            problem = f"no FreeTDS ODBC driver registered (drivers: {pyodbc.drivers()})"
    if problem is not None:
        message = f"{problem}; {ODBC_HINT}"
        if IN_CI:
            pytest.fail(f"required in CI: {message}", pytrace=False)
        pytest.skip(message)
    return pyodbc


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_engine_options() -> None:
    plain = engine_options(
        make_url("mssql+pyodbc://u:p@h:1433/db?driver=ODBC+Driver+18+for+SQL+Server")
    )
    assert plain == {  # no fast_executemany; the pool's reset is keep_autocommit's
        "connect_args": {"timeout": LOGIN_TIMEOUT_SECONDS},
        "pool_reset_on_return": None,
    }
    freetds = engine_options(make_url("mssql+pyodbc://u:p@h:1433/db?driver=FreeTDS"))
    assert freetds["connect_args"] == {
        "timeout": LOGIN_TIMEOUT_SECONDS,
        "TDS_Version": FREETDS_TDS_VERSION,
    }
    own = engine_options(
        make_url("mssql+pyodbc://u:p@h/db?driver=FreeTDS&TDS_Version=8.0&timeout=3")
    )
    assert "connect_args" not in own


def test_engine_uses_the_options() -> None:
    _pyodbc_with_freetds()
    engine = create_state_engine(f"mssql+pyodbc://sa:{PASSWORD}@127.0.0.1:1433/db?driver=FreeTDS")
    assert engine.dialect.name == "mssql"
    assert engine.dialect.fast_executemany is False  # type: ignore[attr-defined]
    assert pings_when_idle(engine)
    assert keeps_autocommit(engine)  # storages' connections stay in autocommit
    assert MssqlXMinStateStorage(engine)._runner.usable()  # the direct path, one statement
    assert PASSWORD not in repr(MssqlXMinStateStorage(engine))


def test_unreachable_sql_server_is_a_typed_error_naming_host_and_port() -> None:
    _pyodbc_with_freetds()
    port = _closed_port()
    url = f"mssql+pyodbc://sa:{PASSWORD}@127.0.0.1:{port}/master?driver=FreeTDS&TDS_Version=7.4"
    for call in (
        lambda: MssqlXMinStateStorage(url).load_state("public", "orders"),
        lambda: MssqlXMinStateStorage(url).save_state("public", "orders", XMinState(1)),
        lambda: MssqlRunStateStorage(url).delete_old_states(30),
    ):
        started = time.monotonic()
        with pytest.raises(StateUnavailableError) as info:
            call()
        assert time.monotonic() - started < LOGIN_TIMEOUT_SECONDS
        message = str(info.value)
        assert f"127.0.0.1:{port}" in message
        assert "Unable to connect" in message  # the driver's own words, readable
        assert PASSWORD not in message and PASSWORD not in repr(info.value)
        assert isinstance(info.value.__cause__, sa.exc.DBAPIError)
        assert is_connection_failure(info.value.__cause__)


def test_backend_classes_refuse_other_dialects(tmp_path: Path) -> None:
    engine = create_state_engine(f"sqlite:///{tmp_path / 's.db'}")
    for cls in (MssqlXMinStateStorage, MssqlRunStateStorage):
        with pytest.raises(BackendMismatchError, match="mssql"):
            cls(engine)


def test_missing_table_is_read_from_the_odbc_error() -> None:
    pyodbc = _pyodbc_with_freetds()
    # The error pyodbc raises for SQL Server error 208, as both drivers word it.
    for driver in (
        "[FreeTDS][SQL Server]",
        "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]",
    ):
        orig = pyodbc.ProgrammingError(
            "42S02", f"[42S02] {driver}Invalid object name 'etl_state.x'. (208) (SQLExecDirectW)"
        )
        assert is_missing_table(sa.exc.ProgrammingError("SELECT", {}, orig), "mssql")
    other = pyodbc.ProgrammingError("42000", "[42000] [FreeTDS][SQL Server]Incorrect syntax (102)")
    assert not is_missing_table(sa.exc.ProgrammingError("SELECT", {}, other), "mssql")


def test_merge_is_registered_without_importing_the_mssql_module() -> None:
    # An Engine made with sqlalchemy.create_engine (no SQL Server hooks loaded) still gets it.
    code = (
        "import sys\n"
        "from sqlalchemy.dialects import mssql\n"
        "from dpone_state.tables import build_tables\n"
        "from dpone_state.upsert import INCOMING, Upsert\n"
        "t = build_tables(dialect_name='mssql').xmin\n"
        "row = {'source_schema': 'a', 'source_table': 'b', 'xmin_value': 1}\n"
        "u = Upsert(t, [row], key=['source_schema', 'source_table'], "
        "update={'xmin_value': INCOMING})\n"
        "from dpone_state.dialects import _load_hooks\n"
        "print(_load_hooks.cache_info().currsize > 0, str(u.compile(dialect=mssql.dialect())))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("False MERGE INTO etl_state.etl_xmin_state WITH (HOLDLOCK)")


def test_session_settings_abort_on_error_and_bound_lock_waits() -> None:
    assert "SET NOCOUNT OFF" in SESSION_SETTINGS
    assert "SET XACT_ABORT ON" in SESSION_SETTINGS
    assert f"SET LOCK_TIMEOUT {LOCK_TIMEOUT_MS}" in SESSION_SETTINGS
    assert 0 < LOCK_TIMEOUT_MS <= 60_000


def test_the_engine_declares_every_parameter_once_per_statement() -> None:
    """The engine's do_setinputsizes hook, on SQLAlchemy's own input-size lookup for the run
    upsert: strings NVARCHAR(4000) whatever their length, NULLs typed, integers BIGINT."""
    _pyodbc_with_freetds()
    engine = create_state_engine("mssql+pyodbc://sa:pw@127.0.0.1:1433/db?driver=FreeTDS")
    engine.dialect.dbapi = engine.dialect.import_dbapi()  # as the first connect does
    runs = CapturingRuns(engine)
    captured = capture(lambda: runs.get_run_states_by_dag("d", limit=5))
    compiled = captured.statement.compile(dialect=engine.dialect)
    declared = []
    for statement in (
        compiled,
        capture(lambda: _save(runs)).statement.compile(dialect=engine.dialect),
    ):
        sizes = dict(statement._get_set_input_sizes_lookup())
        context = type("Context", (), {"dialect": engine.dialect})()
        engine.dialect.dispatch.do_setinputsizes(sizes, None, "", {}, context)
        declared.append({bind.key: sizes[bind] for bind in sizes})
    upsert = declared[1]
    assert all(isinstance(size, tuple) for size in upsert.values()), upsert
    names = {key: declared_type_name(size) for key, size in upsert.items()}
    assert names["p_dag_id"] == names["p_process_name"] == "NVARCHAR(4000)"
    assert names["p_error_message"] == "NVARCHAR(max)"
    assert names["p_rows_read"] == "BIGINT"  # NULL in this call, declared all the same
    assert names["p_ended_at"] == "DATETIME2(7)"
    assert names["p_duration_min"] == "FLOAT"


def _save(runs: MssqlRunStateStorage) -> None:
    from datetime import datetime, timezone  # noqa: PLC0415

    from dpone_state import RunState  # noqa: PLC0415

    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    runs.save_run_state(RunState("d", "s", "t", "ts", "tt", "full", t0, "running", t0))


def test_lock_timeout_and_unmigrated_table_are_read_from_the_odbc_error() -> None:
    pyodbc = _pyodbc_with_freetds()
    for driver in (
        "[FreeTDS][SQL Server]",
        "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]",
    ):
        timeout = pyodbc.OperationalError(
            "HYT00",
            f"[HYT00] {driver}Lock request time out period exceeded. (1222) (SQLExecDirectW)",
        )
        assert is_lock_timeout(sa.exc.OperationalError("MERGE", {}, timeout), "mssql")
        column = pyodbc.ProgrammingError(
            "42S22", f"[42S22] {driver}Invalid column name 'revision'. (207) (SQLExecDirectW)"
        )
        assert is_missing_column(sa.exc.ProgrammingError("SELECT", {}, column), "mssql")
    other = pyodbc.ProgrammingError(
        "42S22", "[42S22] [FreeTDS][SQL Server]Invalid column name 'colour'. (207) (SQLExecDirectW)"
    )
    assert not is_lock_timeout(sa.exc.ProgrammingError("SELECT", {}, other), "mssql")


def test_the_applock_status_is_the_batchs_first_result() -> None:
    from dpone_state.locks import MSSQL_APPLOCK  # noqa: PLC0415

    batch = MSSQL_APPLOCK.text
    assert batch.startswith("SET NOCOUNT ON;")
    assert batch.index("SELECT @status") < batch.index("SET NOCOUNT OFF")
