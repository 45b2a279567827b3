"""One registry of backend facts and one door from configuration to storages.

A manifest's ``state:`` block, a URL and the command line's options become one validated
settings object and then one ``StateStores``; these tests hold the door to that promise
(BigQuery included) without a server: engines are made, never connected.
"""

from __future__ import annotations

import ast
import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import dpone_state
from dpone_state import (
    BACKENDS,
    DEFAULT_SCHEMA,
    BackendHooks,
    StateConfigError,
    StateStores,
    by_dialect,
    open_state,
    open_stores,
    settings_from_url,
)
from dpone_state.backends import bigquery as bigquery_hooks
from dpone_state.cli import Options, Store, cli, open_store


@pytest.fixture(scope="module")
def service_account() -> dict[str, str]:
    """A service-account key google-auth accepts (a fresh RSA key; never used to sign in)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "type": "service_account",
        "project_id": "acme-data",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "etl@acme-data.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every BigQuery client the hooks build: its project, credentials and location."""
    made: list[dict[str, Any]] = []
    real = bigquery_hooks.bigquery_client

    def recording(project: str | None = None, **options: Any) -> Any:
        client = real(project, **options)
        made.append(
            {
                "project": client.project,
                "email": getattr(client._credentials, "service_account_email", None),
                "location": client.location,
            }
        )
        return client

    monkeypatch.setattr(bigquery_hooks, "bigquery_client", recording)
    monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
    return made


@contextmanager
def _cli_stores(*argv: str) -> Iterator[Store]:
    """What the command opens for these options (parsed by the command itself)."""
    options = Options()
    with cli.make_context("dpone-state", list(argv), obj=options):
        store = open_store(options)
    try:
        yield store
    finally:
        store.engine.dispose()


def _engine_facts(stores: StateStores | Store) -> tuple[str, str | None, str | None]:
    return (
        stores.engine.url.render_as_string(hide_password=False),
        stores.xmin.schema,
        stores.runs.schema,
    )


def test_a_manifest_bigquery_url_and_the_cli_url_give_the_same_engine(
    service_account: dict[str, str], clients: list[dict[str, Any]]
) -> None:
    encoded = base64.b64encode(json.dumps(service_account).encode()).decode()
    url = f"bigquery://acme-data/ds_state?location=EU&credentials_base64={encoded}"
    with open_state({"type": "bigquery", "url": url}, environ={}) as by_manifest:
        manifest_facts = _engine_facts(by_manifest)
    with _cli_stores("--url", url) as by_cli:
        cli_facts = _engine_facts(by_cli)
    assert manifest_facts == cli_facts
    assert manifest_facts[1:] == ("ds_state", "ds_state")  # the URL's dataset is the schema
    assert encoded not in manifest_facts[0]  # the credentials went into the client
    expected = {"project": "acme-data", "email": service_account["client_email"], "location": "EU"}
    assert clients == [expected, expected]  # the manifest's credentials were not dropped


def test_a_bigquery_secret_gives_the_same_engine_as_its_url(
    service_account: dict[str, str], clients: list[dict[str, Any]]
) -> None:
    secret = {"service_account_json": service_account, "dataset": "ds_state", "location": "EU"}
    block = {"type": "bigquery", "connection_id": "bq", "connection_type": "env"}
    with open_state(block, environ={"DPONE_CONN_BQ": json.dumps(secret)}) as by_secret:
        secret_facts = _engine_facts(by_secret)
    encoded = base64.b64encode(json.dumps(service_account).encode()).decode()
    url = f"bigquery://acme-data/ds_state?credentials_base64={encoded}&location=EU"
    with _cli_stores("--url", url) as by_cli:
        cli_facts = _engine_facts(by_cli)
    assert secret_facts == cli_facts
    assert secret_facts[1] == "ds_state"
    assert clients[0] == clients[1]
    assert clients[0]["email"] == service_account["client_email"]


def test_the_manifest_table_schema_wins_over_the_url_dataset(
    service_account: dict[str, str], clients: list[dict[str, Any]]
) -> None:
    encoded = base64.b64encode(json.dumps(service_account).encode()).decode()
    block = {
        "type": "bigquery",
        "url": f"bigquery://acme-data/ds_url?credentials_base64={encoded}",
        "table": {"schema": "ds_manifest"},
    }
    with open_state(block, environ={}) as stores:
        assert (stores.xmin.schema, stores.runs.schema) == ("ds_manifest", "ds_manifest")
    with open_state({**block, "url": "bigquery://acme-data?credentials_base64=" + encoded}) as s:
        assert s.xmin.schema == "ds_manifest"
    with open_state({"type": "bigquery", "url": block["url"].replace("/ds_url", "")}) as s:
        assert s.xmin.schema == DEFAULT_SCHEMA


PG_URL = "postgresql+psycopg2://etl@db.invalid/meta"


def test_a_manifest_can_say_no_schema() -> None:
    with open_state({"type": "postgres", "url": PG_URL, "table": {"schema": None}}) as stores:
        assert (stores.xmin.schema, stores.runs.schema) == (None, None)
        assert stores.xmin.qualified_name == "etl_xmin_state"
    with open_state({"type": "postgres", "url": PG_URL}) as stores:
        assert stores.xmin.schema == DEFAULT_SCHEMA
    # --no-schema and a manifest's schema: null mean the same
    with _cli_stores("--url", PG_URL, "--no-schema") as stores:
        assert stores.schema is None


def test_the_manifest_accepts_only_layouts_the_migrations_accept() -> None:
    block = {
        "type": "postgres",
        "url": PG_URL,
        "table": {"schema": "a"},
        "run_table": {"schema": "b"},
    }
    with pytest.raises(StateConfigError) as caught:
        open_state(block)
    assert caught.value.field == "state.run_table.schema"


def test_url_settings_and_a_manifest_url_are_the_same_settings() -> None:
    via_url = settings_from_url(PG_URL)
    with open_stores(via_url) as a, open_state({"type": "postgres", "url": PG_URL}) as b:
        assert (a.settings.table, a.settings.run_table) == (b.settings.table, b.settings.run_table)
        assert _engine_facts(a) == _engine_facts(b)


def test_a_windows_path_is_read_as_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    name = "C:\\etl\\manifest.yaml"  # on POSIX one file name with backslashes
    database = tmp_path / "state.db"
    Path(name).write_text(f"state:\n  type: sqlite\n  url: sqlite:///{database}\n", "utf-8")
    with open_state(name) as stores:
        assert stores.engine.url.database == str(database)
    with pytest.raises(StateConfigError, match="cannot read the manifest file"):
        open_state("D:\\etl\\missing.yaml")
    with open_state(f"{{type: sqlite, url: 'sqlite:///{database}'}}") as stores:  # inline YAML
        assert stores.engine.url.database == str(database)


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda row: row.state_type)
def test_every_row_names_loadable_hooks_and_its_dialects(backend: dpone_state.Backend) -> None:
    assert isinstance(backend.hooks(), BackendHooks)
    for name in backend.dialects:
        assert by_dialect(name) is backend


def _imports(module: str) -> set[str]:
    """The dpone_state modules ``module`` imports (at the top or inside functions)."""
    path = PACKAGE.joinpath(*module.split(".")[1:])
    source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    found: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PREFIX):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(PREFIX))
    return found


PACKAGE = Path(dpone_state.__file__).parent
PREFIX = "dpone_state."


def test_the_engine_factory_reaches_no_storage_module() -> None:
    """engine -> registry -> hooks (loaded by name) never leads back to the storages: the
    engine -> backend -> storage -> engine cycle is gone."""
    hooks = {row.hooks_path.partition(":")[0] for row in BACKENDS}

    def reached(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            module = todo.pop()
            if module not in seen:
                seen.add(module)
                todo.extend(_imports(module) | (hooks if module.endswith(".dialects") else set()))
        return seen

    assert hooks <= reached("dpone_state.engine")
    assert "dpone_state.storage" not in reached("dpone_state.engine")
    for module in hooks:
        assert not reached(module) & {"dpone_state.engine", "dpone_state.storage"}, module


def test_old_import_paths_still_work() -> None:
    from dpone_state import cli, engine, mssql, postgres, sqlite, storage, strategy, tables, xmin  # noqa: PLC0415

    assert postgres.PostgresXMinStateStorage is dpone_state.PostgresXMinStateStorage
    assert mssql.MssqlRunStateStorage is dpone_state.MssqlRunStateStorage
    assert xmin.XMinError is dpone_state.XMinError
    assert xmin.SourceColumnError is dpone_state.SourceColumnError
    assert strategy.StrategyConfigurationError is dpone_state.StrategyConfigurationError
    assert cli.UsageError is dpone_state.errors.UsageError
    assert storage.DEFAULT is dpone_state.DEFAULT
    assert tables.DEFAULT_SCHEMA == DEFAULT_SCHEMA
    assert engine.DEFAULT_URL == dpone_state.DEFAULT_URL
    assert callable(engine.ping_when_idle) and sqlite.BUSY_TIMEOUT_SECONDS == 30
