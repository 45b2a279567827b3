"""Engines for state databases: a URL plus each backend's engine options, and safe URL display."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any, Protocol, cast

import sqlalchemy
from sqlalchemy.engine import URL, Engine, make_url

from dpone_state.errors import UnsupportedBackendError

__all__ = [
    "DEFAULT_URL",
    "SUPPORTED_DIALECTS",
    "create_state_engine",
    "default_url",
    "safe_url",
]

#: The embedded default: an SQLite file in the working directory.
DEFAULT_URL = "sqlite:///dpone_state.db"

#: SQLAlchemy dialect name -> the dpone_state module that holds that backend's options.
_BACKEND_MODULES: dict[str, str] = {
    "sqlite": "dpone_state.sqlite",
    "postgresql": "dpone_state.postgres",
    "mysql": "dpone_state.mysql",
    "mariadb": "dpone_state.mysql",
    "mssql": "dpone_state.mssql",
    "bigquery": "dpone_state.bigquery",
}
SUPPORTED_DIALECTS = frozenset(_BACKEND_MODULES)


class _Backend(Protocol):
    def engine_options(self, url: URL) -> dict[str, Any]: ...

    def prepare_engine(self, engine: Engine) -> None: ...


def default_url() -> str:
    """``DPONE_STATE_URL`` if set, else the embedded SQLite file."""
    return os.environ.get("DPONE_STATE_URL") or DEFAULT_URL


def safe_url(url: str | URL) -> str:
    """The URL with its password masked, for logs and messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL may itself contain a secret
        return "<unparsable URL>"


def backend_module(dialect_name: str) -> _Backend:
    """The module with a dialect's engine options; unknown dialects get a typed error."""
    try:
        module_name = _BACKEND_MODULES[dialect_name]
    except KeyError:
        valid = ", ".join(sorted(SUPPORTED_DIALECTS))
        raise UnsupportedBackendError(
            f"dialect {dialect_name!r} is not supported by dpone-state; use one of: {valid}"
        ) from None
    return cast(_Backend, importlib.import_module(module_name))


def create_state_engine(url: str | URL, **options: Any) -> Engine:
    """An Engine for ``url`` with the backend's options (pre-ping, SQLite WAL, …) under ``options``.

    The driver is imported here, not when ``dpone_state`` is imported.
    """
    parsed = make_url(url)
    backend = backend_module(parsed.get_backend_name())
    merged = {**backend.engine_options(parsed), **options}
    # Optional hook: a backend may hand the dialect another URL (BigQuery moves the
    # credentials out of it into the client that ``engine_options`` built).
    engine_url: Callable[[URL], URL] | None = getattr(backend, "engine_url", None)
    engine = sqlalchemy.create_engine(engine_url(parsed) if engine_url else parsed, **merged)
    backend.prepare_engine(engine)
    return engine
