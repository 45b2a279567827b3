"""BigQuery (``bigquery://PROJECT[/DATASET]``): schema = dataset ``etl_state``, one ``MERGE``.

The client, credentials and engine options live in the hook module
(``dpone_state.backends.bigquery``); this module holds the storage classes and
``create_bigquery_engine``. A caller-built client is passed with
``bigquery://PROJECT?user_supplied_client=true`` and ``connect_args={"client": client}`` (or
``create_bigquery_engine(client=…)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import URL, Engine

from dpone_state.backends.bigquery import (
    EMULATOR_HOST_ENV,
    ServiceAccount,
    bigquery_client,
    engine_options,
    engine_url,
    prepare_engine,
)
from dpone_state.engine import create_state_engine
from dpone_state.errors import StateConfigError
from dpone_state.storage import RunStateStorage, XMinStateStorage

if TYPE_CHECKING:
    from google.cloud.bigquery import Client

__all__ = [
    "EMULATOR_HOST_ENV",
    "BigQueryRunStateStorage",
    "BigQueryXMinStateStorage",
    "bigquery_client",
    "create_bigquery_engine",
    "engine_options",
    "engine_url",
    "prepare_engine",
]


def create_bigquery_engine(
    project: str | None = None,
    *,
    credentials: ServiceAccount | None = None,
    client: Client | None = None,
    location: str | None = None,
    api_endpoint: str | None = None,
    **options: Any,
) -> Engine:
    """An engine on BigQuery from a project and credentials, or from a caller-built ``client``.

    The dataset is the storages' ``schema`` (default ``etl_state``), not part of the engine.
    """
    if client is None:
        client = bigquery_client(
            project, credentials=credentials, location=location, api_endpoint=api_endpoint
        )
    elif credentials is not None or api_endpoint is not None:
        raise StateConfigError(
            "client",
            "pass either client= or credentials=/api_endpoint=, not both: a client already "
            "carries its credentials and endpoint",
        )
    url = URL.create(
        "bigquery", host=project or client.project, query={"user_supplied_client": "true"}
    )
    connect_args = {"client": client, **options.pop("connect_args", {})}
    return create_state_engine(url, connect_args=connect_args, **options)


class BigQueryXMinStateStorage(XMinStateStorage):
    """XMin checkpoints in BigQuery (dataset ``etl_state`` by default)."""

    backend = "bigquery"


class BigQueryRunStateStorage(RunStateStorage):
    """Run-state rows in BigQuery (dataset ``etl_state`` by default)."""

    backend = "bigquery"
