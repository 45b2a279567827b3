"""SQLite, the embedded default: a file, WAL journal and a busy timeout, no schema needed.

Its facts are the ``sqlite`` row of ``dpone_state.dialects``; its hooks are in
``dpone_state.backends.sqlite``; this module holds its storage classes.
"""

from __future__ import annotations

from dpone_state.backends.sqlite import BUSY_TIMEOUT_SECONDS
from dpone_state.storage import RunStateStorage, XMinStateStorage

__all__ = ["BUSY_TIMEOUT_SECONDS", "SqliteRunStateStorage", "SqliteXMinStateStorage"]


class SqliteXMinStateStorage(XMinStateStorage):
    """XMin checkpoints in SQLite (no schema by default)."""

    backend = "sqlite"


class SqliteRunStateStorage(RunStateStorage):
    """Run-state rows in SQLite (no schema by default)."""

    backend = "sqlite"
