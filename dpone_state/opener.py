"""The door from configuration to state: settings, then one engine, then both storages."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Literal

from sqlalchemy.engine import Engine

from dpone_state.config import (
    SinkConnection,
    StateConfig,
    StateSettings,
    load_state_settings,
    read_state_document,
    state_block_of,
)
from dpone_state.connections import resolve_connection
from dpone_state.dialects import StateType, by_state_type
from dpone_state.dpone_keys import disabled_state_type
from dpone_state.engine import create_state_engine, safe_url
from dpone_state.errors import BackendNotInstalledError
from dpone_state.storage import RunStateStorage, XMinStateStorage

__all__ = ["DisabledState", "StateStores", "open_engine", "open_state", "open_stores"]

log = logging.getLogger("dpone_state")


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

    @property
    def url(self) -> str:
        """The engine's URL with its password masked."""
        return safe_url(self.engine.url)

    @property
    def schema(self) -> str | None:
        """The one schema of both tables (settings keep them together, as the migrations do)."""
        return self.xmin.schema

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


def _not_installed(state_type: StateType, error: ModuleNotFoundError) -> BackendNotInstalledError:
    if (error.name or "").startswith("dpone_state"):
        what = f"dpone-state's {state_type} backend ({error.name}) is missing in this version"
    else:
        extra = by_state_type(state_type).extra or state_type
        what = f"its driver ({error.name}) is missing: pip install 'dpone-state[{extra}]'"
    return BackendNotInstalledError(f"state.type {state_type}: {what}")


def open_engine(settings: StateSettings, environ: Mapping[str, str] | None = None) -> Engine:
    """The engine the settings name (their connection resolved; BigQuery's too), with the
    backend's hooks; a missing driver is ``BackendNotInstalledError`` naming the pip extra."""
    connection = resolve_connection(settings, os.environ if environ is None else environ)
    url = connection.url
    if settings.database is not None:  # dpone's state.table.database (SQL Server)
        url = url.set(database=settings.database)
    try:
        engine = create_state_engine(url)
    except ModuleNotFoundError as error:
        raise _not_installed(settings.type, error) from None
    log.info(
        "state: %s via %s (%s)%s",
        settings.type,
        connection.origin,
        safe_url(engine.url),
        " reusing the sink's connection" if settings.connection_from_sink else "",
    )
    return engine


def open_stores(settings: StateSettings, environ: Mapping[str, str] | None = None) -> StateStores:
    """The one door from validated settings to state: one engine and both storages.

    A manifest (``open_state``), a URL (``settings_from_url``) and the command line all come
    here. No table is created, unless dpone's ``provisioning: runtime`` asks (then once, here).
    """
    engine = open_engine(settings, environ)
    try:
        xmin = XMinStateStorage(engine, schema=settings.table.schema, table=settings.table.name)
        runs = RunStateStorage(
            engine, schema=settings.run_table.schema, table=settings.run_table.name
        )
    except BaseException:
        engine.dispose()
        raise
    log.info("state tables %s and %s", xmin.qualified_name, runs.qualified_name)
    stores = StateStores(settings=settings, engine=engine, xmin=xmin, runs=runs)
    if settings.provisioning == "runtime":  # dpone's default: tables made by the runtime
        try:
            stores.create_tables()
        except BaseException:
            engine.dispose()
            raise
    return stores


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
    return open_stores(load_state_settings(config, sink=sink), environ)
