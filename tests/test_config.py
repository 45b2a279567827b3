"""The manifest ``state:`` block and connection secrets, parsed and validated (no server)."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy.dialects.mssql.pyodbc import MSDialect_pyodbc
from sqlalchemy.engine import URL

from dpone_state import (
    DEFAULT,
    InvalidIdentifierError,
    InvalidSecretError,
    MissingConnectionError,
    MissingEnvironmentVariableError,
    SecretKeyMissingError,
    StateConfigError,
    StateSettings,
    TableRef,
    UnknownConfigKeyError,
    UnknownStateTypeError,
    UnsupportedBackendError,
    connection_env_var,
    load_state_settings,
    safe_url,
)
from dpone_state.connections import (
    DEFAULT_MSSQL_DRIVER,
    bigquery_from_secret,
    resolve_connection,
    url_from_secret,
)

#: A password with every character that breaks a hand-formatted URL or ODBC string.
PASSWORD = "p@ss:w/rd?#%&;{}'\" =+"


def secret_free(text: str) -> bool:
    """Neither the password nor its URL-encoded form appears in ``text``."""
    return PASSWORD not in text and quote(PASSWORD, safe="") not in text and "p@ss" not in text


# --- the seed's blocks --------------------------------------------------------------------

SEED_MSSQL = """
state:
  type: mssql
  connection_id: mssql_dwh
  connection_type: vault
  table: {schema: etl_state, name: etl_xmin_state}
"""

SEED_POSTGRES = """
state:
  type: postgres
  connection_id: postgres_meta
  connection_type: vault
  table: {schema: etl_state, name: etl_xmin_state}
"""


@pytest.mark.parametrize(
    ("text", "kind", "conn"),
    [(SEED_MSSQL, "mssql", "mssql_dwh"), (SEED_POSTGRES, "postgres", "postgres_meta")],
)
def test_the_seed_blocks_parse_as_written(text: str, kind: str, conn: str) -> None:
    settings = load_state_settings(text)
    assert settings == StateSettings(
        type=kind,  # type: ignore[arg-type]
        connection_id=conn,
        connection_type="vault",
        table=TableRef("etl_state", "etl_xmin_state"),
        run_table=TableRef("etl_state", "etl_run_state"),
    )
    assert settings.vault_path == conn
    assert settings.vault.mount_point == "secret"


def test_yaml_text_a_file_a_path_string_and_a_dict_give_the_same_settings(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(SEED_POSTGRES, encoding="utf-8")
    block = {
        "type": "postgres",
        "connection_id": "postgres_meta",
        "connection_type": "vault",
        "table": {"schema": "etl_state", "name": "etl_xmin_state"},
    }
    expected = load_state_settings(SEED_POSTGRES)
    assert load_state_settings(manifest) == expected
    assert load_state_settings(str(manifest)) == expected
    assert load_state_settings(block) == expected
    assert load_state_settings({"state": block, "source": {"type": "postgres"}}) == expected


def test_a_missing_manifest_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(StateConfigError, match="cannot read the manifest file"):
        load_state_settings(tmp_path / "nope.yaml")


def test_invalid_yaml_is_a_config_error() -> None:
    with pytest.raises(StateConfigError, match=r"not valid YAML at line \d"):
        load_state_settings("state:\n  type: [postgres\n")


def test_tables_default_and_run_table_follows_the_xmin_schema() -> None:
    settings = load_state_settings({"type": "postgres", "connection_id": "c"})
    assert settings.table == TableRef(DEFAULT, "etl_xmin_state")  # the backend default
    assert settings.run_table == TableRef(DEFAULT, "etl_run_state")
    settings = load_state_settings(
        {
            "type": "postgres",
            "connection_id": "c",
            "table": {"schema": "meta"},
            "run_table": {"name": "runs"},
        }
    )
    assert settings.table == TableRef("meta", "etl_xmin_state")
    assert settings.run_table == TableRef("meta", "runs")


def test_connection_type_defaults_to_vault_and_vault_location_is_configurable() -> None:
    settings = load_state_settings(
        {
            "type": "mysql",
            "connection_id": "meta",
            "vault": {"mount_point": "kv", "path": "teams/etl/meta"},
        }
    )
    assert settings.connection_type == "vault"
    assert (settings.vault.mount_point, settings.vault_path) == ("kv", "teams/etl/meta")


def test_omitted_type_is_bigquery_and_says_so_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="dpone_state"):
        settings = load_state_settings({"connection_id": "bq_meta", "connection_type": "env"})
    assert settings.type == "bigquery"
    assert settings.type_defaulted
    assert any(
        "state.type is not set" in r.getMessage() and "BigQuery" in r.getMessage()
        for r in caplog.records
    )
    with caplog.at_level(logging.INFO, logger="dpone_state"):
        caplog.clear()
        load_state_settings({"type": "bigquery", "connection_id": "bq_meta"})
    assert not any("state.type is not set" in r.getMessage() for r in caplog.records)


# --- validation errors ----------------------------------------------------------------------


def test_unknown_type_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownStateTypeError) as caught:
        load_state_settings({"type": "postgresql_15", "connection_id": "c"})
    message = str(caught.value)
    assert caught.value.field == "state.type"
    for name in ("sqlite", "postgres", "mssql", "bigquery", "mysql"):
        assert name in message
    assert isinstance(caught.value, UnsupportedBackendError)


@pytest.mark.parametrize(
    ("block", "field", "hint"),
    [
        ({"type": "postgres", "connection_id": "c", "tabel": {}}, "state.tabel", "'table'"),
        ({"type": "postgres", "conection_id": "c"}, "state.conection_id", "'connection_id'"),
        (
            {"type": "postgres", "connection_id": "c", "table": {"schema": "s", "nmae": "t"}},
            "state.table.nmae",
            "'name'",
        ),
        (
            {"type": "postgres", "connection_id": "c", "vault": {"mount": "kv"}},
            "state.vault.mount",
            "",
        ),
    ],
)
def test_an_unknown_key_is_an_error_naming_it(
    block: dict[str, object], field: str, hint: str
) -> None:
    with pytest.raises(UnknownConfigKeyError) as caught:
        load_state_settings(block)
    assert caught.value.field == field
    assert (
        f"did you mean {hint}" in str(caught.value) if hint else "valid keys" in str(caught.value)
    )


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ({"schema": " etl_state", "name": "t"}, "state.table.schema"),
        ({"schema": "s", "name": ""}, "state.table.name"),
        ({"schema": "s", "name": "x" * 129}, "state.table.name"),
        ({"schema": "s\x00", "name": "t"}, "state.table.schema"),
        ({"schema": 5, "name": "t"}, "state.table.schema"),
    ],
)
def test_an_unusable_identifier_is_an_error_naming_the_field(
    table: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidIdentifierError) as caught:
        load_state_settings({"type": "postgres", "connection_id": "c", "table": table})
    assert caught.value.field == field
    with pytest.raises(InvalidIdentifierError) as caught:
        load_state_settings({"type": "postgres", "connection_id": "c", "run_table": table})
    assert caught.value.field == field.replace("state.table", "state.run_table")


@pytest.mark.parametrize(
    ("block", "field", "text"),
    [
        (
            {"type": "postgres", "connection_id": "c", "connection_type": "ldap"},
            "state.connection_type",
            "vault, env, url",
        ),
        ({"type": "postgres", "connection_id": " c"}, "state.connection_id", "non-empty"),
        ({"type": "postgres", "connection_id": "c", "table": "etl.x"}, "state.table", "mapping"),
        ({"type": "postgres", "url": "mysql+pymysql://root@h/db"}, "state.url", "'mysql' URL"),
        ({"url": "sqlite:///x.db"}, "state.url", "omitted, so BigQuery"),
        (
            {"type": "postgres", "url": "postgresql://h/db", "connection_type": "vault"},
            "state.connection_type",
            "remove one",
        ),
    ],
)
def test_bad_values_name_the_field_and_the_fix(
    block: dict[str, object], field: str, text: str
) -> None:
    with pytest.raises(StateConfigError) as caught:
        load_state_settings(block)
    assert caught.value.field == field
    assert text in str(caught.value)


def test_an_unparsable_url_is_not_echoed() -> None:
    with pytest.raises(StateConfigError) as caught:
        load_state_settings({"type": "postgres", "url": f"postgresql://u:{PASSWORD}@h:port/db"})
    assert caught.value.field == "state.url"
    assert secret_free(str(caught.value))
    assert caught.value.__cause__ is None and caught.value.__context__ is not None


# --- connections and sink reuse --------------------------------------------------------------

MSSQL_SINK = {"type": "mssql", "connection_id": "mssql_dwh", "connection_type": "env", "table": "x"}


def test_sink_reuse_for_an_mssql_sink() -> None:
    settings = load_state_settings(
        {"state": {"type": "mssql", "table": {"schema": "etl_state"}}, "sink": MSSQL_SINK}
    )
    assert (settings.connection_id, settings.connection_type) == ("mssql_dwh", "env")
    assert settings.connection_from_sink


def test_sink_reuse_for_a_postgres_sink_given_separately_and_state_connection_type_wins() -> None:
    sink = {"type": "postgres", "connection_id": "pg_dwh"}
    settings = load_state_settings({"type": "postgres", "connection_type": "env"}, sink=sink)
    assert (settings.connection_id, settings.connection_type) == ("pg_dwh", "env")
    settings = load_state_settings({"type": "postgres"}, sink=sink)
    assert settings.connection_type == "vault"  # the sink's default, as in the seed


def test_an_explicit_connection_is_never_replaced_by_the_sink() -> None:
    settings = load_state_settings(
        {"state": {"type": "mssql", "connection_id": "state_db"}, "sink": MSSQL_SINK}
    )
    assert settings.connection_id == "state_db"
    assert not settings.connection_from_sink


@pytest.mark.parametrize(
    ("state", "sink", "text"),
    [
        ({"type": "mssql"}, None, "set state.connection_id"),
        ({"type": "postgres"}, MSSQL_SINK, "serves only state.type mssql"),
        (
            {"type": "mysql"},
            {"type": "mysql", "connection_id": "m"},
            "only for an mssql, postgres or bigquery sink",
        ),
        ({"type": "mssql"}, {"type": "mssql"}, "set state.connection_id"),
        ({}, MSSQL_SINK, "set state.type: mssql to reuse"),
        ({"type": "bigquery"}, MSSQL_SINK, "serves only state.type mssql"),
        ({"type": "postgres", "connection_type": "url"}, None, "set state.url"),
    ],
)
def test_no_connection_is_an_error_saying_what_to_set(
    state: dict[str, object], sink: dict[str, object] | None, text: str
) -> None:
    with pytest.raises(MissingConnectionError) as caught:
        load_state_settings(state, sink=sink)
    assert text in str(caught.value)


def test_env_var_name_per_connection_id() -> None:
    assert connection_env_var("postgres_meta") == "DPONE_CONN_POSTGRES_META"
    assert connection_env_var("mssql-dwh.prod") == "DPONE_CONN_MSSQL_DWH_PROD"


def test_secret_keys_build_each_dialects_url_with_any_password() -> None:
    secret = {
        "db_host": "db.internal",
        "port": "5433",
        "dbname": "meta",
        "user": "etl",
        "password": PASSWORD,
        "schema": "ignored: the secret is shared with the sink's connector",
    }
    pg = url_from_secret("postgres", secret, "test")
    assert (pg.drivername, pg.host, pg.port, pg.database, pg.username, pg.password) == (
        "postgresql+psycopg2",
        "db.internal",
        5433,
        "meta",
        "etl",
        PASSWORD,
    )
    assert url_from_secret("mysql", secret, "test").drivername == "mysql+pymysql"
    assert secret_free(repr(pg)) and secret_free(str(pg))
    mssql = url_from_secret("mssql", secret, "test")
    assert mssql.drivername == "mssql+pyodbc"
    assert mssql.query == {"driver": DEFAULT_MSSQL_DRIVER}
    odbc = url_from_secret(
        "mssql",
        {
            **secret,
            "driver": "FreeTDS",
            "options": {"TrustServerCertificate": "yes", "TDS_Version": 7.4},
        },
        "test",
    )
    assert odbc.query == {
        "driver": "FreeTDS",
        "TrustServerCertificate": "yes",
        "TDS_Version": "7.4",
    }
    (connect_string,), _ = MSDialect_pyodbc().create_connect_args(odbc)
    assert "DRIVER={FreeTDS};Server=db.internal,5433;Database=meta;UID=etl;" in connect_string
    assert "PWD={p@ss:w/rd?#%&;{}}'\" =+}" in connect_string  # ODBC-escaped, not broken
    assert url_from_secret("sqlite", {"path": "/var/lib/dpone/state.db"}, "t").database == (
        "/var/lib/dpone/state.db"
    )


@pytest.mark.parametrize(
    ("secret", "error", "field"),
    [
        ({"database": "d", "password": PASSWORD}, SecretKeyMissingError, "test: host"),
        ({"host": "h", "password": PASSWORD}, SecretKeyMissingError, "test: database"),
        ({"host": "h", "database": "d", "port": "54x"}, InvalidSecretError, "test: port"),
        ({"host": "h", "database": "d", "port": 70000}, InvalidSecretError, "test: port"),
        ({"host": "h", "database": "d", "options": "[1]"}, InvalidSecretError, "test: options"),
        ({"url": f"mysql+pymysql://u:{PASSWORD}@h/d"}, InvalidSecretError, "test"),
    ],
)
def test_secret_problems_are_typed_and_secret_free(
    secret: dict[str, object], error: type[StateConfigError], field: str
) -> None:
    with pytest.raises(error) as caught:
        url_from_secret("postgres", secret, "test")
    assert caught.value.field == field
    assert secret_free(str(caught.value)) and secret_free(repr(caught.value))


SERVICE_ACCOUNT = {
    "type": "service_account",
    "project_id": "acme-data",
    "private_key_id": "k1",
    "private_key": "-----BEGIN PRIVATE KEY-----\nSECRETKEY\n-----END PRIVATE KEY-----\n",
    "client_email": "etl@acme-data.iam.gserviceaccount.com",
}


def _credentials(url: URL) -> dict[str, object] | None:
    encoded = url.query.get("credentials_base64")
    return None if encoded is None else json.loads(base64.b64decode(str(encoded)))


@pytest.mark.parametrize("as_text", [True, False])
def test_bigquery_secret_service_account_as_json_text_or_object(as_text: bool) -> None:
    key = json.dumps(SERVICE_ACCOUNT) if as_text else SERVICE_ACCOUNT
    url = bigquery_from_secret({"service_account_json": key, "location": "EU"}, "t")
    assert url.host == "acme-data"  # from the key's project_id
    assert url.database is None  # no dataset: the state table's schema (or etl_state) applies
    assert _credentials(url) == SERVICE_ACCOUNT
    assert url.query["location"] == "EU"
    assert "SECRETKEY" not in safe_url(url)
    url = bigquery_from_secret({"credentials": key, "project": "other", "dataset": "meta"}, "t")
    assert (url.host, url.database) == ("other", "meta")


def test_bigquery_secret_with_a_key_file_or_no_project() -> None:
    url = bigquery_from_secret({"project": "p", "keyfile": "/etc/sa.json"}, "t")
    assert (url.host, url.database, url.query["credentials_path"]) == ("p", None, "/etc/sa.json")
    assert _credentials(url) is None
    with pytest.raises(SecretKeyMissingError, match="project"):
        bigquery_from_secret({"dataset": "d"}, "t")
    with pytest.raises(InvalidSecretError, match="service-account key as JSON") as caught:
        bigquery_from_secret({"project": "p", "keyfile_json": "{not json SECRETKEY"}, "t")
    assert "SECRETKEY" not in str(caught.value)


def test_bigquery_from_env_json_and_from_url() -> None:
    settings = load_state_settings(
        {
            "type": "bigquery",
            "connection_id": "bq",
            "connection_type": "env",
            "table": {"schema": "st"},
        }
    )
    env = {"DPONE_CONN_BQ": json.dumps({"project": "p", "service_account_json": SERVICE_ACCOUNT})}
    url = resolve_connection(settings, env).url
    assert (url.host, _credentials(url)) == ("p", SERVICE_ACCOUNT)
    settings = load_state_settings(
        {"type": "bigquery", "url": "bigquery://proj/ds?location=US&credentials_path=/k.json"}
    )
    url = resolve_connection(settings, {}).url
    assert (url.host, url.database, url.query["location"], url.query["credentials_path"]) == (
        "proj",
        "ds",
        "US",
        "/k.json",
    )


def test_env_connection_needs_its_variable_and_a_url_or_json_object() -> None:
    settings = load_state_settings(
        {"type": "postgres", "connection_id": "pg-meta", "connection_type": "env"}
    )
    with pytest.raises(MissingEnvironmentVariableError) as caught:
        resolve_connection(settings, {})
    assert caught.value.field == "DPONE_CONN_PG_META"
    with pytest.raises(InvalidSecretError) as caught2:
        resolve_connection(settings, {"DPONE_CONN_PG_META": '{"password": "' + "x" * 3})
    assert caught2.value.field == "DPONE_CONN_PG_META"


def test_settings_repr_masks_the_url_password() -> None:
    url = URL_WITH_PASSWORD = f"postgresql+psycopg2://etl:{quote(PASSWORD, safe='')}@db/meta"
    settings = load_state_settings({"type": "postgres", "url": url})
    assert settings.url is not None and settings.url.password == PASSWORD
    assert secret_free(repr(settings)) and secret_free(str(settings))
    assert URL_WITH_PASSWORD not in repr(settings)
