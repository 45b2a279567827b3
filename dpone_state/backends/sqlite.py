"""SQLite's hooks: a file, WAL journal and a busy timeout; the stdlib driver's autocommit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, Engine

from dpone_state.backends import on_connect
from dpone_state.dialects import BackendHooks

__all__ = ["BUSY_TIMEOUT_SECONDS", "SqliteHooks"]

#: How long a writer waits for another writer's lock before failing.
BUSY_TIMEOUT_SECONDS = 30


class SqliteHooks(BackendHooks):
    """``sqlite`` (pysqlite)."""

    def engine_options(self, url: URL) -> dict[str, Any]:
        """Wait for locks instead of failing at once (the driver's ``timeout``)."""
        return {"connect_args": {"timeout": BUSY_TIMEOUT_SECONDS}}

    def prepare_engine(self, engine: Engine) -> None:
        """Create the file's folder; put every connection in WAL mode with a busy timeout."""
        database = engine.url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        on_connect(
            engine, "PRAGMA journal_mode=WAL", f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}"
        )

    def set_autocommit(self, dbapi_connection: Any, on: bool) -> None:
        dbapi_connection.isolation_level = None if on else ""

    def is_missing_table(self, orig: BaseException) -> bool:
        text = str(orig)
        return text.startswith("no such table") or text.startswith("unknown database")

    def is_lock_timeout(self, orig: BaseException) -> bool:
        """Locked past the busy timeout (another writer held the file)."""
        return str(orig).startswith(
            ("database is locked", "database table is locked", "database schema is locked")
        )

    def is_missing_column(self, orig: BaseException) -> bool:
        text = str(orig)
        return "no such column" in text or "has no column named" in text
