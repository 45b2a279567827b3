"""Alembic environment of the state tables.

Target: ``-x url=…``, else ``DPONE_STATE_URL``, else the embedded SQLite file (or an Engine
handed over in ``Config.attributes["connection"]``). Names: ``-x schema= -x xmin_table=
-x run_table= -x version_table=`` or ``DPONE_STATE_SCHEMA`` … (see ``dpone_state.migrate``).
Online, the upgrade runs under a database lock and creates the schema first (the version
table lives in it); offline (``--sql``, ``-x dialect=mssql`` needs no URL) the guarded schema
creation is the script's first statement.
"""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import Identity, Sequence
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError

from dpone_state.ddl import NO_SCHEMA_DIALECTS, CreateSchemaIfMissing, create_schema_if_missing
from dpone_state.engine import create_state_engine, default_url, safe_url
from dpone_state.errors import StateUnavailableError
from dpone_state.locks import migration_lock
from dpone_state.migrate import SETTINGS_KEY, MigrationSettings
from dpone_state.migrations.support import RESOLVED_KEY
from dpone_state.tables import build_tables

config = context.config
if config.config_file_name is not None:  # the alembic command: logging as alembic.ini says
    fileConfig(config.config_file_name, disable_existing_loggers=False)

x_args: dict[str, str] = context.get_x_argument(as_dictionary=True)
requested: MigrationSettings = config.attributes.get(
    SETTINGS_KEY
) or MigrationSettings.from_options(x_args)


def _url() -> str:
    return str(config.attributes.get("url") or x_args.get("url") or default_url())


def _is_identity(default: Any, rendered: str | None) -> bool:
    """An identity column, or the legacy ``bigserial`` (a ``nextval(...)`` default) it replaced."""
    if isinstance(default, (Identity, Sequence)):
        return True
    return rendered is not None and rendered.strip().lower().startswith("nextval(")


def _compare_server_default(
    context_: Any,
    inspected_column: Any,
    metadata_column: Any,
    inspected_default: str | None,
    metadata_default: Any,
    rendered_metadata_default: str | None,
) -> bool:
    """A difference only where one side has a default and the other has none.

    The text of a reflected default differs from the model's spelling on every dialect
    (``(now() AT TIME ZONE 'utc'::text)``, ``'0'``, …), so only presence is compared; the
    legacy ``bigserial`` id counts as the model's identity (both number inserted rows).
    """
    inspected = inspected_column.server_default
    if _is_identity(metadata_default, None) or _is_identity(inspected, inspected_default):
        return not (
            _is_identity(metadata_default, None) and _is_identity(inspected, inspected_default)
        )
    return (inspected is None) != (metadata_default is None)


def _configure(settings: MigrationSettings, dialect: str, **options: Any) -> None:
    config.attributes[RESOLVED_KEY] = settings
    tables = build_tables(
        settings.schema, settings.xmin_table, settings.run_table, dialect_name=dialect
    )
    ours = {settings.xmin_table, settings.run_table}

    def include_name(name: str | None, type_: str, parent_names: dict[str, Any]) -> bool:
        if type_ == "schema":
            return name == settings.schema
        if type_ == "table":
            return name in ours and parent_names.get("schema_name") == settings.schema
        return True

    context.configure(
        target_metadata=tables.metadata,
        version_table=settings.version_table,
        version_table_schema=settings.schema,
        include_schemas=True,
        include_name=include_name,
        compare_type=True,
        compare_server_default=_compare_server_default,
        **options,
    )


def run_migrations_offline() -> None:
    """Write the SQL script instead of running it (``alembic upgrade head --sql``)."""
    dialect = str(
        config.attributes.get("dialect")
        or x_args.get("dialect")
        or make_url(_url()).get_backend_name()
    )
    settings = requested.for_dialect(dialect)
    _configure(settings, dialect, dialect_name=dialect, literal_binds=True)
    if settings.schema is not None and dialect not in NO_SCHEMA_DIALECTS:
        context.execute(CreateSchemaIfMissing(settings.schema))
    with context.begin_transaction():
        context.run_migrations()


def _migrate(connection: Connection) -> None:
    dialect = connection.dialect.name
    settings = requested.for_dialect(dialect)
    with migration_lock(connection, settings.lock_name):
        create_schema_if_missing(connection, settings.schema)
        _configure(settings, dialect, connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        if connection.in_transaction():
            connection.commit()


def run_migrations_online() -> None:
    """Migrate the database itself, under the migration lock."""
    given = config.attributes.get("connection")
    if isinstance(given, Connection):
        _migrate(given)
        return
    engine: Engine = given if isinstance(given, Engine) else create_state_engine(_url())
    try:
        try:
            connection = engine.connect()
        except DBAPIError as error:
            raise StateUnavailableError(
                f"cannot connect to the state database {safe_url(engine.url)}: "
                f"{type(error.orig).__name__}"
            ) from None
        with connection:
            _migrate(connection)
    finally:
        if given is None:
            engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
