"""Provisioning through the packaged Alembic migrations, from Python (the CLI wraps this).

The migrations ship inside the package (``dpone_state.migrations``, from the top-level
``migrations/``), so a pip install can provision without a clone. Settings come from arguments
here, or for the ``alembic`` command from ``-x name=value`` options,
else ``DPONE_STATE_*`` environment variables, else defaults.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import import_module as _import_module
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Engine

from dpone_state.dialects import (
    DEFAULT,
    DEFAULT_SCHEMA,
    SHIPPED_OFFLINE_DIALECTS,
    DefaultSchema,
    SchemaOption,
    find_dialect,
)
from dpone_state.engine import create_state_engine, default_url
from dpone_state.errors import DowngradeRefusedError, InvalidIdentifierError
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
VERSION_TABLE = "dpone_state_alembic_version"
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
        return f"{self.schema_name or ''}.{self.version_table}"

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
    schema: SchemaOption, xmin_table: str, run_table: str, version_table: str, drop_data: bool
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
    schema: SchemaOption = DEFAULT,
    xmin_table: str = DEFAULT_XMIN_TABLE,
    run_table: str = DEFAULT_RUN_TABLE,
    version_table: str = VERSION_TABLE,
) -> None:
    """Provision or adopt the state tables up to ``revision`` (under a database lock).

    ``url`` defaults to ``DPONE_STATE_URL``, else the embedded SQLite file; ``schema``
    ``DEFAULT`` means ``etl_state`` (none on SQLite), ``None`` no schema.
    """
    settings = _settings(schema, xmin_table, run_table, version_table, False)
    command.upgrade(alembic_config(url or default_url(), settings), revision)


def downgrade(
    url: str | Engine | None = None,
    revision: str = "-1",
    *,
    schema: SchemaOption = DEFAULT,
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
    schema: SchemaOption = DEFAULT,
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
    schema: SchemaOption = DEFAULT,
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
    return buffer.getvalue()


def write_offline_scripts(directory: str | Path | None = None) -> list[Path]:
    """Regenerate the shipped offline scripts (``migrations/sql/<dialect>.sql``); their paths."""
    target = Path(directory) if directory is not None else Path(SCRIPT_LOCATION) / "sql"
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for dialect in OFFLINE_DIALECTS:
        path = target / f"{dialect}.sql"
        path.write_text(offline_sql(dialect), encoding="utf-8")
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
