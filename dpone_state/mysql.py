"""MySQL / MariaDB (``mysql+pymysql``): schema = database ``etl_state``, ``ON DUPLICATE KEY``.

Its facts are the ``mysql`` row of ``dpone_state.dialects``; its hooks are in
``dpone_state.backends.mysql``; this module holds its storage classes.
"""

from __future__ import annotations

from dpone_state.backends.mysql import POOL_RECYCLE_SECONDS
from dpone_state.storage import RunStateStorage, XMinStateStorage

__all__ = ["POOL_RECYCLE_SECONDS", "MysqlRunStateStorage", "MysqlXMinStateStorage"]


class MysqlXMinStateStorage(XMinStateStorage):
    """XMin checkpoints in MySQL or MariaDB (database ``etl_state`` by default)."""

    backend = "mysql"


class MysqlRunStateStorage(RunStateStorage):
    """Run-state rows in MySQL or MariaDB (database ``etl_state`` by default)."""

    backend = "mysql"
