"""PostgreSQL (``postgresql+psycopg2``): schema ``etl_state``, ``INSERT … ON CONFLICT``."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import URL, Engine

from dpone_state.engine import ping_when_idle
from dpone_state.storage import RunStateStorage, XMinStateStorage

__all__ = ["PostgresRunStateStorage", "PostgresXMinStateStorage"]


def engine_options(url: URL) -> dict[str, Any]:
    """No options beyond SQLAlchemy's defaults."""
    return {}


def prepare_engine(engine: Engine) -> None:
    """Ping pooled connections that sat idle before handing them out."""
    ping_when_idle(engine)


class PostgresXMinStateStorage(XMinStateStorage):
    """XMin checkpoints in PostgreSQL (schema ``etl_state`` by default)."""

    dialects = ("postgresql",)


class PostgresRunStateStorage(RunStateStorage):
    """Run-state rows in PostgreSQL (schema ``etl_state`` by default)."""

    dialects = ("postgresql",)
