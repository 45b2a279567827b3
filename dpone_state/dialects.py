"""The registry of backend facts: one frozen row per backend, and the typed hooks it names.

Every other module asks this one (``by_dialect``, ``by_state_type``, ``for_sink``) instead of
keeping its own dict of dialect names. A row holds facts as data; the code a backend needs
beyond facts (engine options, connect-time setup, reading its driver's errors) is a
``BackendHooks`` subclass in the backend's hook module under ``dpone_state.backends``, loaded
by name the first time it is needed, so importing ``dpone_state`` imports no driver.

The per-concern SQL spellings stay where they are: column type variants in ``coltypes.py``,
the one ``Upsert`` construct compiled per dialect in ``upsert.py``, DDL guards in ``ddl.py``.

Adding a backend is one ``Backend`` row in ``BACKENDS`` plus its hook module.
"""

from __future__ import annotations

import importlib
import os
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final, Literal, get_args

from sqlalchemy.engine import URL, Dialect, Engine, make_url

from dpone_state.errors import UnsupportedBackendError

__all__ = [
    "BACKENDS",
    "BIGQUERY_RETRY",
    "DEFAULT",
    "DEFAULT_SCHEMA",
    "DEFAULT_URL",
    "OFFLINE_DIALECTS",
    "SHIPPED_OFFLINE_DIALECTS",
    "STATE_TYPES",
    "SUPPORTED_DIALECTS",
    "Backend",
    "BackendHooks",
    "ConnectionKind",
    "DefaultSchema",
    "PruneBatches",
    "RetryPolicy",
    "RunIdKind",
    "SchemaOption",
    "StateType",
    "by_dialect",
    "by_state_type",
    "find_dialect",
    "for_sink",
    "safe_url",
    "same_database",
]

StateType = Literal["sqlite", "postgres", "mssql", "bigquery", "mysql"]
#: How a backend keeps the run table's ``id``: an identity where the legacy table has one, a
#: plain nullable column where the dialect cannot auto-number outside the key, or none.
RunIdKind = Literal["identity", "plain", "none"]
#: What a connection secret describes: a file (``path``), a server (host, port, database, …)
#: or a cloud project (BigQuery: project, dataset, credentials).
ConnectionKind = Literal["file", "server", "project"]
#: How ``delete_old_states`` deletes one batch of a batched prune (each batch its own
#: transaction): ``"delete_batch"`` — one statement, ``batch_delete.DeleteBatch`` compiled for
#: the dialect (``TOP (n)``, ``rowid IN (… LIMIT n)``, ``ORDER BY … LIMIT n``); ``"boundary"`` —
#: read the batch's last key on the retention index, then delete the range up to it (two
#: statements, plain SQL); ``"unbatched"`` — ``batch_size`` is ignored, one DELETE.
PruneBatches = Literal["delete_batch", "boundary", "unbatched"]

#: The schema (MySQL: database; BigQuery: dataset) of the state tables where there are schemas.
DEFAULT_SCHEMA: Final = "etl_state"
#: The embedded default: an SQLite file in the working directory (the one place that knows it).
DEFAULT_URL: Final = "sqlite:///dpone_state.db"


class DefaultSchema:
    """The backend's default schema: ``etl_state``; the URL's dataset on BigQuery; none on
    SQLite. The one convention everywhere (storages, manifest, migrations, CLI): ``DEFAULT``
    is this default, ``None`` is "no schema" (the connection's own), a string is that schema.
    """

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Final = DefaultSchema()
#: A configured schema: a name, ``None`` (no schema) or ``DEFAULT`` (the backend's default).
SchemaOption = str | None | DefaultSchema


#: Query parameters whose values are secrets, by a secret-like part of their name: passwords
#: (``password``, ``sslpassword``, ODBC ``PWD``), tokens, keys, credentials (BigQuery's
#: ``credentials_base64``), a whole ODBC connection string.
_SECRET_QUERY_NAME: Final = re.compile(
    r"pass|pwd|secret|token|credential|key|auth|signature|private|session|odbc_connect",
    re.IGNORECASE,
)
_MASK: Final = "***"


def safe_url(url: str | URL) -> str:
    """The URL for logs, messages and reprs: the password field masked, and the value of every
    query parameter whose name is secret-like (``password``, ``sslpassword``, ``token``, …).

    Works on the URL's fields, never on free text (a password that also occurs elsewhere in a
    message must not turn the rest of it into a puzzle that spells it out).
    """
    try:
        parsed = make_url(url)
    except Exception:  # an unparsable URL may itself contain a secret
        return "<unparsable URL>"
    hidden = {key: _MASK for key in parsed.query if _SECRET_QUERY_NAME.search(key)}
    if not hidden:
        return parsed.render_as_string(hide_password=True)
    rendered = parsed.update_query_dict(hidden).render_as_string(hide_password=True)
    return rendered.replace("%2A%2A%2A", _MASK)  # the mask as the password field shows it


class BackendHooks:
    """The code of one backend beyond its facts; each backend's hook module subclasses it.

    The defaults are "nothing special": no engine options, the URL as given, no connect-time
    setup, no driver error recognised.
    """

    def engine_options(self, url: URL) -> dict[str, Any]:
        """Keyword arguments for ``sqlalchemy.create_engine`` (the caller's options win)."""
        return {}

    def engine_url(self, url: URL) -> URL:
        """The URL the dialect gets (BigQuery moves the credentials out of it)."""
        return url

    def prepare_engine(self, engine: Engine) -> None:
        """Connect-time setup (event listeners) on a new engine."""

    def set_autocommit(self, dbapi_connection: Any, on: bool) -> None:
        """Switch a DBAPI connection in or out of autocommit (without a round trip for the row's
        ``client_autocommit_drivers``; one, only when the mode changes, for its
        ``server_autocommit_drivers``)."""
        raise NotImplementedError(type(self).__name__)

    def in_autocommit(self, dbapi_connection: Any) -> bool:
        """Whether a DBAPI connection is in autocommit, read without a round trip (the row's
        ``server_autocommit_drivers``)."""
        raise NotImplementedError(type(self).__name__)

    def replayed_listeners(self) -> frozenset[Callable[..., Any]]:
        """Dialect listeners of ``prepare_engine`` that depend on the statement alone and that
        ``input_sizes`` reproduces when a statement is compiled once: they leave the storages'
        direct path (``execution.StatementRunner``) usable, where any other listener does not."""
        return frozenset()

    def input_sizes(self, binds: Sequence[Any], dialect: Dialect) -> list[Any] | None:
        """What Core passes to ``cursor.setinputsizes`` for a statement whose placeholders, in
        the driver's order, are ``binds`` (``None``: the driver declares nothing)."""
        return None

    def url_schema(self, url: URL) -> str | None:
        """The default schema a URL names, if the backend's URLs can (BigQuery's dataset)."""
        return None

    def is_missing_table(self, orig: BaseException) -> bool:
        """Whether the driver's error says the state table (or its schema) does not exist."""
        return False

    def is_missing_column(self, orig: BaseException) -> bool:
        """Whether the driver's error says a column the statement names does not exist."""
        return False

    def is_transient_conflict(self, orig: BaseException) -> bool:
        """Whether the driver's error is a deadlock or serialization failure (rolled back)."""
        return False

    def is_lock_timeout(self, orig: BaseException) -> bool:
        """Whether the statement gave up waiting for a lock or on a time limit, or was
        cancelled by an operator, so the server rolled it back (nothing applied)."""
        return False

    def is_authentication_failure(self, orig: BaseException) -> bool:
        """Whether connecting failed on credentials or a missing database (configuration)."""
        return False


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and after how long, a storage call is sent again: a write that lost a
    deadlock or serialization conflict (it changed nothing), an idempotent read whose
    connection was lost.

    Write attempt ``n`` (0-based) is followed by a wait of ``min(cap, base * 2**n)`` seconds
    times a random factor in ``[1 - jitter, 1 + jitter]``, so that writers that collided do not
    collide again in step. The defaults fit row-locking servers (a deadlock victim retries
    within milliseconds).
    """

    write_attempts: int = 5
    read_attempts: int = 2
    base_seconds: float = 0.005
    cap_seconds: float = 0.5
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after write attempt ``attempt`` (0-based) failed."""
        spread = (rng or _RNG).uniform(1 - self.jitter, 1 + self.jitter)
        return float(min(self.cap_seconds, self.base_seconds * 2**attempt) * spread)


_RNG = random.Random()  # noqa: S311 - jitter, not security

#: BigQuery: every statement is a job of ~1 s, a table queues at most 20 mutating DML and
#: conflicting transactions fail at commit; waiting milliseconds would only fail again. Seven
#: attempts over about 47 s of waits (1, 2, 4, 8, 16, 16 s, each ±50 %).
BIGQUERY_RETRY: Final = RetryPolicy(write_attempts=7, base_seconds=1.0, cap_seconds=16.0)


@dataclass(frozen=True)
class Backend:
    """Everything dpone-state knows about one backend, as data."""

    #: ``state.type`` in a manifest.
    state_type: StateType
    #: SQLAlchemy dialect names (``engine.dialect.name``); the first is the canonical one.
    dialects: tuple[str, ...]
    #: SQLAlchemy ``drivername`` of a URL built from a connection secret.
    drivername: str
    #: The pip extra that installs the driver (``None``: in the standard library).
    extra: str | None
    #: What a schema is there (``None``: no schemas; a schema would be an attached database).
    schema_meaning: str | None
    run_id_kind: RunIdKind
    connection_kind: ConnectionKind
    #: Most bound parameters one statement may carry (``None``: no limit that matters).
    max_parameters: int | None = None
    #: ``sink.type`` values whose connection the state may reuse (with this ``state.type``).
    sink_types: tuple[str, ...] = ()
    #: Alembic can write an offline (``--sql``) script for it.
    offline_sql: bool = True
    #: A generated offline script is shipped under ``migrations/sql/<dialect>.sql``.
    shipped_offline_script: bool = False
    #: Drivers whose connections switch to autocommit without talking to the server: there
    #: each call's single statement runs in autocommit (one round trip, not BEGIN + COMMIT).
    client_autocommit_drivers: frozenset[str] = frozenset()
    #: Drivers whose autocommit switch is a statement at the server: a connection a storage
    #: used stays in autocommit, switched back for anyone else (``backends.keep_autocommit``).
    server_autocommit_drivers: frozenset[str] = frozenset()
    #: The URL of a state with no connection configured (SQLite's embedded file), if any.
    default_url: str | None = None
    #: The URL's database is a file on this machine (connecting creates it).
    database_is_file: bool = False
    #: The ODBC driver a connection secret gets unless it names another (``driver``).
    odbc_driver: str | None = None
    #: Whether the tables carry indexes beyond the key (BigQuery has none).
    has_indexes: bool = True
    #: The port a server URL without one means (two URLs name one database only if equal).
    default_port: int | None = None
    #: A load and its checkpoint can commit in one transaction (``load_exactly_once``): the
    #: driver's transactions span statements (BigQuery's DBAPI commits each statement alone).
    transactional_loads: bool = True
    #: ``SELECT … FOR UPDATE`` exists: the receipt probe waits for a checkpoint write whose
    #: transaction is still open (a commit in flight) instead of reading around it.
    row_locks: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: The URL drivers (``+driver``) the extra installs; the first is the one to advise.
    extra_drivers: tuple[str, ...] = ()
    #: Each statement commits by itself when it runs (no transaction to roll back): a lost
    #: reply after sending a write leaves its outcome unknown (BigQuery's DML jobs).
    self_committing: bool = False
    #: The longest identifier the backend keeps as written, and in what it counts (``None``:
    #: no limit that matters). Derived names (keys, indexes, DEFAULT constraints) count too.
    name_limit: tuple[int, Literal["bytes", "characters"]] | None = None
    #: Identifiers hold only characters of the Basic Multilingual Plane (MySQL/MariaDB).
    bmp_only_names: bool = False
    #: A database lock serialises migrations and ``create_tables()`` (``locks.py``); without
    #: one (BigQuery) a provisioning try that lost a race is made again (up to 3 tries).
    has_database_lock: bool = True
    #: Rows per batch when ``delete_old_states`` is given no ``batch_size`` (SQL Server: always
    #: in batches, below the lock count where the server escalates to a table lock); ``None``:
    #: one DELETE unless ``batch_size`` is given.
    prune_batch_rows: int | None = None
    #: How a batched prune deletes each batch (``PruneBatches``). PostgreSQL keeps the
    #: boundary: its range DELETE on the retention index beats a ``ctid`` subquery (the bench).
    #: BigQuery is unbatched: each batch would be a billed job, and a DELETE blocks no upsert.
    prune_batches: PruneBatches = "boundary"
    #: Whether keys may compare case-insensitively (legacy SQL Server collations): a bulk save
    #: then refuses two keys that differ only by case (``KeyCollisionError``).
    case_insensitive_keys: bool = False
    #: Whether compare-and-set first writes take the table's lock row in a transaction
    #: (BigQuery: an insert conflicts with nothing; ``upsert.LockedScript``).
    first_write_lock: bool = False
    #: ``module:Class`` of the backend's ``BackendHooks``, imported when first needed.
    hooks_path: str = ""

    @property
    def dialect(self) -> str:
        """The canonical SQLAlchemy dialect name."""
        return self.dialects[0]

    @property
    def has_schemas(self) -> bool:
        """Whether tables live in schemas (else the schema is ``None``)."""
        return self.schema_meaning is not None

    def hooks(self) -> BackendHooks:
        """The backend's hooks (the module is imported on first use)."""
        return _load_hooks(self.hooks_path)

    def default_schema(self, url: URL | None = None) -> str | None:
        """The schema of the state tables when none is configured: none where the backend has
        no schemas, else the one the URL names (BigQuery's dataset), else ``etl_state``."""
        if not self.has_schemas:
            return None
        named = self.hooks().url_schema(url) if url is not None else None
        return named or DEFAULT_SCHEMA

    def resolve_schema(self, schema: SchemaOption, url: URL | None = None) -> str | None:
        """``schema`` with ``DEFAULT`` replaced by this backend's default (see ``default_schema``)."""
        return self.default_schema(url) if isinstance(schema, DefaultSchema) else schema

    def autocommit_switch(self, driver: str) -> Callable[[Any, bool], None] | None:
        """How to put a DBAPI connection of ``driver`` in autocommit for free, if it can."""
        if driver not in self.client_autocommit_drivers:
            return None
        return self.hooks().set_autocommit

    def kept_autocommit(
        self, driver: str
    ) -> tuple[Callable[[Any, bool], None], Callable[[Any], bool]] | None:
        """For a driver whose switch is a round trip: how to switch it and how to read the mode."""
        if driver not in self.server_autocommit_drivers:
            return None
        hooks = self.hooks()
        return hooks.set_autocommit, hooks.in_autocommit


@cache
def _load_hooks(path: str) -> BackendHooks:
    module_name, _, class_name = path.partition(":")
    hooks = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(hooks, type) and issubclass(hooks, BackendHooks)):
        raise TypeError(f"{path} is not a BackendHooks class")
    return hooks()


BACKENDS: Final[tuple[Backend, ...]] = (
    Backend(
        state_type="sqlite",
        dialects=("sqlite",),
        drivername="sqlite",
        extra=None,
        schema_meaning=None,
        run_id_kind="plain",
        connection_kind="file",
        client_autocommit_drivers=frozenset({"pysqlite"}),
        default_url=DEFAULT_URL,
        database_is_file=True,
        prune_batches="delete_batch",  # by rowid: the boundary read is not covered by an index
        hooks_path="dpone_state.backends.sqlite:SqliteHooks",
    ),
    Backend(
        state_type="postgres",
        dialects=("postgresql",),
        drivername="postgresql+psycopg2",
        extra="postgres",
        schema_meaning="schema",
        run_id_kind="identity",
        connection_kind="server",
        sink_types=("postgres", "postgresql"),
        shipped_offline_script=True,
        default_port=5432,
        row_locks=True,
        client_autocommit_drivers=frozenset({"psycopg2", "psycopg"}),
        extra_drivers=("psycopg2", "psycopg"),
        name_limit=(63, "bytes"),  # longer names are truncated silently
        hooks_path="dpone_state.backends.postgres:PostgresHooks",
    ),
    Backend(
        state_type="mssql",
        dialects=("mssql",),
        drivername="mssql+pyodbc",
        extra="mssql",
        schema_meaning="schema",
        run_id_kind="identity",
        connection_kind="server",
        max_parameters=2100,
        prune_batch_rows=4000,
        prune_batches="delete_batch",
        case_insensitive_keys=True,
        sink_types=("mssql",),
        default_port=1433,
        odbc_driver="ODBC Driver 18 for SQL Server",
        shipped_offline_script=True,
        server_autocommit_drivers=frozenset({"pyodbc"}),  # SET IMPLICIT_TRANSACTIONS
        extra_drivers=("pyodbc",),
        name_limit=(128, "characters"),  # sysname
        hooks_path="dpone_state.backends.mssql:MssqlHooks",
    ),
    Backend(
        state_type="bigquery",
        dialects=("bigquery",),
        drivername="bigquery",
        extra="bigquery",
        schema_meaning="dataset",
        run_id_kind="none",
        connection_kind="project",
        sink_types=("bigquery",),  # dpone's BigQuery state runs on the sink's connection
        offline_sql=False,
        has_indexes=False,
        extra_drivers=("bigquery",),
        self_committing=True,
        name_limit=(1024, "bytes"),
        has_database_lock=False,
        retry=BIGQUERY_RETRY,
        prune_batches="unbatched",
        first_write_lock=True,
        transactional_loads=False,
        hooks_path="dpone_state.backends.bigquery:BigQueryHooks",
    ),
    Backend(
        state_type="mysql",
        dialects=("mysql", "mariadb"),
        drivername="mysql+pymysql",
        extra="mysql",
        schema_meaning="database",
        run_id_kind="plain",
        connection_kind="server",
        extra_drivers=("pymysql",),
        name_limit=(64, "characters"),  # error 1059 beyond
        bmp_only_names=True,
        default_port=3306,
        row_locks=True,
        prune_batches="delete_batch",  # DELETE … ORDER BY … LIMIT n: one range scan per batch
        server_autocommit_drivers=frozenset({"pymysql"}),
        hooks_path="dpone_state.backends.mysql:MysqlHooks",
    ),
)

_BY_DIALECT: Final = {name: row for row in BACKENDS for name in row.dialects}
_BY_STATE_TYPE: Final = {row.state_type: row for row in BACKENDS}

STATE_TYPES: Final[tuple[StateType, ...]] = get_args(StateType)
SUPPORTED_DIALECTS: Final = frozenset(_BY_DIALECT)
#: Dialects Alembic writes offline scripts for (``dpone-state sql --dialect``).
OFFLINE_DIALECTS: Final = tuple(row.dialect for row in BACKENDS if row.offline_sql)
#: Dialects whose offline script is shipped under ``migrations/sql/``.
SHIPPED_OFFLINE_DIALECTS: Final = tuple(
    row.dialect for row in BACKENDS if row.shipped_offline_script
)


def find_dialect(dialect_name: str | None) -> Backend | None:
    """The row of a SQLAlchemy dialect name, or ``None`` for one dpone-state does not know."""
    return _BY_DIALECT.get(dialect_name or "")


def by_dialect(dialect_name: str) -> Backend:
    """The row of a SQLAlchemy dialect name; an unknown one is ``UnsupportedBackendError``."""
    row = _BY_DIALECT.get(dialect_name)
    if row is None:
        valid = ", ".join(sorted(SUPPORTED_DIALECTS))
        raise UnsupportedBackendError(
            f"dialect {dialect_name!r} is not supported by dpone-state; use one of: {valid}"
        )
    return row


def by_state_type(state_type: StateType) -> Backend:
    """The row of a manifest's ``state.type``."""
    return _BY_STATE_TYPE[state_type]


def same_database(a: URL, b: URL) -> bool:
    """Whether two URLs name one database: backend, host, port (the default filled in) and
    database (an SQLite file by its real path); users and options do not matter."""
    row = find_dialect(a.get_backend_name())
    if row is None or row is not find_dialect(b.get_backend_name()):
        return False
    if not row.has_schemas and row.connection_kind == "file":
        names = [u.database or "" for u in (a, b)]
        if any(name in ("", ":memory:") or name.startswith("file:") for name in names):
            return False  # a private in-memory database: only the same engine shares it
        return os.path.realpath(names[0]) == os.path.realpath(names[1])
    ports = [u.port or row.default_port for u in (a, b)]
    if (a.host or "").lower() != (b.host or "").lower() or ports[0] != ports[1]:
        return False
    if a.database != b.database:
        return False
    return a.host is not None or dict(a.query) == dict(b.query)  # an ODBC string names it


def for_sink(sink_type: str) -> Backend | None:
    """The backend whose state may reuse a sink of ``sink_type``'s connection, if any."""
    return next((row for row in BACKENDS if sink_type in row.sink_types), None)
