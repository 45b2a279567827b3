"""Provisioning through the packaged Alembic migrations, from Python (the CLI wraps this).

The migrations ship inside the package (``dpone_state.migrations``, from the top-level
``migrations/``), so a pip install can provision without a clone. Settings come from arguments
here, or for the ``alembic`` command from ``-x name=value`` options,
else ``DPONE_STATE_*`` environment variables, else defaults.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib import import_module as _import_module
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError

from dpone_state.dialects import (
    DEFAULT,
    DEFAULT_SCHEMA,
    SHIPPED_OFFLINE_DIALECTS,
    DefaultSchema,
    SchemaOption,
    find_dialect,
    safe_url,
)
from dpone_state.engine import create_state_engine, default_url
from dpone_state.errors import DowngradeRefusedError, InvalidIdentifierError, StateError
from dpone_state.failures import to_state_error
from dpone_state.locks import VERSION_TABLE as _VERSION_TABLE
from dpone_state.locks import provisioning_lock_name
from dpone_state.models import check_identifier
from dpone_state.tables import DEFAULT_RUN_TABLE, DEFAULT_XMIN_TABLE

__all__ = [
    "OFFLINE_DIALECTS",
    "SCRIPT_LOCATION",
    "VERSION_TABLE",
    "DowngradeRefusedError",
    "MigrationSettings",
    "Revision",
    "alembic_config",
    "current",
    "downgrade",
    "head_revision",
    "is_known_revision",
    "offline_sql",
    "revisions",
    "upgrade",
]

#: Alembic's version table for the state tables: in the state schema, and named so it cannot
#: collide with an application's own ``alembic_version``.
VERSION_TABLE = _VERSION_TABLE
#: The packaged migration scripts (what ``script_location`` points at).
SCRIPT_LOCATION = str(Path(_import_module("dpone_state.migrations").__file__ or "").parent)
#: Dialects whose offline (``--sql``) scripts are shipped under ``migrations/sql/``.
OFFLINE_DIALECTS = SHIPPED_OFFLINE_DIALECTS
#: Key of the settings in ``Config.attributes`` (read by ``migrations/env.py``).
SETTINGS_KEY = "dpone_state_settings"

_ENV_PREFIX = "DPONE_STATE_"
_TRUE = frozenset({"1", "true", "yes", "on"})


@dataclass(frozen=True)
class MigrationSettings:
    """Where the migrations put the state tables.

    ``schema`` follows the one convention (``dpone_state.dialects.DEFAULT``): ``DEFAULT`` is
    the dialect's default (``etl_state``, none on SQLite), ``None`` no schema; ``""`` is read
    as ``DEFAULT`` too.
    ``drop_data`` confirms a downgrade to base that would delete stored rows.
    """

    schema: SchemaOption = DEFAULT
    xmin_table: str = DEFAULT_XMIN_TABLE
    run_table: str = DEFAULT_RUN_TABLE
    version_table: str = VERSION_TABLE
    drop_data: bool = False

    def __post_init__(self) -> None:
        if self.schema == "":
            object.__setattr__(self, "schema", DEFAULT)
        if isinstance(self.schema, str):
            check_identifier("schema", self.schema)
        for field in ("xmin_table", "run_table", "version_table"):
            check_identifier(field, getattr(self, field))

    def for_dialect(self, dialect_name: str) -> MigrationSettings:
        """The settings with the default schema resolved for ``dialect_name``."""
        row = find_dialect(dialect_name)
        if not isinstance(self.schema, DefaultSchema):
            return self
        return replace(self, schema=row.default_schema() if row is not None else DEFAULT_SCHEMA)

    @property
    def schema_name(self) -> str | None:
        """The schema once ``for_dialect`` resolved ``DEFAULT`` (``None``: no schema)."""
        if isinstance(self.schema, DefaultSchema):
            raise ValueError("the default schema is resolved per dialect: call for_dialect()")
        return self.schema

    @property
    def lock_name(self) -> str:
        """The name of the migration lock: one per version table."""
        return provisioning_lock_name(self.schema_name, self.version_table)

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
    schema: SchemaOption,
    xmin_table: str | None,
    run_table: str | None,
    version_table: str | None,
    *,
    drop_data: bool,
    environ: Mapping[str, str] | None,
) -> MigrationSettings:
    """The arguments; where one is left out (``DEFAULT`` schema, ``None`` names), the
    ``DPONE_STATE_*`` variable the ``alembic`` command and ``dpone-state`` read, else the
    default. ``drop_data`` is never taken from the environment here."""
    env = MigrationSettings.from_options({}, environ)
    return MigrationSettings(
        schema=env.schema if isinstance(schema, DefaultSchema) else schema,
        xmin_table=xmin_table or env.xmin_table,
        run_table=run_table or env.run_table,
        version_table=version_table or env.version_table,
        drop_data=drop_data,
    )


@contextmanager
def _typed_errors(
    url: str | Engine | None, table: str = VERSION_TABLE, *, connecting: bool = False
) -> Iterator[None]:
    """Database errors of a migration leave as ``StateError``s, as the storages' do."""
    try:
        yield
    except StateError:
        raise
    except DBAPIError as error:
        where = url.url if isinstance(url, Engine) else make_url(url or default_url())
        raise to_state_error(
            error,
            where.get_backend_name(),
            where=safe_url(where),
            table=table,
            connecting=connecting,
        ) from error


def upgrade(
    url: str | Engine | None = None,
    revision: str = "head",
    *,
    schema: SchemaOption = DEFAULT,
    xmin_table: str | None = None,
    run_table: str | None = None,
    version_table: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Provision or adopt the state tables up to ``revision`` (under a database lock).

    ``url`` defaults to ``DPONE_STATE_URL``, else the embedded SQLite file. A name left out
    comes from ``DPONE_STATE_SCHEMA`` / ``_XMIN_TABLE`` / ``_RUN_TABLE`` / ``_VERSION_TABLE``
    (``environ``, default ``os.environ``) as for ``alembic`` and ``dpone-state``, else the
    default: ``schema`` ``DEFAULT`` is ``etl_state`` (none on SQLite), ``None`` no schema.
    """
    settings = _settings(
        schema, xmin_table, run_table, version_table, drop_data=False, environ=environ
    )
    with _typed_errors(url):
        command.upgrade(alembic_config(url or default_url(), settings), revision)


def downgrade(
    url: str | Engine | None = None,
    revision: str = "-1",
    *,
    schema: SchemaOption = DEFAULT,
    xmin_table: str | None = None,
    run_table: str | None = None,
    version_table: str | None = None,
    drop_data: bool = False,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Downgrade to ``revision``; to ``base`` drops the tables, refused if they hold rows
    unless ``drop_data``. Names left out are read as ``upgrade`` reads them."""
    settings = _settings(
        schema, xmin_table, run_table, version_table, drop_data=drop_data, environ=environ
    )
    with _typed_errors(url):
        command.downgrade(alembic_config(url or default_url(), settings), revision)


def current(
    url: str | Engine | None = None,
    *,
    schema: SchemaOption = DEFAULT,
    version_table: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """The revision the state tables are at, or ``None`` when not provisioned by migrations
    (names left out are read as ``upgrade`` reads them)."""
    engine = url if isinstance(url, Engine) else create_state_engine(url or default_url())
    try:
        settings = _settings(
            schema, None, None, version_table, drop_data=False, environ=environ
        ).for_dialect(engine.dialect.name)
        with _typed_errors(engine, connecting=True):
            conn = engine.connect()
        with _typed_errors(engine, settings.version_table), conn:
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
    schema: SchemaOption = DEFAULT,
    xmin_table: str | None = None,
    run_table: str | None = None,
    version_table: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The SQL script that upgrades an empty (or legacy) database to ``revision``, for a DBA.

    ``dialect`` is a SQLAlchemy dialect name (``postgresql``, ``mssql``, …); no connection is
    made. Names left out are read as ``upgrade`` reads them.
    """
    settings = _settings(
        schema, xmin_table, run_table, version_table, drop_data=False, environ=environ
    )
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
    settings = _settings(schema, xmin_table, run_table, version_table, drop_data=False, environ={})
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
        path.write_text(offline_sql(dialect, environ={}), encoding="utf-8")  # the defaults
        written.append(path)
    path = target / "mssql-downgrade.sql"
    path.write_text(offline_downgrade_sql("mssql"), encoding="utf-8")
    written.append(path)
    return written


# --------------------------------------------------------------------------- history
# The packaged scripts' revisions (head, known ids, the chain) without a database, for
# ``dpone-state history`` and ``doctor``.


@dataclass(frozen=True)
class Revision:
    """One migration script: its id, its parent, its message and whether it is the head."""

    revision: str
    down_revision: str | None
    message: str
    is_head: bool


def _scripts() -> ScriptDirectory:
    return ScriptDirectory(SCRIPT_LOCATION)


def head_revision() -> str | None:
    """The newest revision of the packaged migrations."""
    return _scripts().get_current_head()


def is_known_revision(revision: str) -> bool:
    """Whether ``revision`` is one of the packaged migrations (else a newer package wrote it)."""
    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:
        return False


def revisions() -> list[Revision]:
    """Every packaged revision, newest first."""
    scripts = _scripts()
    heads = set(scripts.get_heads())
    result = []
    for script in scripts.walk_revisions():
        down = script.down_revision
        result.append(
            Revision(
                revision=script.revision,
                down_revision=down if isinstance(down, str) or down is None else ",".join(down),
                message=(script.doc or "").strip(),
                is_head=script.revision in heads,
            )
        )
    return result
