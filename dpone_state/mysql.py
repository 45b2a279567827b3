"""MySQL / MariaDB (``mysql+pymysql``): schema = database ``etl_state``, ``ON DUPLICATE KEY``."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import URL, Engine

from dpone_state.engine import ping_when_idle
from dpone_state.storage import RunStateStorage, XMinStateStorage

__all__ = ["MysqlRunStateStorage", "MysqlXMinStateStorage"]

#: Recycle pooled connections before MySQL's default ``wait_timeout`` (8 h) closes them.
POOL_RECYCLE_SECONDS = 3600
#: How long a statement waits for a row lock before it fails with ``StateLockTimeoutError``
#: (``innodb_lock_wait_timeout`` of each connection; the server default is 50 s).
LOCK_WAIT_SECONDS = 10


def engine_options(url: URL) -> dict[str, Any]:
    """Recycle pooled connections before the server's idle timeout; full Unicode on the wire;
    a bounded wait for row locks."""
    connect_args: dict[str, Any] = {
        "init_command": f"SET SESSION innodb_lock_wait_timeout = {LOCK_WAIT_SECONDS}"
    }
    if "charset" not in url.query:
        connect_args["charset"] = "utf8mb4"
    return {"pool_recycle": POOL_RECYCLE_SECONDS, "connect_args": connect_args}


def prepare_engine(engine: Engine) -> None:
    """Ping pooled connections that sat idle before handing them out."""
    ping_when_idle(engine)


class MysqlXMinStateStorage(XMinStateStorage):
    """XMin checkpoints in MySQL or MariaDB (database ``etl_state`` by default)."""

    dialects = ("mysql", "mariadb")


class MysqlRunStateStorage(RunStateStorage):
    """Run-state rows in MySQL or MariaDB (database ``etl_state`` by default)."""

    dialects = ("mysql", "mariadb")
