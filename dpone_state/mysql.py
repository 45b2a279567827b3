"""MySQL / MariaDB (``mysql+pymysql``): schema = database ``etl_state``, ``ON DUPLICATE KEY``."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import URL, Engine
from sqlalchemy.pool.base import reset_none

from dpone_state.engine import ping_when_idle
from dpone_state.execution import keep_autocommit
from dpone_state.storage import RunStateStorage, XMinStateStorage

__all__ = ["MysqlRunStateStorage", "MysqlXMinStateStorage"]

#: Recycle pooled connections before MySQL's default ``wait_timeout`` (8 h) closes them.
POOL_RECYCLE_SECONDS = 3600


def engine_options(url: URL) -> dict[str, Any]:
    """Recycle pooled connections before the server's idle timeout; full Unicode on the wire;
    the pool's reset on return left to ``keep_autocommit`` (free for a connection a storage
    left in autocommit, a ROLLBACK otherwise)."""
    options: dict[str, Any] = {"pool_recycle": POOL_RECYCLE_SECONDS, "pool_reset_on_return": None}
    if "charset" not in url.query:
        options["connect_args"] = {"charset": "utf8mb4"}
    return options


def prepare_engine(engine: Engine) -> None:
    """Ping pooled connections that sat idle before handing them out; let storages keep
    connections in autocommit (one statement per call at the server) where the pool's reset
    is ours (``pool_reset_on_return=None``, the default of ``engine_options``)."""
    ping_when_idle(engine)
    if engine.pool._reset_on_return is reset_none:
        keep_autocommit(engine)


class MysqlXMinStateStorage(XMinStateStorage):
    """XMin checkpoints in MySQL or MariaDB (database ``etl_state`` by default)."""

    dialects = ("mysql", "mariadb")


class MysqlRunStateStorage(RunStateStorage):
    """Run-state rows in MySQL or MariaDB (database ``etl_state`` by default)."""

    dialects = ("mysql", "mariadb")
