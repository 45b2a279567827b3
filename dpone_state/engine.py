"""Engines for state databases: a URL plus its backend's hooks (engine options, connect-time
setup), asked of the registry in ``dpone_state.dialects``."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import sqlalchemy
from sqlalchemy.engine import URL, Engine, make_url

from dpone_state.backends import PING_AFTER_IDLE_SECONDS, ping_when_idle, pings_when_idle
from dpone_state.dialects import (
    DEFAULT_URL,
    SUPPORTED_DIALECTS,
    by_dialect,
    find_dialect,
    safe_url,
)
from dpone_state.errors import BackendNotInstalledError

__all__ = [
    "DEFAULT_URL",
    "PING_AFTER_IDLE_SECONDS",
    "SUPPORTED_DIALECTS",
    "autocommit_switch",
    "create_state_engine",
    "default_url",
    "ping_when_idle",
    "pings_when_idle",
    "safe_url",
]


def default_url() -> str:
    """``DPONE_STATE_URL`` if set, else the embedded SQLite file."""
    return os.environ.get("DPONE_STATE_URL") or DEFAULT_URL


def autocommit_switch(engine: Engine) -> Callable[[Any, bool], None] | None:
    """How to put a DBAPI connection of ``engine`` in (and out of) autocommit for free, if the
    driver can; ``None`` where switching costs a round trip (PyMySQL, ODBC), and for an engine
    created with ``isolation_level="AUTOCOMMIT"`` (its connections are in autocommit for every
    user: a storage must not switch one out of it after its call)."""
    if engine.dialect._on_connect_isolation_level == "AUTOCOMMIT":
        return None
    return by_dialect(engine.dialect.name).autocommit_switch(engine.dialect.driver)


def create_state_engine(url: str | URL, **options: Any) -> Engine:
    """An Engine for ``url`` with the backend's options (idle ping, SQLite WAL, …) under ``options``.

    The driver is imported here, not when ``dpone_state`` is imported.
    """
    parsed = make_url(url)
    hooks = by_dialect(parsed.get_backend_name()).hooks()
    try:
        merged = {**hooks.engine_options(parsed), **options}
        engine = sqlalchemy.create_engine(hooks.engine_url(parsed), **merged)
    except ImportError as error:  # the driver (or the dialect's package) is not installed
        raise not_installed(parsed, error) from None
    hooks.prepare_engine(engine)
    return engine


def not_installed(url: URL, error: ImportError) -> BackendNotInstalledError:
    """The typed error for a URL whose driver module is missing, naming the extra to install
    (and, when the URL asks for a driver no extra installs, the URL form that works)."""
    backend = url.get_backend_name()
    row = find_dialect(backend)
    if row is None or row.extra is None:
        return BackendNotInstalledError(
            f"the driver of {safe_url(url)} ({error.name or error}) is not installed"
        )
    advice = f"pip install 'dpone-state[{row.extra}]'"
    driver: str | None = url.drivername.partition("+")[2] or None
    if driver is None:
        try:  # the dialect's default driver (psycopg under SQLAlchemy 2.1, psycopg2 under 2.0)
            driver = url.get_driver_name()
        except ImportError:  # the dialect itself lives in the missing package
            driver = None
    if driver is not None and driver not in row.extra_drivers:
        advice += (
            f", which installs {' or '.join(row.extra_drivers)}: use a URL "
            f"{backend}+{row.extra_drivers[0]}://… (this one asks for {driver})"
        )
    return BackendNotInstalledError(
        f"the {backend} driver for {safe_url(url)} ({error.name or error}) is not installed: "
        f"{advice}"
    )
