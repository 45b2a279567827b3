"""PostgreSQL (``postgresql+psycopg2``): schema ``etl_state``, ``INSERT … ON CONFLICT``.

Its facts are the ``postgres`` row of ``dpone_state.dialects``; its hooks are in
``dpone_state.backends.postgres``; this module holds its storage classes.
"""

from __future__ import annotations

from dpone_state.storage import RunStateStorage, XMinStateStorage

__all__ = ["PostgresRunStateStorage", "PostgresXMinStateStorage"]


class PostgresXMinStateStorage(XMinStateStorage):
    """XMin checkpoints in PostgreSQL (schema ``etl_state`` by default)."""

    backend = "postgres"


class PostgresRunStateStorage(RunStateStorage):
    """Run-state rows in PostgreSQL (schema ``etl_state`` by default)."""

    backend = "postgres"
