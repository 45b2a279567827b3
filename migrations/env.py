"""Alembic environment of the state tables.

Target: ``-x url=…``, else ``DPONE_STATE_URL``, else the embedded SQLite file (or an Engine
handed over in ``Config.attributes["connection"]``). Names: ``-x schema= -x xmin_table=
-x run_table= -x version_table=`` or ``DPONE_STATE_SCHEMA`` … (see ``dpone_state.migrate``).
Online, the upgrade runs under a database lock and creates the schema first (the version
table lives in it); offline (``--sql``, ``-x dialect=mssql`` needs no URL) the guarded schema
creation is the script's first statement.
"""

from __future__ import annotations

import time
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError

from dpone_state.ddl import (
    CreateSchemaIfMissing,
    create_schema_if_missing,
)
from dpone_state.dialects import find_dialect, safe_url
from dpone_state.engine import create_state_engine, default_url
from dpone_state.failures import is_lock_timeout, to_state_error
from dpone_state.locks import migration_lock
from dpone_state.migrate import SETTINGS_KEY, MigrationSettings
from dpone_state.migrations.support import RESOLVED_KEY, refuse_if_tables_hold_rows
from dpone_state.tables import build_tables, check_backend_names

#: Connection attempts of a migration that met a locked SQLite file while connecting.
_CONNECT_ATTEMPTS = 5
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
    for table in (tables.xmin, tables.run):  # names the backend would truncate or refuse
        check_backend_names(dialect, settings.schema_name, table)
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


def _check_before_changing(connection: Connection, settings: MigrationSettings) -> None:
    """Refuse a downgrade that would reach base while the tables hold rows *before* any
    revision runs: on MySQL/MariaDB (DDL commits itself) a refusal at ``0001`` would come
    after ``0002``'s downgrade had already changed the tables."""
    if settings.drop_data:
        return
    migration = context.get_context()
    steps_of = getattr(migration, "_migrations_fn", None)
    if steps_of is None:
        return
    steps = list(steps_of(migration.get_current_heads(), migration))
    if not any(
        step.is_downgrade and getattr(getattr(step, "revision", None), "revision", None) == "0001"
        for step in steps
    ):
        return
    tables = build_tables(
        settings.schema_name,
        settings.xmin_table,
        settings.run_table,
        dialect_name=connection.dialect.name,
    )
    refuse_if_tables_hold_rows(connection, [tables.xmin, tables.run])


def _migrate(connection: Connection) -> None:
    dialect = connection.dialect.name
    settings = requested.for_dialect(dialect)
    with migration_lock(connection, settings.lock_name):
        create_schema_if_missing(connection, settings.schema_name)
        if dialect == "sqlite":
            # The lock is an exclusive transaction on the file: the whole run happens in it
            # (SQLite's DDL is transactional), committed once at the end.
            _configure(settings, dialect, connection=connection, transactional_ddl=True)
            _check_before_changing(connection, settings)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
            return
        # Hand Alembic a connection outside a transaction, so it runs its own: the whole upgrade
        # in one transaction where DDL is transactional (PostgreSQL, SQL Server), else one per
        # revision, committed with its version-table update.
        connection.commit()
        _configure(settings, dialect, connection=connection)
        _check_before_changing(connection, settings)
        if connection.in_transaction():
            connection.commit()  # the check's reads: Alembic begins its own transaction
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
        connection = _connect(engine)
        with connection:
            _migrate(connection)
    finally:
        if given is None:
            engine.dispose()


def _connect(engine: Engine) -> Connection:
    """Connect; on SQLite a new file's first connection switches it to WAL, which waits for a
    migration holding the file's exclusive lock and may be refused: tried again (bounded)."""
    for attempt in range(_CONNECT_ATTEMPTS):
        try:
            return engine.connect()
        except DBAPIError as error:  # refused credentials are configuration, not retryable
            if attempt + 1 < _CONNECT_ATTEMPTS and is_lock_timeout(error, engine.dialect.name):
                time.sleep(0.2 * (attempt + 1))
                continue
            raise to_state_error(
                error,
                engine.dialect.name,
                where=safe_url(engine.url),
                table="the state tables",
                connecting=True,
            ) from None
    raise AssertionError("unreachable")  # pragma: no cover


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
