"""The backends the behaviour suite runs on, how to reach them, and how to isolate a test run.

Each backend is reachable through an environment variable (with a default for the servers
of this machine). Under ``CI=true`` a backend marked required that cannot be reached fails the
run; elsewhere it is skipped with a reason that says how to enable it.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dpone_state import create_state_engine

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


_HANDED_OUT: set[int] = set()


def free_port() -> str:
    """A TCP port on 127.0.0.1 that is free now and not handed out before in this process
    (for a throwaway server of one test run: two servers never get the same one)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return str(port)


@dataclass
class Backend:
    """One backend of the suite: where it is and how to make and drop an isolated schema."""

    name: str
    env_var: str
    default_url: str | None
    required_in_ci: bool
    how_to_enable: str
    uses_schema: bool = True
    make_engine: Callable[[str], Engine] = field(default=create_state_engine)
    #: A faster "is it there" check than a query (None: run ``SELECT 1``).
    probe: Callable[[Engine], str | None] | None = None
    #: Provision by adopting dpone's legacy tables (created as dpone's runtime creates them,
    #: then ``dpone-state upgrade``) instead of ``create_tables()``.
    adopts_legacy: bool = False

    @property
    def url(self) -> str | None:
        return os.environ.get(self.env_var) or self.default_url

    def new_schema_name(self) -> str | None:
        if not self.uses_schema:
            return None
        return f"dpone_test_{uuid.uuid4().hex[:10]}"

    def drop_schema(self, engine: Engine, schema: str | None) -> None:
        if schema is None:
            return
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            elif engine.dialect.name in ("mysql", "mariadb"):
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{schema}`"))
            elif engine.dialect.name == "mssql" and sa.inspect(conn).has_schema(schema):
                # No DROP SCHEMA … CASCADE in T-SQL: drop the schema's tables, then the schema.
                tables = sa.MetaData()
                tables.reflect(conn, schema=schema)
                tables.drop_all(conn)
                conn.execute(sa.schema.DropSchema(schema))
            elif engine.dialect.name == "bigquery":
                client = conn.connection.dbapi_connection._client  # type: ignore[union-attr]
                client.delete_dataset(schema, delete_contents=True, not_found_ok=True)


#: BigQuery: a local emulator (``scripts/services/bigquery-emulator.sh``) unless a real
#: project is named, which is then reached with application default credentials.
BIGQUERY_EMULATOR = os.environ.get("DPONE_STATE_TEST_BIGQUERY_EMULATOR", "http://127.0.0.1:9050")
BIGQUERY_PROJECT = os.environ.get("DPONE_STATE_TEST_BIGQUERY_PROJECT")


def _bigquery_engine(url: str) -> Engine:
    """A caller-built client on the emulator (the ``user_supplied_client`` path), or ADC."""
    if BIGQUERY_PROJECT:
        return create_state_engine(url)
    from google.auth.credentials import AnonymousCredentials  # noqa: PLC0415
    from google.cloud import bigquery  # noqa: PLC0415

    from dpone_state.bigquery import EMULATOR_HOST_ENV, create_bigquery_engine  # noqa: PLC0415

    # Engines built from the URL alone (other processes of the concurrency tests) find the
    # emulator through the variable google-cloud-bigquery reads.
    os.environ[EMULATOR_HOST_ENV] = BIGQUERY_EMULATOR
    client = bigquery.Client(
        project="dpone-test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": BIGQUERY_EMULATOR},
    )
    return create_bigquery_engine(client=client)


def bigquery_client_of(engine: Engine) -> Any:
    """The ``google.cloud.bigquery.Client`` behind a BigQuery engine."""
    with engine.connect() as conn:
        return conn.connection.dbapi_connection._client  # type: ignore[union-attr]


def create_dpone_bigquery_tables(
    engine: Engine,
    dataset: str,
    xmin_table: str = "etl_xmin_state",
    run_table: str = "etl_run_state",
) -> None:
    """dpone's BigQuery state tables, created as dpone's runtime creates them (its
    ``xmin_storage.py`` / ``run_state.py``: ``client.create_table`` with these schemas)."""
    from google.cloud import bigquery  # noqa: PLC0415

    def field(name: str, kind: str, required: bool = False) -> Any:
        return bigquery.SchemaField(name, kind, mode="REQUIRED" if required else "NULLABLE")

    stamps = [field("__dpone__loaded_at", "TIMESTAMP", True)]
    stamps.append(field("__dpone__updated_at", "TIMESTAMP", True))
    client = bigquery_client_of(engine)
    client.create_dataset(dataset, exists_ok=True)
    xmin = [
        field("source_schema", "STRING", True),
        field("source_table", "STRING", True),
        field("xmin_value", "INT64", True),
        field("is_initial", "BOOL", True),
        field("wraparound_detected", "BOOL", True),
        field("frozen_xid", "INT64"),
        *stamps,
    ]
    names = ["dag_id", "source_schema", "source_table", "target_schema", "target_table"]
    run = [field(name, "STRING", True) for name in (*names, "load_strategy")]
    run += [field("execution_date", "TIMESTAMP", True), field("state", "STRING", True)]
    run += [field("started_at", "TIMESTAMP", True), field("ended_at", "TIMESTAMP")]
    run += [field("duration_min", "FLOAT64"), field("error_message", "STRING")]
    run += [field(f"rows_{kind}", "INT64") for kind in ("read", "written", "updated", "deleted")]
    run += stamps
    project = client.project
    for name, schema in ((xmin_table, xmin), (run_table, run)):
        client.create_table(bigquery.Table(f"{project}.{dataset}.{name}", schema=schema))


def _bigquery_probe(engine: Engine) -> str | None:
    """The emulator's port first: a query to a closed port is retried for minutes."""
    if not BIGQUERY_PROJECT:
        parts = urlsplit(BIGQUERY_EMULATOR)
        try:
            socket.create_connection((parts.hostname, parts.port or 80), timeout=2).close()
        except OSError as error:
            return f"no emulator at {BIGQUERY_EMULATOR}: {error}"
    return reachable(engine)


def _with_driver(url: str, drivername: str) -> str:
    return sa.engine.make_url(url).set(drivername=drivername).render_as_string(hide_password=False)


BACKENDS: dict[str, Backend] = {
    "sqlite": Backend(
        name="sqlite",
        env_var="DPONE_STATE_TEST_SQLITE_URL",
        default_url=None,  # a file in the test's temporary directory
        required_in_ci=True,
        how_to_enable="always available",
        uses_schema=False,
    ),
    "postgresql": Backend(
        name="postgresql",
        env_var="DPONE_STATE_TEST_POSTGRES_URL",
        default_url="postgresql+psycopg2://postgres@127.0.0.1:5432/test",
        required_in_ci=True,
        how_to_enable=(
            "start PostgreSQL on 127.0.0.1:5432 (trust auth, database test) or set "
            "DPONE_STATE_TEST_POSTGRES_URL"
        ),
    ),
    # psycopg 3: the driver SQLAlchemy 2.1 picks for ``postgresql://``; the same server as
    # ``postgresql``, reached through the other driver (DPONE_STATE_TEST_POSTGRES_URL's driver
    # replaced), so every behaviour test also runs on it.
    "psycopg": Backend(
        name="psycopg",
        env_var="DPONE_STATE_TEST_PSYCOPG_URL",
        default_url=_with_driver(
            os.environ.get("DPONE_STATE_TEST_POSTGRES_URL")
            or "postgresql+psycopg2://postgres@127.0.0.1:5432/test",
            "postgresql+psycopg",
        ),
        required_in_ci=True,
        how_to_enable="as for postgresql (psycopg 3 is in the postgres extra)",
    ),
    "mariadb": Backend(
        name="mariadb",
        env_var="DPONE_STATE_TEST_MYSQL_URL",
        default_url="mysql+pymysql://root@127.0.0.1:3306/test",
        required_in_ci=True,
        how_to_enable=(
            "start MariaDB/MySQL on 127.0.0.1:3306 (root, empty password) or set "
            "DPONE_STATE_TEST_MYSQL_URL"
        ),
    ),
    "mssql": Backend(
        name="mssql",
        env_var="DPONE_STATE_TEST_MSSQL_URL",
        default_url=None,  # no SQL Server runs on the CI machines
        required_in_ci=False,
        how_to_enable=(
            "set DPONE_STATE_TEST_MSSQL_URL to a SQL Server database, e.g. "
            "mssql+pyodbc://sa:PASSWORD@127.0.0.1:1433/dpone_test?driver=FreeTDS&TDS_Version=7.4 "
            "(README: Running the tests on SQL Server)"
        ),
    ),
    "bigquery": Backend(
        name="bigquery",
        env_var="DPONE_STATE_TEST_BIGQUERY_URL",
        default_url=f"bigquery://{BIGQUERY_PROJECT or 'dpone-test'}",
        required_in_ci=True,
        how_to_enable=(
            "run `scripts/services/bigquery-emulator.sh start` (emulator at "
            "DPONE_STATE_TEST_BIGQUERY_EMULATOR, default http://127.0.0.1:9050), or set "
            "DPONE_STATE_TEST_BIGQUERY_PROJECT to a real project (application default "
            "credentials)"
        ),
        make_engine=_bigquery_engine,
        probe=_bigquery_probe,
    ),
    # dpone's existing BigQuery tables, adopted by `dpone-state upgrade`: the same suite on them.
    "bigquery_adopted": Backend(
        name="bigquery_adopted",
        env_var="DPONE_STATE_TEST_BIGQUERY_URL",
        default_url=f"bigquery://{BIGQUERY_PROJECT or 'dpone-test'}",
        required_in_ci=True,
        how_to_enable="as bigquery",
        make_engine=_bigquery_engine,
        probe=_bigquery_probe,
        adopts_legacy=True,
    ),
}


def reachable(engine: Engine) -> str | None:
    """None if the engine connects, else the reason it does not."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as error:  # any failure to connect means "not reachable"
        lines = str(error).strip().splitlines()
        return f"{type(error).__name__}: {lines[0] if lines else ''}"
    return None


@contextmanager
def recorded(engine: Engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", before)
