"""``open_state``: the one entry point from a manifest's ``state:`` block to working storages."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Final, Literal

from sqlalchemy.engine import Engine

from dpone_state.config import (
    SinkConnection,
    StateConfig,
    StateSettings,
    load_state_settings,
    read_state_document,
    state_block_of,
)
from dpone_state.connections import BigQueryConnection, ResolvedConnection, resolve_connection
from dpone_state.dpone_keys import disabled_state_type
from dpone_state.engine import create_state_engine, safe_url
from dpone_state.errors import BackendNotInstalledError
from dpone_state.storage import DEFAULT, RunStateStorage, XMinStateStorage

__all__ = ["DisabledState", "StateStores", "create_connection_engine", "open_state"]

log = logging.getLogger("dpone_state")

#: The pip extra that installs each backend's driver.
_EXTRAS: Final = {
    "postgres": "postgres",
    "mysql": "mysql",
    "mssql": "mssql",
    "bigquery": "bigquery",
}


@dataclass(frozen=True)
class StateStores:
    """The configured backend's two storages on one engine; ``close()`` disposes the engine."""

    settings: StateSettings
    engine: Engine
    xmin: XMinStateStorage
    runs: RunStateStorage
    #: A store is open (``DisabledState.enabled`` is False): the check a runtime makes;
    #: ``if not stores.enabled: …`` also narrows the type for mypy.
    enabled: ClassVar[Literal[True]] = True

    def create_tables(self) -> None:
        """Provision both tables (an explicit step; production uses the migrations)."""
        self.xmin.create_tables()
        self.runs.create_tables()

    def close(self) -> None:
        """Dispose the engine's connection pool."""
        self.engine.dispose()

    def __enter__(self) -> StateStores:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True)
class DisabledState:
    """``state.type: disabled | noop | none | off``: the runtime keeps no state.

    What ``open_state`` returns for such a block (dpone's bootstrap has ``state_type
    'disabled'`` and no storages): nothing was connected; ``enabled`` is False.
    """

    type: str
    enabled: ClassVar[Literal[False]] = False

    def close(self) -> None:
        """Nothing to close."""

    def __enter__(self) -> DisabledState:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _not_installed(state_type: str, error: ModuleNotFoundError) -> BackendNotInstalledError:
    if (error.name or "").startswith("dpone_state"):
        what = f"dpone-state's {state_type} backend ({error.name}) is missing in this version"
    else:
        extra = _EXTRAS.get(state_type, state_type)
        what = f"its driver ({error.name}) is missing: pip install 'dpone-state[{extra}]'"
    return BackendNotInstalledError(f"state.type {state_type}: {what}")


def _bigquery_engine(target: BigQueryConnection) -> Engine:
    try:
        module = importlib.import_module("dpone_state.bigquery")
    except ModuleNotFoundError as error:
        raise _not_installed("bigquery", error) from None
    factory: Any = getattr(module, "create_bigquery_engine", None)
    if factory is None:
        raise BackendNotInstalledError(
            "state.type bigquery: BigQuery support is not installed "
            "(dpone_state.bigquery.create_bigquery_engine is missing in this version)"
        )
    try:
        credentials = (
            dict(target.credentials_info)
            if target.credentials_info is not None
            else target.credentials_path
        )
        # The dataset is the storages' schema (settings), not part of the engine.
        engine: Engine = factory(target.project, credentials=credentials, location=target.location)
    except ModuleNotFoundError as error:
        raise _not_installed("bigquery", error) from None
    return engine


def create_connection_engine(settings: StateSettings, connection: ResolvedConnection) -> Engine:
    """The engine for a resolved connection, with the backend's engine options."""
    if connection.bigquery is not None:
        return _bigquery_engine(connection.bigquery)
    assert connection.url is not None
    url = connection.url
    if settings.database is not None:  # dpone's state.table.database (SQL Server)
        url = url.set(database=settings.database)
    try:
        return create_state_engine(url)
    except ModuleNotFoundError as error:
        raise _not_installed(settings.type, error) from None


def open_state(
    config: StateConfig,
    *,
    sink: Mapping[str, Any] | SinkConnection | None = None,
    environ: Mapping[str, str] | None = None,
) -> StateStores | DisabledState:
    """Open the state a manifest's ``state:`` block configures: its engine and two storages.

    ``config`` is YAML text, a file path, a dict (the block or a whole manifest) or settings;
    ``sink`` is the manifest's ``sink:`` block (for sink reuse); ``environ`` defaults to
    ``os.environ`` (``VAULT_ADDR``, ``VAULT_TOKEN``, ``DPONE_CONN_<ID>``, ``AIRFLOW_CONN_<ID>``).
    No table is created, unless dpone's ``provisioning: runtime`` asks (then once, here).
    ``type: disabled`` (``noop``, ``none``, ``off``) gives a ``DisabledState``: check
    ``.enabled``; nothing connects.
    """
    if not isinstance(config, StateSettings):
        config = read_state_document(config)  # read once
        disabled = disabled_state_type(state_block_of(config))
        if disabled is not None:
            log.info("state: %s; the runtime keeps no state", disabled)
            return DisabledState(disabled)
    settings = load_state_settings(config, sink=sink)
    connection = resolve_connection(settings, os.environ if environ is None else environ)
    engine = create_connection_engine(settings, connection)
    try:
        xmin = XMinStateStorage(
            engine,
            schema=DEFAULT if settings.table.schema is None else settings.table.schema,
            table=settings.table.name,
        )
        runs = RunStateStorage(
            engine,
            schema=DEFAULT if settings.run_table.schema is None else settings.run_table.schema,
            table=settings.run_table.name,
        )
    except BaseException:
        engine.dispose()
        raise
    log.info(
        "state: %s via %s (%s)%s; tables %s and %s",
        settings.type,
        connection.origin,
        safe_url(engine.url),
        " reusing the sink's connection" if settings.connection_from_sink else "",
        xmin.qualified_name,
        runs.qualified_name,
    )
    stores = StateStores(settings=settings, engine=engine, xmin=xmin, runs=runs)
    if settings.provisioning == "runtime":  # dpone's default: tables made by the runtime
        try:
            stores.create_tables()
        except BaseException:
            engine.dispose()
            raise
    return stores
