"""BigQuery's hooks: dpone-state builds the ``google.cloud.bigquery.Client`` itself.

Credentials come from a service-account file or dict (the URL's ``credentials_path`` /
``credentials_base64``), else application default credentials; anonymous against an emulator.
Missing credentials are a ``StateCredentialsError`` instead of a google-auth traceback. The
URL's dataset (``bigquery://PROJECT/DATASET``) is the storages' default schema. Google's
libraries are imported inside the functions, never when this module is imported.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Union

from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, ExceptionContext

from dpone_state.dialects import BackendHooks, safe_url
from dpone_state.errors import (
    StateConfigError,
    StateCredentialsError,
    StateUnavailableError,
    first_line,
)

if TYPE_CHECKING:
    from google.cloud.bigquery import Client

__all__ = [
    "EMULATOR_HOST_ENV",
    "BigQueryHooks",
    "ServiceAccount",
    "bigquery_client",
    "engine_options",
    "engine_url",
    "prepare_engine",
]

#: Set (as google-cloud-bigquery reads it) to use a local emulator with anonymous credentials.
EMULATOR_HOST_ENV = "BIGQUERY_EMULATOR_HOST"
#: OAuth scopes of the credentials dpone-state loads (those sqlalchemy-bigquery asks for).
SCOPES = (
    "https://www.googleapis.com/auth/bigquery",
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/drive",
)
#: URL query keys that describe the credentials: consumed here, never left in ``engine.url``.
_CREDENTIAL_KEYS = ("credentials_path", "credentials_base64")

#: A service-account key: the JSON file's path, or its parsed content.
ServiceAccount = Union[str, "os.PathLike[str]", Mapping[str, Any]]


def _service_account(source: ServiceAccount) -> Any:
    from google.auth.exceptions import GoogleAuthError
    from google.oauth2 import service_account

    factory: Any = service_account.Credentials  # google-auth's factories are untyped
    try:
        if isinstance(source, Mapping):
            credentials = factory.from_service_account_info(dict(source))
        else:
            credentials = factory.from_service_account_file(os.fspath(source))
    except FileNotFoundError:
        raise StateCredentialsError(
            "credentials",
            f"the service-account key file {os.fspath(source)!r} does not exist",  # type: ignore[arg-type]
        ) from None
    except (OSError, ValueError, KeyError, GoogleAuthError) as error:
        # The message names the problem (missing fields, bad JSON), never the key's content.
        where = "dict" if isinstance(source, Mapping) else repr(os.fspath(source))
        raise StateCredentialsError(
            "credentials",
            f"the service-account key ({where}) is not a usable service-account JSON: "
            f"{type(error).__name__}: {first_line(error)[:200]}",
        ) from None
    return credentials.with_scopes(list(SCOPES))


def _default_credentials() -> tuple[Any, str | None]:
    import google.auth
    from google.auth.exceptions import GoogleAuthError

    try:
        credentials, project = google.auth.default(scopes=list(SCOPES))
    except GoogleAuthError as error:
        raise StateCredentialsError(
            "credentials",
            "no Google credentials for BigQuery: set GOOGLE_APPLICATION_CREDENTIALS to a "
            "service-account key file, run `gcloud auth application-default login`, or pass "
            f"credentials= / a client ({type(error).__name__}: {first_line(error)[:200]})",
        ) from None
    return credentials, project


def bigquery_client(
    project: str | None = None,
    *,
    credentials: ServiceAccount | None = None,
    location: str | None = None,
    api_endpoint: str | None = None,
    default_query_job_config: Any = None,
) -> Client:
    """A BigQuery client: service-account key (file or dict), else application default
    credentials; anonymous against an emulator (``api_endpoint`` or ``BIGQUERY_EMULATOR_HOST``).

    Raises ``StateCredentialsError`` when no usable credentials (or no project) are found.
    """
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    found_project: str | None = None
    if credentials is not None:
        creds = _service_account(credentials)
        found_project = creds.project_id
    elif api_endpoint or os.environ.get(EMULATOR_HOST_ENV):
        creds = AnonymousCredentials()  # type: ignore[no-untyped-call]
    else:
        creds, found_project = _default_credentials()
    project = project or found_project
    if not project:
        raise StateCredentialsError(
            "credentials",
            "no BigQuery project: put it in the URL (bigquery://PROJECT) or pass project=",
        )
    options = {"api_endpoint": api_endpoint} if api_endpoint else None
    return bigquery.Client(
        project=project,
        credentials=creds,
        location=location,
        default_query_job_config=default_query_job_config,
        client_options=options,
    )


def _user_supplied(url: URL) -> bool:
    return str(url.query.get("user_supplied_client", "")).lower() == "true"


def engine_options(url: URL) -> dict[str, Any]:
    """Build the client from the URL's credentials (or ADC) unless the caller supplies one."""
    if _user_supplied(url):
        return {}
    from sqlalchemy_bigquery.parse_url import parse_url

    try:
        project, location, _, _, path, encoded, job_config, _, _ = parse_url(url)
    except ValueError as error:
        raise StateConfigError("url", f"invalid BigQuery URL: {error}") from None
    source: ServiceAccount | None = path
    if encoded:
        try:
            source = json.loads(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            raise StateCredentialsError(
                "credentials", "credentials_base64 in the URL is not base64-encoded JSON"
            ) from None
    client = bigquery_client(
        project, credentials=source, location=location, default_query_job_config=job_config
    )
    return {"connect_args": {"client": client}}


def engine_url(url: URL) -> URL:
    """The URL the dialect gets: the client is ours, so no credentials stay in it."""
    if _user_supplied(url):
        return url
    return url.difference_update_query(_CREDENTIAL_KEYS).update_query_dict(
        {"user_supplied_client": "true"}
    )


def prepare_engine(engine: Engine) -> None:
    """Every connection: the REST API for results (no BigQuery Storage client), a client given."""

    @event.listens_for(engine, "do_connect")
    def _on_connect(dialect: Any, conn_rec: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        cparams.setdefault("prefer_bqstorage_client", False)
        if cparams.get("client") is None:
            raise StateConfigError(
                "client",
                "bigquery URL with user_supplied_client=true but no client: pass "
                "connect_args={'client': google.cloud.bigquery.Client(...)}",
            )

    @event.listens_for(engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        _raise_typed(context.original_exception, engine)


def _raise_typed(error: BaseException, engine: Engine) -> None:
    """Google errors the DB-API does not wrap (token refresh, exhausted retries) → typed."""
    import requests
    from google.api_core.exceptions import RetryError
    from google.auth.exceptions import GoogleAuthError, TransportError

    where = safe_url(engine.url)
    if isinstance(error, (TransportError, RetryError, requests.ConnectionError)):
        raise StateUnavailableError(
            f"cannot reach BigQuery for {where}: {type(error).__name__}; the call can be retried"
        ) from error
    if isinstance(error, GoogleAuthError):
        raise StateCredentialsError(
            "credentials",
            f"the Google credentials of {where} were refused or cannot be refreshed: "
            f"{type(error).__name__}: {first_line(error)[:200]}",
        ) from error


#: Messages of a column the statement names that the table lacks.
_MISSING_COLUMN = (
    "Unrecognized name",
    "not found inside",
    "is not present in",
    "does not have a column",
)


class BigQueryHooks(BackendHooks):
    """``bigquery://PROJECT[/DATASET]`` (sqlalchemy-bigquery) with a client built here."""

    def engine_options(self, url: URL) -> dict[str, Any]:
        return engine_options(url)

    def engine_url(self, url: URL) -> URL:
        return engine_url(url)

    def prepare_engine(self, engine: Engine) -> None:
        prepare_engine(engine)

    def url_schema(self, url: URL) -> str | None:
        """The dataset of ``bigquery://PROJECT/DATASET``."""
        return url.database or None

    def is_missing_table(self, orig: BaseException) -> bool:
        text = str(orig)
        return "Not found: Table" in text or "Not found: Dataset" in text

    def is_missing_column(self, orig: BaseException) -> bool:
        # BigQuery: "Unrecognized name: x" (reads), "Column x is not present in table"
        # (writes), "Name x not found inside t"; the emulator (DuckDB): 'does not have a
        # column named "x"' (or 'with name').
        return any(part in str(orig) for part in _MISSING_COLUMN)

    def is_transient_conflict(self, orig: BaseException) -> bool:
        text = str(orig).lower()
        return any(marker in text for marker in _TRANSIENT)


#: A DML job or transaction aborted by a concurrent one, or refused because the table's queue
#: of mutating DML is full: each changed nothing.
_TRANSIENT = (
    "due to concurrent update",  # "Could not serialize access to table … due to concurrent update"
    "could not serialize access",
    "too many dml statements outstanding",
    "transaction is aborted",
)
