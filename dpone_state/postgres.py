"""PostgreSQL (``postgresql+psycopg2``): schema ``etl_state``, ``INSERT … ON CONFLICT``."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import URL, Engine

from dpone_state.storage import RunStateStorage, XMinStateStorage

__all__ = ["PostgresRunStateStorage", "PostgresXMinStateStorage"]


def engine_options(url: URL) -> dict[str, Any]:
    """Check pooled connections before use, so a restarted server costs no failed call."""
    return {"pool_pre_ping": True}


def prepare_engine(engine: Engine) -> None:
    """Nothing to prepare on PostgreSQL."""


class PostgresXMinStateStorage(XMinStateStorage):
    """XMin checkpoints in PostgreSQL (schema ``etl_state`` by default)."""

    dialects = ("postgresql",)


class PostgresRunStateStorage(RunStateStorage):
    """Run-state rows in PostgreSQL (schema ``etl_state`` by default)."""

    dialects = ("postgresql",)
