"""The backends' hook modules: one ``BackendHooks`` subclass per backend (see ``dialects``).

A hook module imports no driver at import time and nothing of the storages, so the engine
factory can load it without an import cycle. The helpers here are shared by several hooks.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import PoolResetState

__all__ = [
    "PING_AFTER_IDLE_SECONDS",
    "STORAGE_CHECKOUT",
    "idle_ping_seconds",
    "keep_autocommit",
    "keeps_autocommit",
    "on_connect",
    "ping_when_idle",
    "pinging_changes",
    "pings_when_idle",
]

#: A pooled connection unused for longer than this is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 10.0
_LAST_CHECKIN = "dpone_state_last_checkin"
#: Engines whose pools ping idle connections, and after how many idle seconds. Keyed by the
#: engine: ``engine.dispose()`` replaces the pool (its listeners move to the new one).
_PINGING: weakref.WeakKeyDictionary[Engine, float] = weakref.WeakKeyDictionary()
_PING_CHANGES = [0]


def ping_when_idle(engine: Engine, idle_seconds: float = PING_AFTER_IDLE_SECONDS) -> None:
    """Ping a pooled connection before use only if it sat idle (SQLAlchemy's pre-ping, lazily).

    ``pool_pre_ping`` costs a round trip on every call; idle connections are the ones a server
    restart, a failover or an idle timeout has closed. A connection that dies while in steady
    use fails its call with ``StateUnavailableError`` (reads are retried once), and the pool
    then replaces every connection opened before the failure.
    """
    _PINGING[engine] = idle_seconds
    _PING_CHANGES[0] += 1

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


def pings_when_idle(engine: Engine) -> bool:
    """Whether ``ping_when_idle`` guards the engine's pool."""
    return engine in _PINGING


def idle_ping_seconds(engine: Engine) -> float | None:
    """After how many idle seconds ``engine``'s connections are pinged (``None``: never)."""
    return _PINGING.get(engine)


def pinging_changes() -> int:
    """A number that changes whenever ``ping_when_idle`` is applied to an engine: a caller
    caching ``idle_ping_seconds`` knows when to look again."""
    return _PING_CHANGES[0]


def on_connect(engine: Engine, *statements: str) -> None:
    """Run ``statements`` on every new DBAPI connection of ``engine`` (session settings)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            for statement in statements:
                cursor.execute(statement)
        finally:
            cursor.close()


#: Set while a storage checks a connection out: ``keep_autocommit``'s guard leaves it alone.
STORAGE_CHECKOUT: ContextVar[bool] = ContextVar("dpone_state_storage_checkout", default=False)
_KEEPING: weakref.WeakSet[Engine] = weakref.WeakSet()  # by engine, as ``_PINGING``


def keep_autocommit(
    engine: Engine,
    switch: Callable[[Any, bool], None],
    in_autocommit: Callable[[Any], bool],
) -> None:
    """Let storages leave pooled connections of ``engine`` in autocommit, for a driver whose
    switch is a round trip (PyMySQL, pyodbc): any other checkout gets the connection back in a
    transaction, and the pool's reset on return is skipped for a connection in autocommit
    (each statement committed itself: nothing to roll back).

    The engine must be created with ``pool_reset_on_return=None``: the reset happens here.
    An engine created with ``isolation_level="AUTOCOMMIT"`` hands everyone a connection in
    autocommit, so nothing is switched back for it.
    """
    _KEEPING.add(engine)
    if engine.dialect._on_connect_isolation_level != "AUTOCOMMIT":

        @event.listens_for(engine.pool, "checkout")
        def _transactional_for_others(dbapi_connection: Any, record: Any, proxy: Any) -> None:
            if not STORAGE_CHECKOUT.get() and in_autocommit(dbapi_connection):
                switch(dbapi_connection, False)

    @event.listens_for(engine.pool, "reset")
    def _rollback_unless_autocommit(
        dbapi_connection: Any, record: Any, reset_state: PoolResetState
    ) -> None:
        if not reset_state.asyncio_safe or reset_state.transaction_was_reset:
            return
        if in_autocommit(dbapi_connection):
            return
        dbapi_connection.rollback()


def keeps_autocommit(engine: Engine) -> bool:
    """Whether ``keep_autocommit`` guards the engine's pool."""
    return engine in _KEEPING
