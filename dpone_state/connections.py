"""Connections of the ``state:`` block: ``url``, ``env`` and ``vault`` -> a per-dialect target.

Every connection becomes one SQLAlchemy ``URL`` built with ``URL.create`` (never by
formatting a string, so any password works); BigQuery's too (``bigquery://PROJECT/DATASET``
with its credentials and location in the query), so one engine factory and one parser (the
backend's hooks) serve a manifest, a URL and the CLI alike. Secret values never reach a
message.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from sqlalchemy.engine import URL, make_url

from dpone_state.config import StateSettings
from dpone_state.dialects import StateType, by_state_type
from dpone_state.errors import (
    BackendNotInstalledError,
    InvalidSecretError,
    MissingEnvironmentVariableError,
    SecretKeyMissingError,
    SecretNotFoundError,
    StateConfigError,
    VaultAccessDeniedError,
    VaultUnavailableError,
)

__all__ = [
    "AIRFLOW_CONN_PREFIX",
    "DEFAULT_MSSQL_DRIVER",
    "ResolvedConnection",
    "airflow_connection",
    "airflow_env_var",
    "connection_env_var",
    "read_vault_secret",
    "resolve_connection",
]

#: The ODBC driver of an ``mssql`` connection unless the secret names another (``driver``).
DEFAULT_MSSQL_DRIVER: Final = by_state_type("mssql").odbc_driver
#: Seconds a Vault request may take (``VAULT_CLIENT_TIMEOUT`` overrides, as for the CLI).
VAULT_TIMEOUT_SECONDS: Final = 10

# Secret keys, first match wins (the secret is shared with the sink's connector, so keys
# dpone-state does not know are ignored).
URL_KEYS = ("url", "sqlalchemy_url")
HOST_KEYS = ("host", "db_host", "hostname", "server")
PORT_KEYS = ("port", "db_port")
DATABASE_KEYS = ("database", "db", "dbname", "db_name")
USER_KEYS = ("username", "user", "login", "db_user")
PASSWORD_KEYS = ("password", "db_password")
DRIVER_KEYS = ("driver",)
OPTION_KEYS = ("options", "query")
PATH_KEYS = ("path", "database", "file")
PROJECT_KEYS = ("project", "project_id")
DATASET_KEYS = ("dataset", "dataset_id")
LOCATION_KEYS = ("location",)
SERVICE_ACCOUNT_KEYS = ("service_account_json", "credentials", "keyfile_json", "service_account")
CREDENTIALS_PATH_KEYS = ("credentials_path", "keyfile", "key_path")


@dataclass(frozen=True)
class ResolvedConnection:
    """Where the state lives (the engine URL; BigQuery's carries its credentials, so it is
    never shown) and where that came from."""

    origin: str
    url: URL = field(repr=False)


def connection_env_var(connection_id: str) -> str:
    """``DPONE_CONN_<ID>``: the id upper-cased, every other character than A-Z0-9 as ``_``."""
    return "DPONE_CONN_" + re.sub(r"[^A-Z0-9]", "_", connection_id.upper())


def _safe_addr(addr: str) -> str:
    """``VAULT_ADDR`` without any user-info part (it could hold credentials)."""
    try:
        parts = urlsplit(addr)
    except ValueError:
        return "<unparsable VAULT_ADDR>"
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else host


def _required_env(environ: Mapping[str, str], name: str, why: str) -> str:
    value = environ.get(name)
    if not value:
        raise MissingEnvironmentVariableError(name, f"not set; {why}")
    return value


def read_vault_secret(
    mount_point: str, path: str, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The data of KV v2 secret ``mount_point/path`` from ``VAULT_ADDR`` with ``VAULT_TOKEN``."""
    env = os.environ if environ is None else environ
    where = f"Vault secret {mount_point}/{path}"
    addr = _required_env(env, "VAULT_ADDR", f"export the Vault URL to read the {where}")
    token = _required_env(env, "VAULT_TOKEN", f"export a Vault token that can read the {where}")
    try:
        import hvac  # noqa: PLC0415 - optional dependency, imported when used
        import requests  # noqa: PLC0415
        from hvac import exceptions as hvac_errors  # noqa: PLC0415
    except ImportError:
        raise BackendNotInstalledError(
            "connection_type vault needs hvac: pip install 'dpone-state[vault]'"
        ) from None
    verify: bool | str = env.get("VAULT_CACERT") or env.get("VAULT_SKIP_VERIFY", "") not in (
        "1",
        "true",
        "True",
    )
    try:
        timeout = int(env.get("VAULT_CLIENT_TIMEOUT") or VAULT_TIMEOUT_SECONDS)
    except ValueError:
        raise StateConfigError("VAULT_CLIENT_TIMEOUT", "must be a number of seconds") from None
    client = hvac.Client(
        url=addr, token=token, namespace=env.get("VAULT_NAMESPACE"), verify=verify, timeout=timeout
    )
    try:
        response = client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=mount_point, raise_on_deleted_version=True
        )
    except hvac_errors.InvalidPath:
        raise SecretNotFoundError(
            where,
            f"does not exist at {_safe_addr(addr)} (KV v2 mount {mount_point!r}): write the "
            "connection secret there, or set state.vault.path / state.vault.mount_point",
        ) from None
    except (hvac_errors.Forbidden, hvac_errors.Unauthorized):
        raise VaultAccessDeniedError(
            "VAULT_TOKEN",
            f"Vault at {_safe_addr(addr)} refused the token for the {where}: use a token whose "
            "policy can read it",
        ) from None
    except (requests.exceptions.RequestException, hvac_errors.VaultError) as error:
        raise VaultUnavailableError(
            f"cannot read the {where} from Vault at {_safe_addr(addr)} "
            f"({type(error).__name__}); check VAULT_ADDR and that Vault is up and unsealed; "
            "the call can be retried"
        ) from None
    data = response.get("data", {}).get("data") if isinstance(response, Mapping) else None
    if not isinstance(data, Mapping):
        raise InvalidSecretError(where, "has no key/value data: is the mount KV version 2?")
    return dict(data)


def _pick(secret: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = secret.get(key)
        if value is not None and value != "":
            return value
    return None


def _need(secret: Mapping[str, Any], keys: tuple[str, ...], origin: str, what: str) -> Any:
    value = _pick(secret, keys)
    if value is None:
        alternatives = f" (or {', '.join(keys[1:])})" if len(keys) > 1 else ""
        raise SecretKeyMissingError(
            f"{origin}: {keys[0]}", f"no {what}: add the key {keys[0]!r}{alternatives}"
        )
    return value


def _string(value: Any, origin: str, key: str) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise InvalidSecretError(f"{origin}: {key}", "must be a string")


def _port(secret: Mapping[str, Any], origin: str) -> int | None:
    value = _pick(secret, PORT_KEYS)
    if value is None:
        return None
    try:
        port = int(value)
    except (TypeError, ValueError):
        port = 0
    if isinstance(value, bool) or not 0 < port < 65536:
        raise InvalidSecretError(f"{origin}: port", "must be a TCP port number (1-65535)")
    return port


def _options(secret: Mapping[str, Any], origin: str) -> dict[str, str]:
    value = _pick(secret, OPTION_KEYS)
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if not isinstance(value, Mapping):
        raise InvalidSecretError(
            f"{origin}: options", "must be a mapping (or a JSON object) of driver options"
        )
    return {str(key): _string(item, origin, f"options.{key}") for key, item in value.items()}


def _checked_url(state_type: StateType, url: URL, origin: str) -> URL:
    if url.get_backend_name() not in by_state_type(state_type).dialects:
        raise InvalidSecretError(
            origin,
            f"holds a {url.get_backend_name()!r} URL but state.type is {state_type!r}",
        )
    return url


def _parse_url(state_type: StateType, value: Any, origin: str) -> URL:
    try:
        url = make_url(_string(value, origin, "url"))
    except StateConfigError:
        raise
    except Exception:  # the parser's message would echo the URL, password included
        raise InvalidSecretError(origin, "the URL is not a SQLAlchemy URL") from None
    return _checked_url(state_type, url, origin)


def url_from_secret(state_type: StateType, secret: Mapping[str, Any], origin: str) -> URL:
    """The engine URL of an SQL backend from a connection secret's keys."""
    whole = _pick(secret, URL_KEYS)
    if whole is not None:
        return _parse_url(state_type, whole, origin)
    backend = by_state_type(state_type)
    if backend.connection_kind == "project":
        return bigquery_from_secret(secret, origin)
    if backend.connection_kind == "file":
        path = _string(_need(secret, PATH_KEYS, origin, "database file"), origin, "path")
        return URL.create(backend.drivername, database=path)
    query = _options(secret, origin)
    if backend.odbc_driver is not None:
        driver = _pick(secret, DRIVER_KEYS) or backend.odbc_driver
        query = {"driver": _string(driver, origin, "driver"), **query}
    user = _pick(secret, USER_KEYS)
    password = _pick(secret, PASSWORD_KEYS)
    return URL.create(
        backend.drivername,
        username=None if user is None else _string(user, origin, "username"),
        password=None if password is None else _string(password, origin, "password"),
        host=_string(_need(secret, HOST_KEYS, origin, "database host"), origin, "host"),
        port=_port(secret, origin),
        database=_string(_need(secret, DATABASE_KEYS, origin, "database name"), origin, "database"),
        query=query,
    )


def _service_account(secret: Mapping[str, Any], origin: str) -> dict[str, Any] | None:
    value = _pick(secret, SERVICE_ACCOUNT_KEYS)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if not isinstance(value, Mapping):
        raise InvalidSecretError(
            f"{origin}: service_account_json", "must be the service-account key as JSON"
        )
    return dict(value)


def bigquery_from_secret(secret: Mapping[str, Any], origin: str) -> URL:
    """``bigquery://PROJECT[/DATASET]`` from a connection secret's keys, its credentials (a
    service-account key as ``credentials_base64``, or a key file as ``credentials_path``) and
    location in the query: the URL a ``state.url`` or ``--url`` would give."""
    whole = _pick(secret, URL_KEYS)
    if whole is not None:
        return _parse_url("bigquery", whole, origin)
    info = _service_account(secret, origin)
    project = _pick(secret, PROJECT_KEYS) or (info or {}).get("project_id")
    if project is None:
        _need(secret, PROJECT_KEYS, origin, "BigQuery project (nor a service account's)")
    dataset = _pick(secret, DATASET_KEYS)
    query: dict[str, str] = {}
    if info is not None:
        query["credentials_base64"] = base64.b64encode(json.dumps(info).encode()).decode()
    path = _pick(secret, CREDENTIALS_PATH_KEYS)
    if path is not None:
        query["credentials_path"] = _string(path, origin, "credentials_path")
    location = _pick(secret, LOCATION_KEYS)
    if location is not None:
        query["location"] = _string(location, origin, "location")
    return URL.create(
        "bigquery",
        host=_string(project, origin, "project"),
        database=None if dataset is None else _string(dataset, origin, "dataset"),
        query=query,
    )


def _env_secret(name: str, value: str) -> Mapping[str, Any] | str:
    """An env connection: a JSON object (the Vault secret's keys) or a SQLAlchemy URL."""
    if not value.lstrip().startswith("{"):
        return value
    try:
        loaded = json.loads(value)
    except ValueError:
        loaded = None
    if not isinstance(loaded, Mapping):
        raise InvalidSecretError(name, "starts with '{' but is not a JSON object")
    return cast(Mapping[str, Any], loaded)


def resolve_connection(
    settings: StateSettings, environ: Mapping[str, str] | None = None
) -> ResolvedConnection:
    """Read the connection the settings name (env var, Vault secret or URL); connect nothing."""
    env = os.environ if environ is None else environ
    state_type = settings.type
    secret: Mapping[str, Any] | str | URL
    if settings.url is not None:
        origin, secret = "state.url", settings.url
    elif settings.connection_id is None:  # no connection: the embedded default (SQLite's file)
        origin, secret = "state (embedded default)", by_state_type(state_type).default_url or ""
    elif settings.connection_type == "airflow":
        origin, secret = airflow_connection(settings.connection_id, state_type, env)
    elif settings.connection_type == "env":
        name = connection_env_var(settings.connection_id)
        value = _required_env(
            env,
            name,
            f"connection {settings.connection_id!r} has connection_type env: export a "
            "SQLAlchemy URL or a JSON object with host/port/database/username/password",
        )
        origin, secret = f"environment variable {name}", _env_secret(name, value)
    else:
        path = settings.vault_path or settings.connection_id
        origin = f"Vault secret {settings.vault.mount_point}/{path}"
        secret = read_vault_secret(settings.vault.mount_point, path, env)
    if isinstance(secret, URL):
        return ResolvedConnection(origin, secret)
    if isinstance(secret, str):
        return ResolvedConnection(origin, _parse_url(state_type, secret, origin))
    return ResolvedConnection(origin, url_from_secret(state_type, secret, origin))


# --- connection_type: airflow (Airflow's own conventions) ------------------------------------

#: Airflow's environment variable of a connection: the prefix and the id upper-cased.
AIRFLOW_CONN_PREFIX: Final = "AIRFLOW_CONN_"
#: Airflow ``conn_type`` values (``-`` read as ``_``) for each state type.
AIRFLOW_CONN_TYPES: Final[dict[str, StateType]] = {
    "postgres": "postgres",
    "postgresql": "postgres",
    "mssql": "mssql",
    "mysql": "mysql",
    "sqlite": "sqlite",
    "google_cloud_platform": "bigquery",
    "gcpbigquery": "bigquery",
    "bigquery": "bigquery",
}
#: Airflow extras passed to the driver as URL options (others belong to Airflow's hooks).
_AIRFLOW_DRIVER_EXTRAS: Final = frozenset(
    {
        "sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "application_name",
        "driver", "encrypt", "trustservercertificate", "charset",
    }
)  # fmt: skip
#: Airflow's Google extras, bare or with the old ``extra__google_cloud_platform__`` prefix.
_AIRFLOW_GOOGLE_EXTRAS: Final = {
    "project": "project",
    "keyfile_dict": "service_account_json",
    "key_path": "credentials_path",
    "location": "location",
    "dataset": "dataset",
}


def airflow_env_var(connection_id: str) -> str:
    """``AIRFLOW_CONN_<ID>``: Airflow's variable of a connection (the id upper-cased)."""
    return AIRFLOW_CONN_PREFIX + connection_id.upper()


def _airflow_uri(name: str, value: str) -> dict[str, Any]:
    """An Airflow connection URI (``conn-type://login:password@host:port/schema?extra=…``)."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise InvalidSecretError(name, "is not an Airflow connection URI") from None
    if not parts.scheme:
        raise InvalidSecretError(name, "is not an Airflow connection URI (no conn type)")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    extra: Any = query.pop("__extra__", None)
    if extra is not None:
        try:
            extra = json.loads(extra)
        except ValueError:
            raise InvalidSecretError(name, "its __extra__ is not JSON") from None
    return {
        "conn_type": parts.scheme,
        "host": unquote(parts.hostname or "") or None,
        "login": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "port": port,
        "schema": unquote(parts.path.lstrip("/")) or None,
        "extra": extra if extra is not None else query,
    }


def _airflow_lookup(connection_id: str) -> dict[str, Any] | None:
    """The connection from Airflow's own lookup (secrets backends, metadata DB), if importable."""
    try:
        from airflow.hooks.base import BaseHook  # type: ignore[import-not-found]  # noqa: PLC0415
    except ImportError:
        return None
    try:
        conn = BaseHook.get_connection(connection_id)
    except Exception as error:  # Airflow's AirflowNotFoundException and backend failures
        raise SecretNotFoundError(
            f"Airflow connection {connection_id!r}",
            f"Airflow's lookup failed ({type(error).__name__}): define the connection in "
            f"Airflow or export {airflow_env_var(connection_id)}",
        ) from None
    return {
        "conn_type": conn.conn_type,
        "host": conn.host,
        "login": conn.login,
        "password": conn.password,
        "port": conn.port,
        "schema": conn.schema,
        "extra": conn.extra_dejson,
    }


def _from_airflow(fields: Mapping[str, Any], state_type: StateType, origin: str) -> dict[str, Any]:
    """An Airflow connection's fields as a connection secret of dpone-state's keys."""
    conn_type = str(fields.get("conn_type") or "").lower().replace("-", "_")
    if AIRFLOW_CONN_TYPES.get(conn_type) != state_type:
        raise InvalidSecretError(
            origin, f"is an Airflow {conn_type!r} connection but state.type is {state_type!r}"
        )
    extra = fields.get("extra") or {}
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError:
            raise InvalidSecretError(f"{origin}: extra", "is not a JSON object") from None
    if not isinstance(extra, Mapping):
        raise InvalidSecretError(f"{origin}: extra", "is not a JSON object")
    if state_type == "bigquery":
        secret: dict[str, Any] = {}
        for key, value in extra.items():
            bare = str(key).removeprefix("extra__google_cloud_platform__")
            if bare in _AIRFLOW_GOOGLE_EXTRAS and value not in (None, ""):
                secret[_AIRFLOW_GOOGLE_EXTRAS[bare]] = value
        return secret
    if state_type == "sqlite":
        return {"path": fields.get("host") or fields.get("schema")}
    options = {
        str(key): value
        for key, value in extra.items()
        if str(key).lower() in _AIRFLOW_DRIVER_EXTRAS and value not in (None, "")
    }
    secret = {
        "host": fields.get("host"),
        "port": fields.get("port"),
        "database": fields.get("schema"),  # Airflow's "schema" is the database of SQL hooks
        "username": fields.get("login"),
        "password": fields.get("password"),
    }
    if options.get("driver") is not None:
        secret["driver"] = options.pop("driver")
    if options:
        secret["options"] = options
    return secret


def airflow_connection(
    connection_id: str, state_type: StateType, environ: Mapping[str, str]
) -> tuple[str, dict[str, Any]]:
    """Airflow's connection ``connection_id``: ``AIRFLOW_CONN_<ID>`` (a URI or JSON), else
    Airflow's own lookup when Airflow is importable; the origin and a connection secret."""
    name = airflow_env_var(connection_id)
    value = environ.get(name)
    if value:
        parsed = _env_secret(name, value)  # a JSON object, or else a URI
        fields = _airflow_uri(name, parsed) if isinstance(parsed, str) else dict(parsed)
        origin = f"environment variable {name}"
    else:
        looked_up = _airflow_lookup(connection_id)
        if looked_up is None:
            raise MissingEnvironmentVariableError(
                name,
                f"not set, and Airflow is not importable here; connection {connection_id!r} "
                "has connection_type airflow: export it as an Airflow connection URI or JSON",
            )
        fields, origin = looked_up, f"Airflow connection {connection_id!r}"
    return origin, _from_airflow(fields, state_type, origin)
