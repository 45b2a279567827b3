"""Provisioning through the packaged Alembic migrations, from Python (the CLI wraps this).

The migrations ship inside the package (``dpone_state/migrations``), so a pip install can
provision without a clone. Settings come from arguments here, or for the ``alembic`` command
from ``-x name=value`` options, else ``DPONE_STATE_*`` environment variables, else defaults.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError

from dpone_state.ddl import NO_SCHEMA_DIALECTS
from dpone_state.engine import create_state_engine, default_url, safe_url
from dpone_state.errors import DowngradeRefusedError, InvalidIdentifierError, StateError
from dpone_state.failures import to_state_error
from dpone_state.locks import VERSION_TABLE as _VERSION_TABLE
from dpone_state.locks import provisioning_lock_name
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
VERSION_TABLE = _VERSION_TABLE
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
        return provisioning_lock_name(self.schema, self.version_table)

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
    with _typed_errors(url):
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
    with _typed_errors(url):
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
