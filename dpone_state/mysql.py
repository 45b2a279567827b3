"""MySQL / MariaDB (``mysql+pymysql``): schema = database ``etl_state``, ``ON DUPLICATE KEY``."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import URL, Engine

from dpone_state.engine import ping_when_idle
from dpone_state.storage import RunStateStorage, XMinStateStorage

__all__ = ["MysqlRunStateStorage", "MysqlXMinStateStorage"]

#: Recycle pooled connections before MySQL's default ``wait_timeout`` (8 h) closes them.
POOL_RECYCLE_SECONDS = 3600


def engine_options(url: URL) -> dict[str, Any]:
    """Recycle pooled connections before the server's idle timeout; full Unicode on the wire."""
    options: dict[str, Any] = {"pool_recycle": POOL_RECYCLE_SECONDS}
    if "charset" not in url.query:
        options["connect_args"] = {"charset": "utf8mb4"}
    return options


def prepare_engine(engine: Engine) -> None:
    """Ping pooled connections that sat idle before handing them out."""
    ping_when_idle(engine)


class MysqlXMinStateStorage(XMinStateStorage):
    """XMin checkpoints in MySQL or MariaDB (database ``etl_state`` by default)."""

    dialects = ("mysql", "mariadb")


class MysqlRunStateStorage(RunStateStorage):
    """Run-state rows in MySQL or MariaDB (database ``etl_state`` by default)."""

    dialects = ("mysql", "mariadb")
