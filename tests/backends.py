"""The backends the behaviour suite runs on, how to reach them, and how to isolate a test run.

Each backend is reachable through an environment variable (with a default for the servers
of this machine). Under ``CI=true`` a backend marked required that cannot be reached fails the
run; elsewhere it is skipped with a reason that says how to enable it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dpone_state import create_state_engine

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


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
