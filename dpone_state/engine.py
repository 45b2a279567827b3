"""Engines for state databases: a URL plus each backend's engine options, and safe URL display."""

from __future__ import annotations

import importlib
import os
import re
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol, cast

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import DisconnectionError

from dpone_state.errors import BackendNotInstalledError, UnsupportedBackendError

__all__ = [
    "DEFAULT_URL",
    "SUPPORTED_DIALECTS",
    "autocommit_switch",
    "create_state_engine",
    "default_url",
    "ping_when_idle",
    "pings_when_idle",
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


#: Query parameters whose values are secrets (matched in their lower-cased name): passwords
#: (``password``, ``sslpassword``, ``pwd``, ODBC ``PWD``), tokens, keys, credentials.
_SECRET_QUERY_NAME = re.compile(
    r"pass|pwd|secret|token|credential|key|auth|signature|private|session|odbc_connect",
    re.IGNORECASE,
)
_MASK = "***"


def safe_url(url: str | URL) -> str:
    """The URL for logs, messages and reprs: the password field masked, and the value of every
    query parameter whose name is secret-like (``password``, ``sslpassword``, ``token``, …).

    Works on the URL's fields, never on free text (a password that also occurs elsewhere in a
    message must not turn the rest of it into a puzzle that spells it out).
    """
    try:
        parsed = make_url(url)
    except Exception:  # an unparsable URL may itself contain a secret
        return "<unparsable URL>"
    masked = {
        name: (_MASK if _SECRET_QUERY_NAME.search(name) else value)
        for name, value in parsed.query.items()
    }
    if masked == dict(parsed.query):
        return parsed.render_as_string(hide_password=True)
    rendered = parsed.set(query=masked).render_as_string(hide_password=True)
    return rendered.replace("%2A%2A%2A", _MASK)  # the mask as the password field shows it


#: The pip extra that installs the driver of each SQLAlchemy dialect dpone-state supports.
DRIVER_EXTRAS: dict[str, str] = {
    "postgresql": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
    "mssql": "mssql",
    "bigquery": "bigquery",
}
#: Drivers of the extras (the URL's ``+driver`` that each extra installs).
EXTRA_DRIVERS: dict[str, tuple[str, ...]] = {
    "postgres": ("psycopg2", "psycopg"),
    "mysql": ("pymysql",),
    "mssql": ("pyodbc",),
    "bigquery": ("bigquery",),
}


def not_installed(url: URL, error: ImportError) -> BackendNotInstalledError:
    """The typed error for a URL whose driver module is missing, naming the extra to install."""
    backend = url.get_backend_name()
    extra = DRIVER_EXTRAS.get(backend)
    if extra is None:
        return BackendNotInstalledError(
            f"the driver of {safe_url(url)} ({error.name or error}) is not installed"
        )
    advice = f"pip install 'dpone-state[{extra}]'"
    driver: str | None = url.drivername.partition("+")[2] or None
    if driver is None:
        try:  # the dialect's default driver (psycopg under SQLAlchemy 2.1, psycopg2 under 2.0)
            driver = url.get_driver_name()
        except ImportError:  # the dialect itself lives in the missing package
            driver = None
    drivers = EXTRA_DRIVERS[extra]
    if driver is not None and driver not in drivers:
        advice += (
            f", which installs {' or '.join(drivers)}: use a URL "
            f"{backend}+{drivers[0]}://… (this one asks for {driver})"
        )
    return BackendNotInstalledError(
        f"the {backend} driver for {safe_url(url)} ({error.name or error}) is not installed: "
        f"{advice}"
    )


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


#: A pooled connection unused for longer than this is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 10.0
_LAST_CHECKIN = "dpone_state_last_checkin"
_PINGING_POOLS: weakref.WeakSet[Any] = weakref.WeakSet()


def ping_when_idle(engine: Engine, idle_seconds: float = PING_AFTER_IDLE_SECONDS) -> None:
    """Ping a pooled connection before use only if it sat idle (SQLAlchemy's pre-ping, lazily).

    ``pool_pre_ping`` costs a round trip on every call; idle connections are the ones a server
    restart, a failover or an idle timeout has closed. A connection that dies while in steady
    use fails its call with ``StateUnavailableError`` (reads are retried once), and the pool
    then replaces every connection opened before the failure.
    """
    _PINGING_POOLS.add(engine.pool)

    @event.listens_for(engine.pool, "checkin")
    def _checked_in(dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_LAST_CHECKIN] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        last = record.info.get(_LAST_CHECKIN)
        if last is None or time.monotonic() - last < idle_seconds:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # any failure: the pool must not hand this one out
            raise DisconnectionError(f"idle connection failed its ping: {error}") from error
        if not alive:
            raise DisconnectionError("idle connection failed its ping")


def _psycopg_autocommit(dbapi_connection: Any, on: bool) -> None:
    dbapi_connection.autocommit = on


def _sqlite3_autocommit(dbapi_connection: Any, on: bool) -> None:
    dbapi_connection.isolation_level = None if on else ""


#: Drivers whose connections switch to autocommit without talking to the server: the storages
#: send each call's single statement in autocommit there (one round trip, not BEGIN + statement
#: + COMMIT). PyMySQL and ODBC send the switch to the server, so they keep a transaction.
_CLIENT_SIDE_AUTOCOMMIT: dict[str, Callable[[Any, bool], None]] = {
    "psycopg2": _psycopg_autocommit,
    "psycopg": _psycopg_autocommit,
    "pysqlite": _sqlite3_autocommit,
}


def autocommit_switch(engine: Engine) -> Callable[[Any, bool], None] | None:
    """How to put a DBAPI connection of ``engine`` in (and out of) autocommit for free, if the
    driver can; ``None`` where switching costs a round trip."""
    return _CLIENT_SIDE_AUTOCOMMIT.get(engine.dialect.driver)


def pings_when_idle(engine: Engine) -> bool:
    """Whether ``ping_when_idle`` guards the engine's pool."""
    return engine.pool in _PINGING_POOLS


def create_state_engine(url: str | URL, **options: Any) -> Engine:
    """An Engine for ``url`` with the backend's options (idle ping, SQLite WAL, …) under ``options``.

    The driver is imported here, not when ``dpone_state`` is imported.
    """
    parsed = make_url(url)
    try:
        backend = backend_module(parsed.get_backend_name())
        merged = {**backend.engine_options(parsed), **options}
        # Optional hook: a backend may hand the dialect another URL (BigQuery moves the
        # credentials out of it into the client that ``engine_options`` built).
        engine_url: Callable[[URL], URL] | None = getattr(backend, "engine_url", None)
        engine = sqlalchemy.create_engine(engine_url(parsed) if engine_url else parsed, **merged)
    except ImportError as error:  # the driver (or the dialect's package) is not installed
        raise not_installed(parsed, error) from None
    backend.prepare_engine(engine)
    return engine
