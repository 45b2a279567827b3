"""The backends' hook modules: one ``BackendHooks`` subclass per backend (see ``dialects``).

A hook module imports no driver at import time and nothing of the storages, so the engine
factory can load it without an import cycle. The helpers here are shared by several hooks.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError

__all__ = ["PING_AFTER_IDLE_SECONDS", "on_connect", "ping_when_idle", "pings_when_idle"]

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


def pings_when_idle(engine: Engine) -> bool:
    """Whether ``ping_when_idle`` guards the engine's pool."""
    return engine.pool in _PINGING_POOLS


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
