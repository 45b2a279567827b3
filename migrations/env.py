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
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError

from dpone_state.ddl import (
    CreateSchemaIfMissing,
    create_schema_if_missing,
    install_alembic_hooks,
)
from dpone_state.dialects import find_dialect, safe_url
from dpone_state.engine import create_state_engine, default_url
from dpone_state.errors import StateUnavailableError
from dpone_state.locks import migration_lock
from dpone_state.migrate import SETTINGS_KEY, MigrationSettings
from dpone_state.migrations.support import RESOLVED_KEY
from dpone_state.tables import build_tables

install_alembic_hooks()  # named DEFAULT constraints in ADD COLUMN on SQL Server
config = context.config
if config.config_file_name is not None:  # the alembic command: logging as alembic.ini says
    fileConfig(config.config_file_name, disable_existing_loggers=False)

x_args: dict[str, str] = context.get_x_argument(as_dictionary=True)
requested: MigrationSettings = config.attributes.get(
    SETTINGS_KEY
) or MigrationSettings.from_options(x_args)


def _has_schemas(dialect: str) -> bool:
    row = find_dialect(dialect)
    return row is None or row.has_schemas


def _url() -> str:
    return str(config.attributes.get("url") or x_args.get("url") or default_url())


def _configure(settings: MigrationSettings, dialect: str, **options: Any) -> None:
    config.attributes[RESOLVED_KEY] = settings
    tables = build_tables(
        settings.schema_name, settings.xmin_table, settings.run_table, dialect_name=dialect
    )
    ours = {settings.xmin_table, settings.run_table}

    def include_name(name: str | None, type_: Any, parent_names: Any) -> bool:
        if type_ == "schema":
            return name == settings.schema_name
        if type_ == "table":
            return name in ours and parent_names.get("schema_name") == settings.schema_name
        return True

    context.configure(
        target_metadata=tables.metadata,
        version_table=settings.version_table,
        version_table_schema=settings.schema_name,
        include_schemas=True,
        include_name=include_name,
        compare_type=True,
        # Defaults are not compared: reflected default text differs from the model's spelling
        # on every dialect, and Alembic cannot run a custom comparison on identity columns.
        # tests/test_migrations.py checks which columns have a default instead.
        compare_server_default=False,
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
    if settings.schema_name is not None and _has_schemas(dialect):
        context.execute(CreateSchemaIfMissing(settings.schema_name))
    with context.begin_transaction():
        context.run_migrations()


def _migrate(connection: Connection) -> None:
    dialect = connection.dialect.name
    settings = requested.for_dialect(dialect)
    with migration_lock(connection, settings.lock_name):
        create_schema_if_missing(connection, settings.schema_name)
        # Hand Alembic a connection outside a transaction, so it runs its own: the whole upgrade
        # in one transaction where DDL is transactional (PostgreSQL, SQL Server), else one per
        # revision, committed with its version-table update.
        connection.commit()
        _configure(settings, dialect, connection=connection)
        with context.begin_transaction():
            context.run_migrations()


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
