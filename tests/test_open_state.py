"""``open_state`` against real parts: the OpenBao (Vault) dev server, PostgreSQL, MariaDB, SQLite.

Vault: ``DPONE_STATE_TEST_VAULT_ADDR`` / ``DPONE_STATE_TEST_VAULT_TOKEN`` (``make test`` starts
the dev server with ``scripts/services/openbao.sh``). Under ``CI=true`` an unreachable Vault or
database fails the run; elsewhere the test is skipped with how to enable it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from dpone_state import (
    InvalidIdentifierError,
    MissingEnvironmentVariableError,
    RunState,
    RunStateStatus,
    SecretKeyMissingError,
    SecretNotFoundError,
    StateError,
    StateStores,
    StateUnavailableError,
    UnknownStateTypeError,
    VaultAccessDeniedError,
    VaultUnavailableError,
    XMinState,
    open_state,
)
from dpone_state.engine import pings_when_idle
from tests.backends import BACKENDS, IN_CI
from tests.conftest import _engine_or_skip

PASSWORD = "p@ss:w/rd?#%&;{}'\" =+"
VAULT_PORT = os.environ.get("DPONE_STATE_TEST_VAULT_PORT", "8210")
VAULT_ADDR = os.environ.get("DPONE_STATE_TEST_VAULT_ADDR") or f"http://127.0.0.1:{VAULT_PORT}"
VAULT_TOKEN = os.environ.get("DPONE_STATE_TEST_VAULT_TOKEN", "dpone-test-root")
HOW_TO_ENABLE_VAULT = (
    "start it with `scripts/services/openbao.sh start` (make test does) or set "
    "DPONE_STATE_TEST_VAULT_ADDR and DPONE_STATE_TEST_VAULT_TOKEN"
)


def secret_free(text: str) -> bool:
    """No password (plain or URL-encoded) and no Vault token in ``text``."""
    return all(s not in text for s in (PASSWORD, quote(PASSWORD, safe=""), "p@ss", VAULT_TOKEN))


@dataclass
class Vault:
    client: Any
    environ: dict[str, str]

    def write(self, secret: dict[str, Any]) -> str:
        """Store ``secret`` at a fresh path under ``secret/``; returns the path (= connection id)."""
        path = f"dpone_test_{uuid.uuid4().hex[:10]}"
        self.client.secrets.kv.v2.create_or_update_secret(
            path=path, secret=secret, mount_point="secret"
        )
        return path


@pytest.fixture(scope="session")
def vault() -> Iterator[Vault]:
    import hvac  # noqa: PLC0415

    client = hvac.Client(url=VAULT_ADDR, token=VAULT_TOKEN, timeout=5)
    try:
        client.secrets.kv.v2.read_configuration(mount_point="secret")
    except Exception as error:
        message = (
            f"Vault at {VAULT_ADDR} not usable ({type(error).__name__}); {HOW_TO_ENABLE_VAULT}"
        )
        if IN_CI:
            pytest.fail(f"required in CI: {message}", pytrace=False)
        pytest.skip(message)
    yield Vault(client, {"VAULT_ADDR": VAULT_ADDR, "VAULT_TOKEN": VAULT_TOKEN})
    client.adapter.close()


@dataclass
class Server:
    """A reachable database server of the suite and a schema of this test's own."""

    url: URL
    schema: str | None
    engine: Engine


def _server(name: str, tmp_path: Path) -> Iterator[Server]:
    backend = BACKENDS[name]
    engine, url = _engine_or_skip(backend, tmp_path)
    schema = backend.new_schema_name()
    try:
        yield Server(make_url(url), schema, engine)
    finally:
        backend.drop_schema(engine, schema)
        engine.dispose()


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[Server]:
    yield from _server("postgresql", tmp_path)


@pytest.fixture
def mariadb(tmp_path: Path) -> Iterator[Server]:
    yield from _server("mariadb", tmp_path)


def server_secret(url: URL, password: str | None = PASSWORD) -> dict[str, Any]:
    """The connection secret of a test server, in dpone's key names."""
    return {
        "host": url.host,
        "port": url.port,
        "database": url.database,
        "username": url.username,
        "password": password,
    }


def exercise(stores: StateStores) -> None:
    """Provision, then a save/load round trip on both storages."""
    stores.create_tables()
    stores.xmin.save_state("public", "orders", XMinState(xmin_value=8_589_934_700))
    loaded = stores.xmin.load_state("public", "orders")
    assert loaded is not None and loaded.xmin_value == 8_589_934_700
    when = datetime(2024, 5, 1, 3, 0, tzinfo=timezone.utc)
    run = RunState(
        dag_id="orders_daily",
        source_schema="public",
        source_table="orders",
        target_schema="dwh",
        target_table="orders",
        load_strategy="xmin",
        execution_date=when,
        state=RunStateStatus.SUCCESS,
        started_at=when,
    )
    stores.runs.save_run_state(run)
    got = stores.runs.get_run_state("orders_daily", when)
    assert got is not None and got.state is RunStateStatus.SUCCESS


def manifest(block: str, schema: str | None) -> str:
    table = f"table: {{schema: {schema}, name: etl_xmin_state}}" if schema else ""
    return "state:\n" + "".join(f"  {line}\n" for line in [*block.strip().splitlines(), table])


# --- Vault ----------------------------------------------------------------------------------


def test_vault_connection_opens_postgres_state(
    vault: Vault, postgres: Server, caplog: pytest.LogCaptureFixture
) -> None:
    connection_id = vault.write(server_secret(postgres.url))
    text = manifest(
        f"type: postgres\nconnection_id: {connection_id}\nconnection_type: vault", postgres.schema
    )
    with caplog.at_level(logging.DEBUG), open_state(text, environ=vault.environ) as stores:
        exercise(stores)
        assert stores.engine.dialect.name == "postgresql"
        assert stores.engine.url.password == PASSWORD  # the password survived intact
        assert stores.xmin.qualified_name == f"{postgres.schema}.etl_xmin_state"
        assert stores.runs.qualified_name == f"{postgres.schema}.etl_run_state"
        assert pings_when_idle(stores.engine)  # the backend's options
        shown = [repr(stores), str(stores.engine.url), repr(stores.engine.url), repr(stores.xmin)]
    assert any(f"Vault secret secret/{connection_id}" in r.getMessage() for r in caplog.records)
    assert all(secret_free(text) for text in shown)
    assert all(secret_free(r.getMessage()) for r in caplog.records)


def test_vault_mount_point_and_path_and_key_aliases(vault: Vault, postgres: Server) -> None:
    path = vault.write(
        {
            "db_host": postgres.url.host,
            "db_port": str(postgres.url.port),
            "dbname": postgres.url.database,
            "login": postgres.url.username,
        }
    )
    block = {
        "type": "postgres",
        "connection_id": "postgres_meta",
        "vault": {"mount_point": "secret", "path": path},
        "table": {"schema": postgres.schema},
    }
    with open_state(block, environ=vault.environ) as stores:
        assert stores.settings.connection_type == "vault"  # the default
        exercise(stores)


def test_vault_errors_are_typed_and_secret_free(vault: Vault) -> None:
    good = vault.write({"host": "127.0.0.1", "password": PASSWORD})  # no database key
    cases: list[tuple[str, dict[str, str], type[StateError], str]] = [
        (good, vault.environ, SecretKeyMissingError, "database"),
        ("dpone_test_missing", vault.environ, SecretNotFoundError, "secret/dpone_test_missing"),
        (
            good,
            {**vault.environ, "VAULT_TOKEN": "wrong-" + PASSWORD},
            VaultAccessDeniedError,
            "VAULT_TOKEN",
        ),
        (good, {"VAULT_TOKEN": VAULT_TOKEN}, MissingEnvironmentVariableError, "VAULT_ADDR"),
        (good, {"VAULT_ADDR": VAULT_ADDR}, MissingEnvironmentVariableError, "VAULT_TOKEN"),
    ]
    for connection_id, environ, error, text in cases:
        with pytest.raises(error) as caught:
            open_state({"type": "postgres", "connection_id": connection_id}, environ=environ)
        assert text in str(caught.value), (error, str(caught.value))
        assert secret_free(str(caught.value)) and secret_free(repr(caught.value))


def test_unreachable_vault_is_a_retryable_typed_error() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environ = {"VAULT_ADDR": f"http://127.0.0.1:{port}", "VAULT_TOKEN": "s." + PASSWORD}
    with pytest.raises(VaultUnavailableError) as caught:
        open_state({"type": "postgres", "connection_id": "postgres_meta"}, environ=environ)
    assert isinstance(caught.value, StateUnavailableError)
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "s." + PASSWORD not in str(caught.value) and secret_free(str(caught.value))


# --- env and url connections ------------------------------------------------------------------


def test_env_connection_as_json_opens_postgres(postgres: Server) -> None:
    environ = {"DPONE_CONN_PG_META": json.dumps(server_secret(postgres.url))}
    text = manifest("type: postgres\nconnection_id: pg-meta\nconnection_type: env", postgres.schema)
    with open_state(text, environ=environ) as stores:
        exercise(stores)


def test_env_connection_as_url_opens_mariadb_with_a_special_password(mariadb: Server) -> None:
    user = f"dpone_t_{uuid.uuid4().hex[:8]}"
    with mariadb.engine.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{mariadb.schema}`"))
        conn.execute(sa.text(f"CREATE USER '{user}'@'%' IDENTIFIED BY :pw"), {"pw": PASSWORD})
        conn.execute(sa.text(f"GRANT ALL ON `{mariadb.schema}`.* TO '{user}'@'%'"))
    try:
        url = mariadb.url.set(username=user, password=PASSWORD, database=mariadb.schema)
        environ = {"DPONE_CONN_MYSQL_META": url.render_as_string(hide_password=False)}
        text = manifest(
            "type: mysql\nconnection_id: mysql_meta\nconnection_type: env", mariadb.schema
        )
        with open_state(text, environ=environ) as stores:
            exercise(stores)  # the server checked the password: it arrived intact
            assert stores.engine.dialect.name in ("mysql", "mariadb")
            assert secret_free(repr(stores))
        environ = {"DPONE_CONN_MYSQL_META": json.dumps({**server_secret(url), "username": user})}
        with open_state(text, environ=environ) as stores:
            assert stores.xmin.load_state("public", "orders") is not None
    finally:
        with mariadb.engine.begin() as conn:
            conn.execute(sa.text(f"DROP USER IF EXISTS '{user}'@'%'"))


def test_url_connection_opens_postgres_and_mariadb(postgres: Server, mariadb: Server) -> None:
    for server, kind in ((postgres, "postgres"), (mariadb, "mysql")):
        block = {
            "type": kind,
            "url": server.url.render_as_string(hide_password=False),
            "table": {"schema": server.schema, "name": "xmin_checkpoints"},
            "run_table": {"name": "runs"},
        }
        with open_state(block) as stores:
            exercise(stores)
            assert stores.settings.connection_type == "url"
            assert stores.runs.qualified_name == f"{server.schema}.runs"


def test_sqlite_by_url_env_and_embedded_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "nested" / "state.db"
    with open_state(f"state: {{type: sqlite, url: 'sqlite:///{path}'}}") as stores:
        exercise(stores)
        with stores.engine.connect() as conn:  # the backend's options: WAL, busy timeout
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    environ = {"DPONE_CONN_LOCAL": json.dumps({"path": str(path)})}
    with open_state(
        {"type": "sqlite", "connection_id": "local", "connection_type": "env"}, environ=environ
    ) as stores:
        assert stores.xmin.load_state("public", "orders") is not None  # the same file
    monkeypatch.chdir(tmp_path)
    with open_state({"type": "sqlite"}, environ={}) as stores:
        exercise(stores)
    assert (tmp_path / "dpone_state.db").exists()


# --- sink reuse --------------------------------------------------------------------------------


def test_postgres_state_reuses_the_postgres_sink_connection(postgres: Server) -> None:
    text = f"""
sink:
  type: postgres
  connection_id: dwh
  connection_type: env
  table: orders
state:
  type: postgres
  table: {{schema: {postgres.schema}}}
"""
    environ = {"DPONE_CONN_DWH": postgres.url.render_as_string(hide_password=False)}
    with open_state(text, environ=environ) as stores:
        assert stores.settings.connection_from_sink
        assert stores.settings.connection_id == "dwh"
        exercise(stores)


# --- errors that reach no server ------------------------------------------------------------


def test_open_state_errors_before_connecting() -> None:
    with pytest.raises(UnknownStateTypeError, match="sqlite, postgres, mssql, bigquery, mysql"):
        open_state({"type": "oracle", "connection_id": "x"}, environ={})
    with pytest.raises(InvalidIdentifierError) as caught:
        open_state({"type": "sqlite", "table": {"name": " x"}}, environ={})
    assert caught.value.field == "state.table.name"
    with pytest.raises(MissingEnvironmentVariableError, match="DPONE_CONN_NOPE"):
        open_state(
            {"type": "postgres", "connection_id": "nope", "connection_type": "env"}, environ={}
        )


def test_bigquery_block_opens_working_storages_on_the_emulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = BACKENDS["bigquery"]
    engine, _ = _engine_or_skip(backend, tmp_path)  # the emulator (required under CI=true)
    dataset = backend.new_schema_name()
    environ = {"DPONE_CONN_BQ": json.dumps({"project": "dpone-test", "location": "US"})}
    block = {
        "type": "bigquery",
        "connection_id": "bq",
        "connection_type": "env",
        "table": {"schema": dataset, "name": "etl_xmin_state"},
    }
    try:
        with open_state(block, environ=environ) as state:
            assert state.engine.dialect.name == "bigquery"
            state.create_tables()
            state.xmin.save_state("public", "orders", XMinState(77))
            loaded = state.xmin.load_state("public", "orders")
            assert loaded is not None and loaded.xmin_value == 77
            assert state.runs.get_run_states_by_dag("dag") == []
    finally:
        backend.drop_schema(engine, dataset)
        engine.dispose()
