"""The manifest ``state:`` block, validated into frozen settings (no connection is made here).

Accepts YAML text, a file path or a dict: either the block itself or a whole manifest with a
``state:`` key (and optionally ``sink:``, whose connection the state may reuse).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final, Literal, Union, cast, get_args

from sqlalchemy.engine import URL, make_url

from dpone_state.dialects import (
    DEFAULT,
    STATE_TYPES,
    DefaultSchema,
    SchemaOption,
    StateType,
    by_dialect,
    by_state_type,
    for_sink,
    safe_url,
)
from dpone_state.dpone_keys import disabled_state_type, translate_dpone_keys
from dpone_state.errors import (
    MissingConnectionError,
    StateConfigError,
    StateDisabledError,
    UnknownConfigKeyError,
    UnknownStateTypeError,
)
from dpone_state.models import check_identifier
from dpone_state.tables import DEFAULT_RUN_TABLE, DEFAULT_XMIN_TABLE

__all__ = [
    "CONNECTION_TYPES",
    "DEFAULT_STATE_TYPE",
    "STATE_TYPES",
    "ConnectionType",
    "SinkConnection",
    "StateConfig",
    "StateSettings",
    "StateType",
    "TableRef",
    "VaultLocation",
    "load_state_settings",
    "read_state_document",
    "settings_from_url",
    "state_block_of",
    "with_tables",
]

log = logging.getLogger("dpone_state")

ConnectionType = Literal["vault", "env", "url", "airflow"]
CONNECTION_TYPES: Final[tuple[ConnectionType, ...]] = get_args(ConnectionType)
#: The seed: state lives in BigQuery unless ``state.type`` says otherwise.
DEFAULT_STATE_TYPE: Final[StateType] = "bigquery"
#: A connection id without ``connection_type`` is a Vault secret, as in the seed's blocks.
DEFAULT_CONNECTION_TYPE: Final[ConnectionType] = "vault"
DEFAULT_VAULT_MOUNT: Final = "secret"
_BLOCK_KEYS = ("type", "connection_id", "connection_type", "table", "run_table", "url", "vault")
_TABLE_KEYS = ("schema", "name")
_VAULT_KEYS = ("mount_point", "path")
_SINK_KEYS = ("type", "connection_id", "connection_type")
#: Top-level keys that mark a whole manifest (rather than the block itself).
_MANIFEST_KEYS = frozenset({"state", "sink", "source"})


@dataclass(frozen=True)
class TableRef:
    """A table of the state: ``schema`` is a name, ``None`` (no schema: the connection's own)
    or ``DEFAULT`` (the backend's default: ``etl_state``, BigQuery's URL dataset, none on
    SQLite). A manifest says "no schema" with ``schema: null``."""

    schema: SchemaOption
    name: str


@dataclass(frozen=True)
class VaultLocation:
    """Where a Vault connection secret lives: KV v2 ``mount_point``, ``path`` (default: the id)."""

    mount_point: str = DEFAULT_VAULT_MOUNT
    path: str | None = None


@dataclass(frozen=True)
class SinkConnection:
    """The three sink keys the state reads; the rest of ``sink:`` belongs to the runtime."""

    type: str
    connection_id: str | None = None
    connection_type: ConnectionType | None = None


@dataclass(frozen=True)
class StateSettings:
    """The validated ``state:`` block. ``url`` is a SQLAlchemy URL: its repr masks the password."""

    type: StateType
    connection_id: str | None
    connection_type: ConnectionType | None
    table: TableRef
    run_table: TableRef
    url: URL | None = None
    vault: VaultLocation = field(default_factory=VaultLocation)
    #: ``state.type`` was omitted, so the seed's default (BigQuery) applies.
    type_defaulted: bool = False
    #: ``connection_id`` / ``connection_type`` come from the sink (sink reuse).
    connection_from_sink: bool = False
    #: dpone's ``state.provisioning``: ``runtime`` creates missing tables once on open.
    provisioning: Literal["external", "runtime"] | None = None
    #: dpone's ``state.table.database`` (SQL Server): the database the state connects to.
    database: str | None = None

    @property
    def vault_path(self) -> str | None:
        """The Vault secret path: ``vault.path``, else the connection id."""
        return self.vault.path or self.connection_id

    def __repr__(self) -> str:
        """The fields, with the URL as ``safe_url`` shows it (secret query values masked)."""
        shown = ", ".join(
            f"{f.name}={safe_url(value)!r}"
            if f.name == "url" and value is not None
            else f"{f.name}={value!r}"
            for f in fields(self)
            for value in (getattr(self, f.name),)
        )
        return f"StateSettings({shown})"


StateConfig = Union[str, "os.PathLike[str]", Mapping[str, Any], StateSettings]


def _check_keys(where: str, block: Mapping[str, Any], valid: tuple[str, ...]) -> None:
    for key in block:
        if key not in valid:
            import difflib  # noqa: PLC0415 - only this message needs it (~0.6 ms of import)

            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UnknownConfigKeyError(
                f"{where}.{key}", f"unknown key; {hint}valid keys: {', '.join(valid)}"
            )


def _mapping(where: str, value: object) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise StateConfigError(where, f"must be a mapping, not {type(value).__name__}")
    return cast(Mapping[str, Any], value)


def _text(where: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        raise StateConfigError(where, "must be a non-empty string without edge spaces")
    return value


def _state_type(value: object) -> StateType:
    if value not in STATE_TYPES:
        raise UnknownStateTypeError(
            "state.type",
            f"{value!r} is not a state backend; use one of: {', '.join(STATE_TYPES)}",
        )
    return value


def _connection_type(where: str, value: object) -> ConnectionType | None:
    if value is None:
        return None
    if value not in CONNECTION_TYPES:
        raise StateConfigError(
            where, f"{value!r} is not a connection type; use one of: {', '.join(CONNECTION_TYPES)}"
        )
    return value


def _table(where: str, value: object, default_schema: SchemaOption, default_name: str) -> TableRef:
    block = _mapping(where, value)
    _check_keys(where, block, _TABLE_KEYS)
    schema = block.get("schema", default_schema)
    name = block.get("name", default_name)
    return TableRef(
        schema=_schema(f"{where}.schema", schema),
        name=check_identifier(f"{where}.name", name),
    )


def _schema(where: str, schema: object) -> SchemaOption:
    if schema is None or isinstance(schema, DefaultSchema):
        return schema
    return check_identifier(where, schema)


def _one_schema(table: TableRef, run_table: TableRef) -> None:
    """Both tables in one schema: the layout the migrations (and their version table) keep."""
    if table.schema != run_table.schema:
        raise StateConfigError(
            "state.run_table.schema",
            f"is {run_table.schema!r} but state.table.schema is {table.schema!r}: the migrations "
            "keep both tables (and their version table) in one schema; set one schema for both",
        )


def _parse_url(where: str, value: str | URL) -> URL:
    try:
        return make_url(value)
    except Exception:  # the message would echo the URL, password included
        raise StateConfigError(
            where, "is not a SQLAlchemy URL (dialect+driver://user:password@host/database)"
        ) from None


def _url(state_type: StateType, value: object, type_defaulted: bool) -> URL | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise StateConfigError("state.url", "must be a SQLAlchemy URL string")
    url = _parse_url("state.url", value)
    if url.get_backend_name() not in by_state_type(state_type).dialects:
        because = " (state.type is omitted, so BigQuery)" if type_defaulted else ""
        raise StateConfigError(
            "state.url",
            f"is a {url.get_backend_name()!r} URL but state.type is {state_type!r}{because}; "
            "set state.type to the URL's backend",
        )
    return url


def _sink(value: object) -> SinkConnection | None:
    if value is None:
        return None
    if isinstance(value, SinkConnection):
        return value
    block = _mapping("sink", value)
    sink_type = block.get("type")
    if not isinstance(sink_type, str):
        return None
    return SinkConnection(
        type=sink_type,
        connection_id=_text("sink.connection_id", block.get("connection_id")),
        connection_type=_connection_type("sink.connection_type", block.get("connection_type")),
    )


def _read(config: str | os.PathLike[str] | Mapping[str, Any]) -> Mapping[str, Any]:
    """The document: a mapping as is; a ``str`` is a file path unless it is clearly YAML text
    (it has a newline, or no file is there and it parses as a mapping), so Windows paths
    (``C:\\etl\\manifest.yaml``) work."""
    if isinstance(config, Mapping):
        return config
    if isinstance(config, str) and "\n" in config:
        return _mapping("state", _yaml(config))
    path = Path(config)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError) as error:
        if isinstance(config, str):
            try:
                inline = _yaml(config)
            except StateConfigError:
                inline = None
            if isinstance(inline, Mapping):
                return inline
        reason = error.strerror if isinstance(error, OSError) else str(error)
        raise StateConfigError(
            "state", f"cannot read the manifest file {str(path)!r}: {reason}"
        ) from None
    return _mapping("state", _yaml(text))


def _yaml(text: str) -> object:
    import yaml  # noqa: PLC0415 - only manifests given as text need PyYAML (~40 ms)

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise StateConfigError("state", f"the manifest is not valid YAML{where}") from None


def read_state_document(config: str | os.PathLike[str] | Mapping[str, Any]) -> Mapping[str, Any]:
    """The manifest or block as a mapping (YAML text or a file read once)."""
    return _read(config)


def state_block_of(document: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``state:`` block of a whole manifest, or the document itself when it is the block."""
    if _MANIFEST_KEYS & set(document):
        return _mapping("state", document.get("state"))
    return document


def load_state_settings(
    config: StateConfig, *, sink: Mapping[str, Any] | SinkConnection | None = None
) -> StateSettings:
    """Validate a ``state:`` block (or a manifest holding one) into ``StateSettings``.

    ``sink`` (a manifest's ``sink:`` block) overrides the manifest's own ``sink:``.
    Unknown keys, unknown types and unusable names raise typed errors naming the field.
    """
    if isinstance(config, StateSettings):
        return config
    document = _read(config)
    if _MANIFEST_KEYS & set(document):
        block = _mapping("state", document.get("state"))
        if sink is None:
            sink = document.get("sink")
    else:
        block = document
    disabled = disabled_state_type(block)
    if disabled is not None:
        raise StateDisabledError(
            "state.type",
            f"is {disabled!r}: the runtime keeps no state, so there is nothing to open "
            "(open_state() returns a DisabledState for it)",
        )
    block, dpone = translate_dpone_keys(block)
    _check_keys("state", block, _BLOCK_KEYS)

    type_defaulted = block.get("type") is None
    if type_defaulted:
        log.info(
            "state.type is not set: keeping the state in BigQuery (the default); set "
            "state.type to one of %s to keep it elsewhere",
            ", ".join(STATE_TYPES),
        )
    state_type = DEFAULT_STATE_TYPE if type_defaulted else _state_type(block["type"])
    connection_id = _text("state.connection_id", block.get("connection_id"))
    connection_type = _connection_type("state.connection_type", block.get("connection_type"))
    url = _url(state_type, block.get("url"), type_defaulted)
    table = _table("state.table", block.get("table"), DEFAULT, DEFAULT_XMIN_TABLE)
    run_table = _table("state.run_table", block.get("run_table"), table.schema, DEFAULT_RUN_TABLE)
    _one_schema(table, run_table)
    vault_block = _mapping("state.vault", block.get("vault"))
    _check_keys("state.vault", vault_block, _VAULT_KEYS)
    vault = VaultLocation(
        mount_point=_text("state.vault.mount_point", vault_block.get("mount_point"))
        or DEFAULT_VAULT_MOUNT,
        path=_text("state.vault.path", vault_block.get("path")),
    )

    from_sink = False
    if url is not None:
        if connection_type not in (None, "url"):
            raise StateConfigError(
                "state.connection_type",
                f"is {connection_type!r} but state.url is set; remove one of them",
            )
        connection_type = "url"
    elif connection_type == "url":
        raise MissingConnectionError(
            "state.url", "connection_type is 'url': set state.url to a SQLAlchemy URL"
        )
    elif connection_id is None and by_state_type(state_type).default_url is None:
        reused = _sink(sink)
        if reused is None or not _reusable(state_type, type_defaulted, reused):
            raise MissingConnectionError(
                "state.connection_id", _missing_connection_hint(state_type, type_defaulted, reused)
            )
        connection_id = reused.connection_id
        connection_type = connection_type or reused.connection_type
        from_sink = True
    if connection_id is not None and connection_type is None:
        connection_type = DEFAULT_CONNECTION_TYPE

    return StateSettings(
        type=state_type,
        connection_id=connection_id,
        connection_type=connection_type,
        table=table,
        run_table=run_table,
        url=url,
        vault=vault,
        type_defaulted=type_defaulted,
        connection_from_sink=from_sink,
        provisioning=dpone.provisioning,
        database=dpone.database,
    )


def _reusable(state_type: StateType, type_defaulted: bool, sink: SinkConnection) -> bool:
    """The sink's connection serves the state if it is of the same type: MSSQL / PostgreSQL
    (state.type set), or BigQuery (also when state.type is omitted, as in dpone)."""
    return (
        (not type_defaulted or state_type == "bigquery")
        and sink.connection_id is not None
        and _sink_state_type(sink) == state_type
    )


def _sink_state_type(sink: SinkConnection) -> StateType | None:
    row = for_sink(sink.type)
    return row.state_type if row is not None else None


def _missing_connection_hint(
    state_type: StateType, type_defaulted: bool, sink: SinkConnection | None
) -> str:
    what = "set state.connection_id (with state.connection_type vault, env or airflow) or state.url"
    sink_type = _sink_state_type(sink) if sink else None
    if sink is not None and sink_type is not None and sink.connection_id is not None:
        if type_defaulted:
            return (
                f"state.type is omitted, so the state is kept in BigQuery, which needs a "
                f"connection: {what}; or set state.type: {sink_type} to reuse the "
                f"{sink.type} sink's connection"
            )
        return (
            f"the {sink.type} sink's connection serves only state.type {sink_type}, not "
            f"{state_type!r}: {what}"
        )
    return f"no connection for the {state_type} state: {what}" + (
        " (the sink's connection is reused only for an mssql, postgres or bigquery sink with "
        "a connection_id and the same state.type)"
    )


def settings_from_url(
    url: str | URL,
    *,
    schema: SchemaOption = DEFAULT,
    xmin_table: str | None = None,
    run_table: str | None = None,
) -> StateSettings:
    """Settings for a state database given by URL alone (``--url``, ``DPONE_STATE_URL``): the
    ``state.type`` is the URL's backend; the same settings a manifest's ``state.url`` gives."""
    parsed = _parse_url("url", url)
    state_type = by_dialect(parsed.get_backend_name()).state_type
    settings = StateSettings(
        type=state_type,
        connection_id=None,
        connection_type="url",
        table=TableRef(DEFAULT, DEFAULT_XMIN_TABLE),
        run_table=TableRef(DEFAULT, DEFAULT_RUN_TABLE),
        url=parsed,
    )
    return with_tables(settings, schema=schema, xmin_table=xmin_table, run_table=run_table)


def with_tables(
    settings: StateSettings,
    *,
    schema: SchemaOption = DEFAULT,
    xmin_table: str | None = None,
    run_table: str | None = None,
) -> StateSettings:
    """``settings`` with the tables moved (a schema given for both, other names), as the
    command line's ``--schema`` / ``--no-schema`` / ``--xmin-table`` / ``--run-table`` say."""
    both = settings.table.schema if isinstance(schema, DefaultSchema) else schema
    both = _schema("schema", both)
    xmin_name = check_identifier("xmin_table", xmin_table or settings.table.name)
    run_name = check_identifier("run_table", run_table or settings.run_table.name)
    return replace(settings, table=TableRef(both, xmin_name), run_table=TableRef(both, run_name))
