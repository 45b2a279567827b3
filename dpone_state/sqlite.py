"""SQLite, the embedded default: a file, WAL journal and a busy timeout, no schema needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Engine

from dpone_state.storage import RunStateStorage, XMinStateStorage

__all__ = ["BUSY_TIMEOUT_SECONDS", "SqliteRunStateStorage", "SqliteXMinStateStorage"]

#: How long a writer waits for another writer's lock before failing.
BUSY_TIMEOUT_SECONDS = 30


def engine_options(url: URL) -> dict[str, Any]:
    """Wait for locks instead of failing at once (the driver's ``timeout``)."""
    return {"connect_args": {"timeout": BUSY_TIMEOUT_SECONDS}}


def prepare_engine(engine: Engine) -> None:
    """Create the file's folder; put every connection in WAL mode with a busy timeout."""
    database = engine.url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
        finally:
            cursor.close()


class SqliteXMinStateStorage(XMinStateStorage):
    """XMin checkpoints in SQLite (no schema by default)."""

    dialects = ("sqlite",)


class SqliteRunStateStorage(RunStateStorage):
    """Run-state rows in SQLite (no schema by default)."""

    dialects = ("sqlite",)
