"""A call against unprovisioned tables names the exact command that provisions them, and
following that advice literally provisions the database that failed (not a file elsewhere)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from dpone_state import (
    RunStateStorage,
    StateConfigError,
    StateNotProvisionedError,
    XMinState,
    XMinStateStorage,
    migrate,
)
from tests.conftest import StateDB

CLI = Path(sys.executable).with_name("dpone-state")  # what a shell of this venv finds


def _run_advice(command: str, cwd: Path) -> None:
    """Run the advised ``dpone-state upgrade …`` line as a user would paste it."""
    argv = shlex.split(command)
    assert argv[:2] == ["dpone-state", "upgrade"], command
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPONE_STATE_")}
    done = subprocess.run(
        [str(CLI), *argv[1:]],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_following_the_advice_provisions_the_database_that_failed(
    db: StateDB, tmp_path: Path
) -> None:
    xmin = db.xmin(table="advice_xmin")
    with pytest.raises(StateNotProvisionedError) as missing:
        xmin.load_state("public", "orders")
    error = missing.value
    assert error.database is not None
    assert str(xmin.engine.url.host or "") in error.database
    assert error.command is not None
    if db.engine.dialect.name == "bigquery":  # no migrations there: the other advice
        assert "or call create_tables() once" in str(error)
        xmin.create_tables()
    else:
        assert f"`{error.command}`" in str(error)
        if db.schema is not None:
            assert f"--schema {db.schema}" in error.command
        assert "--xmin-table advice_xmin" in error.command
        assert "migrate.upgrade(url" in str(error)
        # From another directory, with DPONE_STATE_* unset: the advice alone is enough.
        _run_advice(error.command, tmp_path)
        assert list(tmp_path.iterdir()) == []  # no SQLite file made where it ran
    xmin.save_state("public", "orders", XMinState(5))
    saved = xmin.load_state("public", "orders")
    assert saved is not None
    assert saved.xmin_value == 5
    assert db.runs().get_run_state("d", datetime(2024, 1, 1, tzinfo=timezone.utc)) is None


def test_advice_masks_the_password_and_the_python_form_works(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    storage = XMinStateStorage(url, schema=None, table="py_advice")
    with pytest.raises(StateNotProvisionedError, match=r"migrate\.upgrade\(url, xmin_table="):
        storage.load_state("s", "t")
    migrate.upgrade(url, schema=None, xmin_table="py_advice")
    assert storage.load_state("s", "t") is None

    url = "postgresql+psycopg2://etl:s3cret@127.0.0.1:1/meta"
    error = XMinStateStorage(url)._not_provisioned()
    assert "s3cret" not in str(error)
    assert error.command == (
        "dpone-state upgrade --url 'postgresql+psycopg2://etl:***@127.0.0.1:1/meta'"
        " --schema etl_state"
    )
    error = RunStateStorage(url, schema=None, table="my runs")._not_provisioned()
    assert error.command is not None
    assert error.command.endswith("--no-schema --run-table 'my runs'")
    assert "migrate.upgrade(url, schema=None, run_table='my runs')" in str(error)


def test_sqlite_with_a_schema_says_what_a_schema_means_there(tmp_path: Path) -> None:
    """The quickstart's ``schema="etl_state"`` kept on SQLite: not a loop back to `upgrade`."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    migrate.upgrade(url)  # the file itself is provisioned ...
    storage = RunStateStorage(url, schema="etl_state")  # ... but the storage names a schema
    with pytest.raises(StateNotProvisionedError) as missing:
        storage.get_run_states_by_dag("d")
    message = str(missing.value)
    assert "on SQLite a schema names an attached database" in message
    assert "schema=None" in message
    assert missing.value.command is None
    # Provisioning with that schema says the same (a configuration error: nothing to create).
    with pytest.raises(StateConfigError, match="on SQLite a schema names an attached database"):
        storage.create_tables()
    with pytest.raises(StateConfigError, match="attached database"):
        migrate.upgrade(url, schema="etl_state")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPONE_STATE_")}
    done = subprocess.run(
        [str(CLI), "upgrade", "--url", url, "--schema", "etl_state"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "on SQLite a schema names an attached database" in done.stderr

    # Attached, the schema works like any other: the advice is then the ordinary one.
    engine = sa.create_engine(url)

    @sa.event.listens_for(engine, "connect")
    def _attach(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.execute(f"ATTACH DATABASE '{tmp_path / 'etl.db'}' AS etl_state")

    attached = RunStateStorage(engine, schema="etl_state")
    with pytest.raises(StateNotProvisionedError) as not_yet:
        attached.get_run_states_by_dag("d")
    assert not_yet.value.command is not None
    attached.create_tables()
    assert attached.get_run_states_by_dag("d") == []
