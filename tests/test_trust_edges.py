"""Trust at the edges, without a server: secrets in URLs, SQL compiled for others, the upsert's
cache key, names each backend would truncate or refuse, numbers past every type, and missing
drivers."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from alembic.ddl.base import AddColumn
from sqlalchemy.dialects import mssql
from sqlalchemy.schema import CreateTable

from dpone_state import (
    BackendNotInstalledError,
    InvalidIdentifierError,
    InvalidStateError,
    RunState,
    RunStateStatus,
    RunStateStorage,
    StateError,
    StateUnavailableError,
    XMinStateStorage,
    load_state_settings,
    migrate,
    open_state,
    safe_url,
)
from dpone_state.tables import build_tables
from dpone_state.upsert import INCOMING, Upsert

# --- 2. secrets in URL query parameters --------------------------------------------------------

SECRETS = ("hunter2pw", "sslsecret9", "tok3n-value", "odbcpwd7")
SECRET_URL = (
    "postgresql+psycopg2://etl:hunter2pw@127.0.0.1:1/meta"
    "?sslpassword=sslsecret9&password=tok3n-value&sslmode=require&application_name=etl"
)


def _assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, text


def test_safe_url_masks_the_password_field_and_secret_query_values() -> None:
    shown = safe_url(SECRET_URL)
    _assert_no_secret(shown)
    assert shown == (
        "postgresql+psycopg2://etl:***@127.0.0.1:1/meta?application_name=etl&password=***"
        "&sslmode=require&sslpassword=***"
    )
    odbc = safe_url("mssql+pyodbc://h/db?odbc_connect=DRIVER%3Dx%3BPWD%3Dodbcpwd7&driver=x")
    _assert_no_secret(odbc)
    assert "driver=x" in odbc


def test_messages_reprs_and_the_open_state_log_line_mask_query_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage = XMinStateStorage(SECRET_URL)
    _assert_no_secret(repr(storage))
    with pytest.raises(StateUnavailableError) as raised:
        storage.load_state("public", "orders")  # nothing listens on port 1
    _assert_no_secret(str(raised.value))
    # The message is whole: masking works on the URL's fields, never on free text.
    assert str(raised.value).startswith("cannot connect to the state database ")
    _assert_no_secret(repr(load_state_settings({"type": "postgres", "url": SECRET_URL})))
    with caplog.at_level(logging.INFO, logger="dpone_state"):
        stores = open_state({"type": "postgres", "url": SECRET_URL})
        stores.close()
    assert caplog.records, "open_state logs the state it opened"
    for record in caplog.records:
        _assert_no_secret(record.getMessage())
    # A one-letter password does not garble a message either.
    with pytest.raises(StateUnavailableError) as raised:
        XMinStateStorage("postgresql+psycopg2://a:a@127.0.0.1:1/state").load_state("s", "t")
    assert "cannot connect to the state database postgresql+psycopg2://a:***@" in str(raised.value)


# --- 3. importing dpone_state changes nobody else's SQL -----------------------------------------


def test_sql_server_ddl_of_a_host_table_compiles_as_sqlalchemy_and_alembic_compile_it() -> None:
    migrate.offline_sql("mssql")  # runs the migrations' environment (it used to install hooks)
    host = sa.Table(
        "host_app_table",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("flag", sa.Integer, nullable=False, server_default=sa.text("0")),
    )
    dialect = mssql.dialect()
    create = str(CreateTable(host).compile(dialect=dialect))
    assert "CONSTRAINT" not in create.replace("CONSTRAINT [PK_", "")
    assert "flag INTEGER NOT NULL DEFAULT 0" in create
    column = sa.Column("extra", sa.Integer, nullable=False, server_default=sa.text("1"))
    sa.Table("host_app_table", sa.MetaData(), column)
    added = str(AddColumn("host_app_table", column).compile(dialect=dialect))
    assert added == "ALTER TABLE host_app_table ADD extra INTEGER NOT NULL DEFAULT 1"
    # dpone-state's own tables still name their DEFAULTs.
    own = str(CreateTable(build_tables(dialect_name="mssql").xmin).compile(dialect=dialect))
    assert "CONSTRAINT df_etl_xmin_state_revision DEFAULT 0" in own


# --- 4. the upsert's cache key is its structure ---------------------------------------------------


TABLES = build_tables()


def _upsert(*, guarded: bool) -> Upsert:
    table = TABLES.xmin
    return Upsert(
        table,
        [{"source_schema": "a", "source_table": "b", "xmin_value": sa.bindparam("p_x")}],
        key=["source_schema", "source_table"],
        update={"xmin_value": INCOMING, "revision": table.c.revision + 1},
        where=(table.c.revision == 0) if guarded else None,
    )


def test_upsert_cache_key_is_structural_and_tells_guarded_from_unguarded() -> None:
    guarded, unguarded = _upsert(guarded=True), _upsert(guarded=False)
    assert "_gen_cache_key" not in Upsert.__dict__  # no private hook: SQLAlchemy's traversal
    key_guarded, key_unguarded = guarded._generate_cache_key(), unguarded._generate_cache_key()
    assert key_guarded is not None and key_unguarded is not None
    assert key_guarded != key_unguarded
    assert _upsert(guarded=True)._generate_cache_key() == key_guarded  # built twice, one key
    # Through one engine's compiled cache, each compiles to its own statement.
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        build_tables(schema=None).metadata.create_all(conn)
    tables = build_tables(schema=None)
    for guard in (tables.xmin.c.revision == 5, None):
        statement = Upsert(
            tables.xmin,
            [
                {
                    "source_schema": "a",
                    "source_table": "b",
                    "xmin_value": sa.bindparam("p_x"),
                    "revision": 1,
                }
            ],
            key=["source_schema", "source_table"],
            update={"xmin_value": INCOMING, "revision": tables.xmin.c.revision + 1},
            where=guard,
        )
        with engine.begin() as conn:
            conn.execute(statement, {"p_x": 7})
    with engine.connect() as conn:
        # The guarded save met revision 0 (no match): only the unguarded one updated.
        assert conn.execute(sa.select(tables.xmin.c.xmin_value, tables.xmin.c.revision)).one() == (
            7,
            2,
        )


# --- 5. names each backend would truncate or refuse --------------------------------------------


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url)  # no connection is made


@pytest.mark.parametrize(
    ("url", "schema", "table", "why"),
    [
        ("postgresql+psycopg2://h/db", "s", "x" * 64, "64 bytes"),
        ("postgresql+psycopg2://h/db", "s", "é" * 32, "64 bytes"),  # 32 characters
        # 58 characters fit 63 bytes; the primary key pk_…_source (68) does not
        ("postgresql+psycopg2://h/db", "s", "t" * 58, "pk_"),
        ("postgresql+psycopg2://h/db", "s" * 64, "t", "schema name"),
        ("mysql+pymysql://h/db", "s", "x" * 65, "65 characters"),
        ("mysql+pymysql://h/db", "s", "emoji_\U0001f600", "Basic Multilingual Plane"),
    ],
)
def test_names_past_a_backends_limits_are_refused_when_a_storage_is_built(
    url: str, schema: str, table: str, why: str
) -> None:
    with pytest.raises(InvalidIdentifierError, match=r"is .* long|Multilingual") as raised:
        XMinStateStorage(_engine(url), schema=schema, table=table)
    assert why in str(raised.value)


def test_sql_server_default_constraint_names_are_capped_not_refused() -> None:
    # A DEFAULT constraint name past 128 characters is capped deterministically (ddl.capped_name),
    # so the storage is built; the table name itself still fits.
    storage = XMinStateStorage(_engine("mssql+pyodbc://h/db?driver=x"), schema="s", table="t" * 110)
    assert storage.table_name == "t" * 110


def test_two_long_names_sharing_63_bytes_never_address_one_postgresql_table() -> None:
    engine = _engine("postgresql+psycopg2://h/db")
    prefix = "checkpoints_of_the_nightly_extraction_of_the_orders_database_"
    for name in (prefix + "eu", prefix + "us"):
        with pytest.raises(InvalidIdentifierError):
            XMinStateStorage(engine, schema="s", table=name)


def test_lone_surrogates_and_limits_of_run_tables_too() -> None:
    for url in ("sqlite://", "postgresql+psycopg2://h/db", "mysql+pymysql://h/db"):
        with pytest.raises(InvalidIdentifierError, match="surrogate"):
            XMinStateStorage(_engine(url), table="bad\udc80name")
    # pk_<table>_dag_execution is the longest name the run table derives (MariaDB refuses a
    # constraint name over 64 characters: error 1059).
    with pytest.raises(InvalidIdentifierError, match="constraint name"):
        RunStateStorage(_engine("mysql+pymysql://h/db"), schema="s", table="r" * 50)
    RunStateStorage(_engine("mysql+pymysql://h/db"), schema="s", table="r" * 46)  # fits


# --- 5. numbers past every type ------------------------------------------------------------------


def test_numbers_past_every_type_are_typed_errors() -> None:
    now = datetime.now(timezone.utc)
    # An int past every float is not a finite number: stored as NULL, as NaN and infinity are
    # (dpone's runtime computes durations from local clocks), never a raw OverflowError.
    run = RunState(
        dag_id="d",
        source_schema="s",
        source_table="t",
        target_schema="s",
        target_table="t",
        load_strategy="full",
        execution_date=now,
        state=RunStateStatus.SUCCESS,
        started_at=now,
        duration_min=2**1024,  # type: ignore[arg-type]
    )
    assert run.duration_min is None
    runs = RunStateStorage(_engine("sqlite://"))
    for size in (2**64, 2**63):
        with pytest.raises(InvalidStateError, match="batch_size"):
            runs.delete_old_states(30, batch_size=size)


# --- 7. missing drivers ---------------------------------------------------------------------

_NOT_INSTALLED = textwrap.dedent(
    """
    import json, sys
    for name in ("psycopg2", "psycopg", "pymysql", "MySQLdb", "pyodbc", "sqlalchemy_bigquery",
                 "google.cloud.bigquery"):
        sys.modules[name] = None  # an import of it fails as if it were not installed
    from dpone_state import XMinStateStorage, StateError
    from dpone_state.postgres import PostgresXMinStateStorage
    out = {}
    for url in sys.argv[1:]:
        cls = PostgresXMinStateStorage if url.startswith("postgresql") else XMinStateStorage
        try:
            cls(url)
            out[url] = "built"
        except StateError as error:
            out[url] = type(error).__name__ + ": " + str(error)
        except BaseException as error:
            out[url] = "RAW " + type(error).__name__ + ": " + str(error)
    print(json.dumps(out))
    """
)

_EXPECTED_EXTRA = {
    "postgresql://u:pw@h/db": "postgres",
    "postgresql+psycopg2://u:pw@h/db": "postgres",
    "postgresql+psycopg://u:pw@h/db": "postgres",
    "mysql://u:pw@h/db": "mysql",
    "mysql+pymysql://u:pw@h/db": "mysql",
    "mariadb+pymysql://u:pw@h/db": "mysql",
    "mssql+pyodbc://u:pw@h/db?driver=x": "mssql",
    "bigquery://project": "bigquery",
}


def test_a_missing_driver_names_the_right_extra_for_every_url_form() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _NOT_INSTALLED, *_EXPECTED_EXTRA],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    results = json.loads(done.stdout)
    for url, extra in _EXPECTED_EXTRA.items():
        message = results[url]
        assert message.startswith("BackendNotInstalledError: "), (url, message)
        assert f"dpone-state[{extra}]" in message, (url, message)
        assert "pw@" not in message
    # mysql:// asks for mysqlclient, which no extra installs: the advice says which URL works.
    assert "mysql+pymysql://" in results["mysql://u:pw@h/db"]
    assert issubclass(BackendNotInstalledError, StateError)
