"""Provisioning through the packaged Alembic migrations, from Python (the CLI wraps this).

The migrations ship inside the package (``dpone_state/migrations``), so a pip install can
provision without a clone. Settings come from arguments here, or for the ``alembic`` command
from ``-x name=value`` options, else ``DPONE_STATE_*`` environment variables, else defaults.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from dpone_state.ddl import NO_SCHEMA_DIALECTS
from dpone_state.engine import create_state_engine, default_url
from dpone_state.errors import DowngradeRefusedError, InvalidIdentifierError
from dpone_state.tables import DEFAULT_RUN_TABLE, DEFAULT_SCHEMA, DEFAULT_XMIN_TABLE

__all__ = [
    "OFFLINE_DIALECTS",
    "SCRIPT_LOCATION",
    "VERSION_TABLE",
    "DowngradeRefusedError",
    "MigrationSettings",
    "alembic_config",
    "current",
    "downgrade",
    "offline_sql",
    "upgrade",
]

#: Alembic's version table for the state tables: in the state schema, and named so it cannot
#: collide with an application's own ``alembic_version``.
VERSION_TABLE = "dpone_state_alembic_version"
#: The packaged migration scripts (what ``script_location`` points at).
SCRIPT_LOCATION = str(Path(__file__).parent / "migrations")
#: Dialects whose offline (``--sql``) scripts are shipped under ``migrations/sql/``.
OFFLINE_DIALECTS = ("postgresql", "mssql")
#: Key of the settings in ``Config.attributes`` (read by ``migrations/env.py``).
SETTINGS_KEY = "dpone_state_settings"

_ENV_PREFIX = "DPONE_STATE_"
_IDENTIFIER_MAX = 128
_TRUE = frozenset({"1", "true", "yes", "on"})


def _identifier(field: str, value: str) -> str:
    if not value or value != value.strip() or "\x00" in value or len(value) > _IDENTIFIER_MAX:
        raise InvalidIdentifierError(
            field,
            f"{value!r} is not a usable name: use 1..{_IDENTIFIER_MAX} characters, no NUL, "
            "no edge spaces",
        )
    return value


@dataclass(frozen=True)
class MigrationSettings:
    """Where the migrations put the state tables.

    ``schema=""`` means the dialect's default: ``etl_state``, or none on SQLite.
    ``drop_data`` confirms a downgrade to base that would delete stored rows.
    """

    schema: str | None = ""
    xmin_table: str = DEFAULT_XMIN_TABLE
    run_table: str = DEFAULT_RUN_TABLE
    version_table: str = VERSION_TABLE
    drop_data: bool = False

    def __post_init__(self) -> None:
        if self.schema:
            _identifier("schema", self.schema)
        for field in ("xmin_table", "run_table", "version_table"):
            _identifier(field, getattr(self, field))

    def for_dialect(self, dialect_name: str) -> MigrationSettings:
        """The settings with the default schema resolved for ``dialect_name``."""
        if self.schema != "":
            return self
        return replace(self, schema=None if dialect_name in NO_SCHEMA_DIALECTS else DEFAULT_SCHEMA)

    @property
    def lock_name(self) -> str:
        """The name of the migration lock: one per version table."""
        return f"{self.schema or ''}.{self.version_table}"

    @classmethod
    def from_options(
        cls, x_args: Mapping[str, str], environ: Mapping[str, str] | None = None
    ) -> MigrationSettings:
        """From ``-x`` options, else ``DPONE_STATE_<NAME>`` variables, else the defaults.

        ``-x schema=none`` (or ``DPONE_STATE_SCHEMA=none``) means the connection's default
        schema.
        """
        env = os.environ if environ is None else environ
        unknown = set(x_args) - {"url", "dialect", "schema", *_FIELDS}
        if unknown:
            valid = ", ".join(sorted({"url", "dialect", "schema", *_FIELDS}))
            raise InvalidIdentifierError(
                "-x", f"unknown option(s) {', '.join(sorted(unknown))}; valid: {valid}"
            )

        def pick(name: str) -> str | None:
            value = x_args.get(name)
            return value if value is not None else env.get(_ENV_PREFIX + name.upper())

        schema = pick("schema")
        values: dict[str, Any] = {}
        if schema is not None:
            values["schema"] = None if schema.lower() == "none" else schema
        for name in ("xmin_table", "run_table", "version_table"):
            value = pick(name)
            if value is not None:
                values[name] = value
        drop = pick("drop_data")
        values["drop_data"] = drop is not None and drop.lower() in _TRUE
        return cls(**values)


_FIELDS = ("xmin_table", "run_table", "version_table", "drop_data")


def alembic_config(
    url: str | Engine | None = None,
    settings: MigrationSettings | None = None,
    *,
    dialect: str | None = None,
    output: io.StringIO | None = None,
) -> Config:
    """An Alembic ``Config`` for the packaged migrations, without an ini file.

    ``url`` may be an Engine (used as is) or a URL string; ``dialect`` alone is enough for
    offline (``--sql``) output.
    """
    config = Config(output_buffer=output, stdout=output or io.StringIO())
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes[SETTINGS_KEY] = settings or MigrationSettings()
    if isinstance(url, Engine):
        config.attributes["connection"] = url
    elif url is not None:
        config.attributes["url"] = url
    if dialect is not None:
        config.attributes["dialect"] = dialect
    return config


def _settings(
    schema: str | None, xmin_table: str, run_table: str, version_table: str, drop_data: bool
) -> MigrationSettings:
    return MigrationSettings(
        schema=schema,
        xmin_table=xmin_table,
        run_table=run_table,
        version_table=version_table,
        drop_data=drop_data,
    )


def upgrade(
    url: str | Engine | None = None,
    revision: str = "head",
    *,
    schema: str | None = "",
    xmin_table: str = DEFAULT_XMIN_TABLE,
    run_table: str = DEFAULT_RUN_TABLE,
    version_table: str = VERSION_TABLE,
) -> None:
    """Provision or adopt the state tables up to ``revision`` (under a database lock).

    ``url`` defaults to ``DPONE_STATE_URL``, else the embedded SQLite file; ``schema=""``
    means ``etl_state`` (none on SQLite).
    """
    settings = _settings(schema, xmin_table, run_table, version_table, False)
    command.upgrade(alembic_config(url or default_url(), settings), revision)


def downgrade(
    url: str | Engine | None = None,
    revision: str = "-1",
    *,
    schema: str | None = "",
    xmin_table: str = DEFAULT_XMIN_TABLE,
    run_table: str = DEFAULT_RUN_TABLE,
    version_table: str = VERSION_TABLE,
    drop_data: bool = False,
) -> None:
    """Downgrade to ``revision``; to ``base`` drops the tables, refused if they hold rows
    unless ``drop_data``."""
    settings = _settings(schema, xmin_table, run_table, version_table, drop_data)
    command.downgrade(alembic_config(url or default_url(), settings), revision)


def current(
    url: str | Engine | None = None,
    *,
    schema: str | None = "",
    version_table: str = VERSION_TABLE,
) -> str | None:
    """The revision the state tables are at, or ``None`` when not provisioned by migrations."""
    engine = url if isinstance(url, Engine) else create_state_engine(url or default_url())
    try:
        settings = MigrationSettings(schema=schema, version_table=version_table).for_dialect(
            engine.dialect.name
        )
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "version_table": settings.version_table,
                    "version_table_schema": settings.schema,
                },
            )
            return context.get_current_revision()
    finally:
        if not isinstance(url, Engine):
            engine.dispose()


def offline_sql(
    dialect: str,
    revision: str = "head",
    *,
    schema: str | None = "",
    xmin_table: str = DEFAULT_XMIN_TABLE,
    run_table: str = DEFAULT_RUN_TABLE,
    version_table: str = VERSION_TABLE,
) -> str:
    """The SQL script that upgrades an empty (or legacy) database to ``revision``, for a DBA.

    ``dialect`` is a SQLAlchemy dialect name (``postgresql``, ``mssql``, …); no connection is
    made.
    """
    settings = _settings(schema, xmin_table, run_table, version_table, False)
    buffer = io.StringIO()
    command.upgrade(
        alembic_config(settings=settings, dialect=dialect, output=buffer), revision, sql=True
    )
    script = buffer.getvalue()
    if dialect == "mssql":
        return MSSQL_UPGRADE_HEADER + harden_mssql_script(script, settings.version_table)
    return script


def offline_downgrade_sql(
    dialect: str,
    from_revision: str = "head",
    to_revision: str = "0001",
    *,
    schema: str | None = "",
    xmin_table: str = DEFAULT_XMIN_TABLE,
    run_table: str = DEFAULT_RUN_TABLE,
    version_table: str = VERSION_TABLE,
) -> str:
    """The SQL script that downgrades from ``from_revision`` to ``to_revision`` (default: back
    to dpone's legacy tables, rows kept; ``base`` drops the tables and their rows)."""
    settings = _settings(schema, xmin_table, run_table, version_table, False)
    buffer = io.StringIO()
    command.downgrade(
        alembic_config(settings=settings, dialect=dialect, output=buffer),
        f"{from_revision}:{to_revision}",
        sql=True,
    )
    script = buffer.getvalue()
    if dialect == "mssql":
        return MSSQL_DOWNGRADE_HEADER + harden_mssql_script(script, settings.version_table)
    return script


_MSSQL_HOW_TO_RUN = (
    "-- Run it with sqlcmd, which must stop at the first error (-b):\n"
    "--     sqlcmd -b -S SERVER -d DATABASE -i {name}\n"
    "-- (in SSMS: Query > SQLCMD Mode, and `:on error exit` as the first line). The script runs\n"
    "-- with XACT_ABORT ON in one transaction; if a batch fails, every later batch refuses to run\n"
    "-- (THROW on @@TRANCOUNT = 0), so a client that carries on after an error applies nothing\n"
    "-- more.\n"
)
#: The top of the shipped SQL Server upgrade script.
MSSQL_UPGRADE_HEADER = (
    "-- dpone-state: provision or adopt the state tables on SQL Server (offline upgrade).\n"
    + _MSSQL_HOW_TO_RUN.format(name="mssql.sql")
    + "-- Safe to run again, whole: every step is guarded, the version row is written once.\n\n"
)
#: The top of the shipped SQL Server downgrade script.
MSSQL_DOWNGRADE_HEADER = (
    "-- dpone-state: downgrade the state tables on SQL Server to dpone's legacy tables\n"
    "-- (drops revision, process_name and the retention index; the rows stay).\n"
    + _MSSQL_HOW_TO_RUN.format(name="mssql-downgrade.sql")
    + "-- Run it once, on a database at the head revision.\n\n"
)
_MSSQL_ABORTED = (
    "IF @@TRANCOUNT = 0 THROW 50000, N'dpone-state: an earlier batch failed and its transaction "
    "was rolled back, so this batch does not run. Fix the cause and run the whole script "
    "again.', 1;\n"
)


def _before_first_statement(batch: str, line: str) -> str:
    """``batch`` with ``line`` inserted before its first line that is not blank or a comment."""
    lines = batch.split("\n")
    for index, current in enumerate(lines):
        if current.strip() and not current.lstrip().startswith("--"):
            return "\n".join([*lines[:index], line.rstrip("\n"), *lines[index:]])
    return batch


def harden_mssql_script(script: str, version_table: str) -> str:
    """Make Alembic's T-SQL script safe to rerun and to fail: ``XACT_ABORT ON``; the version
    table created only where missing and its first row inserted only once; every batch after
    ``BEGIN TRANSACTION`` refuses to run once an earlier one failed (its transaction is gone).
    Each edit checks the text it changes, so a change in Alembic's output fails loudly."""
    batches = script.split("\nGO\n")
    out: list[str] = []
    in_transaction = False
    create = re.compile(rf"CREATE TABLE (\S*{re.escape(version_table)}\]?) \(.*?\n\);", re.DOTALL)
    insert = re.compile(
        rf"^INSERT INTO (\S*{re.escape(version_table)}\]?) \(version_num\) .*?;$", re.MULTILINE
    )
    for batch in batches:
        text = batch
        if "BEGIN TRANSACTION;" in text:
            found = create.search(text)
            if found is not None:
                target = "N'" + found.group(1).replace("'", "''") + "'"
                guarded = f"IF OBJECT_ID({target}, N'U') IS NULL\nBEGIN\n{found.group(0)}\nEND;"
                text = text.replace(found.group(0), guarded)
            text = text.replace("BEGIN TRANSACTION;", "SET XACT_ABORT ON;\nBEGIN TRANSACTION;")
            in_transaction = True
        elif in_transaction and text.strip():
            found = insert.search(text)
            if found is not None:
                guarded = (
                    f"IF NOT EXISTS (SELECT 1 FROM {found.group(1)})\nBEGIN\n{found.group(0)}\nEND;"
                )
                text = text.replace(found.group(0), guarded)
            text = _before_first_statement(text, _MSSQL_ABORTED)
        out.append(text)
    hardened = "\nGO\n".join(out)
    if not in_transaction or "SET XACT_ABORT ON;" not in hardened:
        raise AssertionError("unexpected shape of Alembic's SQL Server script")
    return hardened


def write_offline_scripts(directory: str | Path | None = None) -> list[Path]:
    """Regenerate the shipped offline scripts (``migrations/sql/<dialect>.sql``, and
    ``mssql-downgrade.sql``); their paths."""
    target = Path(directory) if directory is not None else Path(SCRIPT_LOCATION) / "sql"
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for dialect in OFFLINE_DIALECTS:
        path = target / f"{dialect}.sql"
        path.write_text(offline_sql(dialect), encoding="utf-8")
        written.append(path)
    path = target / "mssql-downgrade.sql"
    path.write_text(offline_downgrade_sql("mssql"), encoding="utf-8")
    written.append(path)
    return written
