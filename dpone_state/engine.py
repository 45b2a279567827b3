"""Engines for state databases: a URL plus its backend's hooks (engine options, connect-time
setup), asked of the registry in ``dpone_state.dialects``."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import sqlalchemy
from sqlalchemy.engine import URL, Engine, make_url

from dpone_state.backends import PING_AFTER_IDLE_SECONDS, ping_when_idle, pings_when_idle
from dpone_state.dialects import DEFAULT_URL, SUPPORTED_DIALECTS, by_dialect, safe_url

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
    driver can; ``None`` where switching costs a round trip (PyMySQL, ODBC)."""
    return by_dialect(engine.dialect.name).autocommit_switch(engine.dialect.driver)


def create_state_engine(url: str | URL, **options: Any) -> Engine:
    """An Engine for ``url`` with the backend's options (idle ping, SQLite WAL, …) under ``options``.

    The driver is imported here, not when ``dpone_state`` is imported.
    """
    parsed = make_url(url)
    hooks = by_dialect(parsed.get_backend_name()).hooks()
    merged = {**hooks.engine_options(parsed), **options}
    engine = sqlalchemy.create_engine(hooks.engine_url(parsed), **merged)
    hooks.prepare_engine(engine)
    return engine
