"""The two storages and their eight methods, written once in Core for every backend.

Each public method is one SQL statement (no existence check, no DDL, no read-before-write).
Tables come from the migrations or one explicit ``create_tables()`` call.
"""

from __future__ import annotations

import logging
import os
import shlex
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from enum import Enum
from itertools import chain
from typing import Any, ClassVar, Final, cast

from sqlalchemy import (
    BindParameter,
    Integer,
    Select,
    Table,
    bindparam,
    case,
    delete,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.engine import Connection, CursorResult, Engine, Row
from sqlalchemy.exc import DBAPIError

from dpone_state.batch_delete import DeleteBatch
from dpone_state.coltypes import revision_or_zero
from dpone_state.ddl import (
    CreateTableIfMissing,
    add_missing_nullable_columns,
    create_schema_if_missing,
    sqlite_schema_attached,
    sqlite_schema_reason,
)
from dpone_state.dialects import (
    DEFAULT,
    RetryPolicy,
    SchemaOption,
    StateType,
    by_dialect,
    by_state_type,
    same_database,
)
from dpone_state.engine import autocommit_switch, create_state_engine, safe_url
from dpone_state.errors import (
    BackendMismatchError,
    DatabaseMismatchError,
    InvalidStateError,
    KeyCollisionError,
    RevisionConflictError,
    StateDatabaseError,
    StateDeadlockError,
    StateError,
    StateNotProvisionedError,
    StateOutcomeUnknownError,
    StateRowCountUnknownError,
    StateUnavailableError,
    first_line,
)
from dpone_state.execution import StatementRunner, WriteResult
from dpone_state.failures import (
    Failure,
    classify,
    is_missing_table,
    is_transient_conflict,
    to_state_error,
)
from dpone_state.locks import migration_lock, provisioning_lock_name
from dpone_state.models import (
    LOAD_ID_MAX,
    MAX_BIGINT,
    MAX_DAG_ID,
    Checkpoint,
    RunState,
    XMinState,
    check_identifier,
    check_key_name,
    check_name,
    prune_cutoff,
    runs_from_rows,
    to_utc,
    utc_now,
)
from dpone_state.tables import (
    BIGQUERY_LOCK_TABLE,
    DEFAULT_RUN_TABLE,
    DEFAULT_XMIN_TABLE,
    LAST_LOAD_ID,
    LOADED_AT,
    UPDATED_AT,
    check_backend_names,
    lock_table,
    new_metadata,
    run_id_kind,
    run_state_table,
    xmin_state_table,
)
from dpone_state.upsert import (
    BIGQUERY_CONFLICT_MARKER,
    BIGQUERY_NO_LOCK_MARKER,
    INCOMING,
    IncomingWhen,
    LockedScript,
    UpdateValue,
    Upsert,
    script_string,
    upsert_applied,
)

__all__ = ["DEFAULT", "ProbeResult", "RunStateStorage", "XMinStateStorage"]

log = logging.getLogger("dpone_state")


#: The default retry policy's attempts (each backend's row may carry its own ``retry``).
WRITE_ATTEMPTS: Final = RetryPolicy.write_attempts
READ_ATTEMPTS: Final = RetryPolicy.read_attempts
#: Writes keep their row count from when they ran (psycopg 3 forgets an INSERT's later).
_KEEP_ROWCOUNT: Final = {"preserve_rowcount": True}
#: Checkpoints per statement in ``save_states``.
BULK_ROWS = 500
#: Largest page ``get_run_states_by_dag`` returns in one call.
MAX_LIMIT = 10_000
#: Page statements (one per distinct ``limit``) a run storage keeps.
_MAX_PAGES = 64


class _Call:
    """How far one write got: whether its statement may have reached the server, whether it
    commits by itself (autocommit, BigQuery) and whether its COMMIT was in flight."""

    __slots__ = ("committing", "self_committing", "sent")

    def __init__(self, self_committing: bool = False) -> None:
        self.sent = False
        self.committing = False
        self.self_committing = self_committing


class _Storage:
    """Shared plumbing: engine, dialect check, table, error translation."""

    #: The backend a backend-specific subclass accepts (``None``: every supported one).
    backend: ClassVar[StateType | None] = None
    default_table: ClassVar[str]
    #: Columns dpone-state adds to dpone's table (named when they are missing).
    _added_columns: ClassVar[str]

    def __init__(
        self,
        connector: Engine | str,
        schema: SchemaOption = DEFAULT,
        table: str | None = None,
    ) -> None:
        if isinstance(connector, Engine):
            engine = connector
        elif isinstance(connector, str):
            engine = create_state_engine(connector)
        else:
            raise TypeError(
                f"connector must be a SQLAlchemy Engine or a URL string, not "
                f"{type(connector).__name__}"
            )
        row = by_dialect(engine.dialect.name)
        if self.backend is not None and row is not by_state_type(self.backend):
            wanted = by_state_type(self.backend).dialects
            raise BackendMismatchError(
                f"{type(self).__name__} needs a {' or '.join(wanted)} engine, "
                f"got {engine.dialect.name!r} ({safe_url(engine.url)}); use the storage class "
                "of that backend, or the generic XMinStateStorage / RunStateStorage"
            )
        schema = row.resolve_schema(schema, engine.url)
        #: The backend's row in the registry (its facts: limits, retry policy, …).
        self.backend_row = row
        self.engine: Engine = engine
        self._autocommit = autocommit_switch(engine)
        self._runner = StatementRunner(engine)
        self.schema: str | None = None if schema is None else check_identifier("schema", schema)
        self.table_name: str = check_identifier("table", table or self.default_table)
        self.table: Table = self._build_table()
        # Names the backend would truncate or refuse, derived ones (keys, indexes) included.
        check_backend_names(engine.dialect.name, self.schema, self.table)

    def _build_table(self) -> Table:
        raise NotImplementedError

    @property
    def autocommit(self) -> bool:
        """Whether each call's one statement runs alone in autocommit (one round trip)."""
        return self._autocommit is not None

    @property
    def qualified_name(self) -> str:
        """``schema.table`` as configured (for messages)."""
        return f"{self.schema}.{self.table_name}" if self.schema else self.table_name

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({safe_url(self.engine.url)!r}, table={self.qualified_name!r})"
        )

    #: The ``dpone-state`` option that names this storage's table.
    _table_option: ClassVar[str]

    def _shown_url(self) -> str:
        """The engine's URL for messages: password masked, an SQLite file made absolute (so the
        advice names the file wherever it is run from)."""
        url = self.engine.url
        if self.backend_row.connection_kind == "file" and url.database not in (None, ":memory:"):
            url = url.set(database=os.path.abspath(str(url.database)))
        return safe_url(url)

    @property
    def upgrade_command(self) -> str:
        """The exact ``dpone-state upgrade`` that provisions this store (password masked)."""
        parts = ["dpone-state", "upgrade", "--url", self._shown_url()]
        if self.schema is not None:
            parts += ["--schema", self.schema]
        elif self.backend_row.has_schemas:
            parts.append("--no-schema")
        if self.table_name != self.default_table:
            parts += [self._table_option, self.table_name]
        return " ".join(shlex.quote(part) for part in parts)

    @property
    def _upgrade_call(self) -> str:
        """``upgrade_command`` as a ``migrate.upgrade`` call on the caller's ``url``."""
        arguments = ["url"]
        if self.schema is not None:
            arguments.append(f"schema={self.schema!r}")
        elif self.backend_row.has_schemas:
            arguments.append("schema=None")
        if self.table_name != self.default_table:
            arguments.append(f"{self._table_option[2:].replace('-', '_')}={self.table_name!r}")
        return f"dpone_state.migrate.upgrade({', '.join(arguments)})"

    def _lock_missing(self, error: DBAPIError) -> bool:
        """BigQuery: the first-write lock table (or its row for this table) is missing."""
        text = str(error.orig)
        if BIGQUERY_NO_LOCK_MARKER in text:
            return True
        dialect = self.engine.dialect.name
        return BIGQUERY_LOCK_TABLE in text and is_missing_table(error, dialect)

    def _error(
        self, error: DBAPIError, call: _Call | None = None, *, connecting: bool = False
    ) -> StateError:
        """The typed error a failed statement (or connection attempt) means for the caller.

        A lost connection after a write was sent is "outcome unknown" where the statement
        commits by itself (autocommit, BigQuery) or while its COMMIT was in flight; anywhere
        else the server rolls the open transaction back, so nothing was applied.
        """
        dialect = self.engine.dialect.name
        if self._lock_missing(error):
            return self._not_provisioned(
                f"its lock row in {BIGQUERY_LOCK_TABLE} is missing: a table of dpone's not "
                "yet migrated"
            )
        kind = classify(error, dialect, connecting=connecting)
        if kind == Failure.MISSING_TABLE:
            return self._not_provisioned("it does not exist")
        if kind == Failure.MISSING_COLUMN:
            # dpone's own table, never migrated (or downgraded under a running runtime).
            return self._not_provisioned(
                f"it lacks a column of dpone-state ({self._added_columns}): a table of "
                "dpone's not yet migrated, or one downgraded"
            )
        return to_state_error(
            error,
            dialect,
            where=safe_url(self.engine.url),
            table=self.qualified_name,
            connecting=connecting,
            outcome_unknown=call is not None
            and call.sent
            and (call.self_committing or call.committing),
        )

    @contextmanager
    def _translated_errors(self, call: _Call | None = None) -> Iterator[None]:
        """Every failure leaves as a ``StateError`` (nothing raw escapes the public API)."""
        try:
            yield
        except StateError:
            raise
        except DBAPIError as error:
            raise self._error(error, call) from error
        except Exception as error:  # a driver's own error (an overflow, an encoding, ...)
            raise StateDatabaseError(
                f"a statement on {self.qualified_name} failed: {type(error).__name__}: "
                f"{first_line(error)}"
            ) from error

    def _sqlite_schema_attached(self) -> bool:
        """Whether the SQLite connection has a database attached under the schema's name."""
        try:
            with self.engine.connect() as conn:
                return sqlite_schema_attached(conn, str(self.schema))
        except DBAPIError:
            return True  # cannot tell: give the ordinary advice

    def _not_provisioned(self, detail: str = "") -> StateNotProvisionedError:
        """The error for a missing (or unmigrated) table, naming the exact command that
        provisions it; on SQLite, a schema that is no attached database says so instead."""
        shown = self._shown_url()
        if not self.backend_row.has_schemas and self.schema and not self._sqlite_schema_attached():
            return StateNotProvisionedError(
                self.qualified_name,
                database=shown,
                reason=sqlite_schema_reason(
                    str(self.schema), f"dpone-state upgrade --url {shlex.quote(shown)}"
                ),
            )
        return StateNotProvisionedError(
            self.qualified_name,
            detail,
            database=shown,
            command=self.upgrade_command,
            python=self._upgrade_call,
        )

    @contextmanager
    def _connect(self, *, write: bool, call: _Call | None = None) -> Iterator[Connection]:
        """A connection for one statement: in autocommit where the driver switches for free
        (one round trip a call), else in a transaction committed on success (``write``)."""
        with self._translated_errors(call):
            try:
                conn = self.engine.connect()
            except DBAPIError as error:
                raise self._error(error, connecting=True) from error
            with conn:
                switch = self._autocommit
                if switch is None:
                    if write:
                        with conn.begin():
                            yield conn
                            if call is not None:
                                call.committing = True
                    else:
                        yield conn
                    return
                if call is not None:
                    call.self_committing = True
                dbapi_connection = conn.connection.dbapi_connection
                switch(dbapi_connection, True)  # one statement, atomic alone: no BEGIN/COMMIT
                try:
                    yield conn
                finally:
                    try:
                        switch(dbapi_connection, False)
                    except Exception:  # a connection the server closed: never reuse it
                        conn.invalidate()

    def _execute_write(
        self, statement: Any, params: Mapping[str, Any], *, core: bool = False
    ) -> WriteResult:
        """One write: compiled once and run on the pooled connection where ``StatementRunner``
        may, else (or with ``core``) through Core (listeners, echo, other drivers). Failures
        leave as ``StateError``s; a lost reply after the statement was sent in autocommit (the
        direct path always is) is ``StateOutcomeUnknownError``."""
        runner = self._runner
        if not core and runner.usable():
            plan = runner.plan(statement)
            if plan is not None:
                try:
                    return runner.write(plan, params)
                except StateError:  # no connection could be had: nothing was sent
                    raise
                except Exception:
                    # Once on its way, the statement commits by itself (autocommit).
                    sent = _Call(self_committing=True)
                    sent.sent = True
                    with self._translated_errors(sent):  # no context manager on the happy path
                        raise
        call = _Call(self.backend_row.self_committing)
        with self._connect(write=True, call=call) as conn:
            call.sent = True
            # The row count is read when the statement ran: some drivers (psycopg 3) forget it
            # once the cursor is closed, and an INSERT's is not kept otherwise.
            result: CursorResult[Any] = conn.execute(
                statement, params, execution_options=_KEEP_ROWCOUNT
            )
            return result

    def _execute_read(
        self, statement: Any, params: Mapping[str, Any], *, core: bool = False
    ) -> list[Sequence[Any]]:
        """One read, on the same two paths as ``_execute_write``; rows unpack by position
        (with ``core``, they are Core's ``Row`` objects, readable by name too)."""
        runner = self._runner
        if not core and runner.usable():
            plan = runner.plan(statement)
            if plan is not None:
                try:
                    return runner.read(plan, params)
                except StateError:
                    raise
                except Exception:
                    with self._translated_errors():
                        raise
        with self._connect(write=False) as conn:
            return list(conn.execute(statement, params).all())

    def _write(
        self, statement: Any, params: Mapping[str, Any], *, core: bool = False
    ) -> WriteResult:
        """Run one write in its own transaction; a deadlock victim is sent again (bounded).

        The server rolled the victim's whole transaction - this one statement - back, so a
        retry cannot apply it twice.
        """
        policy = self.backend_row.retry
        for attempt in range(policy.write_attempts):
            try:
                return self._execute_write(statement, params, core=core)
            except StateDeadlockError as error:
                if attempt + 1 == policy.write_attempts:
                    raise
                log.info("retrying a write on %s after %s", self.qualified_name, error.__cause__)
                time.sleep(policy.delay(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _write_together(self, writes: Sequence[tuple[Any, Mapping[str, Any]]]) -> None:
        """Run writes in one transaction where the direct path can (one commit instead of one per
        statement), retried whole after a deadlock; elsewhere each alone through ``_write``."""
        runner = self._runner
        plans = (
            [runner.plan(statement) for statement, _ in writes]
            if runner.transactional and runner.usable()
            else []
        )
        if not plans or None in plans:
            for statement, params in writes:
                self._write(statement, params)
            return
        together = [(plan, params) for plan, (_, params) in zip(plans, writes, strict=True)]
        for attempt in range(self.backend_row.retry.write_attempts):
            # Sent, and its COMMIT may be in flight: a lost reply leaves the outcome unknown.
            call = _Call()
            call.sent = call.committing = True
            try:
                runner.write_together(together)  # type: ignore[arg-type]
                return
            except DBAPIError as error:
                if (
                    attempt + 1 == self.backend_row.retry.write_attempts
                    or not is_transient_conflict(error, self.engine.dialect.name)
                ):
                    with self._translated_errors(call):
                        raise
                log.info("retrying writes on %s after %s", self.qualified_name, error.orig)
                time.sleep(self.backend_row.retry.delay(attempt))

    def check_same_database(self, connectable: Connection | Engine) -> None:
        """Refuse (``DatabaseMismatchError``) a connection or engine of another database than
        this storage's: a checkpoint can commit with a load only in the load's database."""
        engine = connectable.engine if isinstance(connectable, Connection) else connectable
        if not isinstance(engine, Engine):
            raise TypeError("expected a SQLAlchemy Connection or Engine")
        if engine is self.engine or same_database(engine.url, self.engine.url):
            return
        raise DatabaseMismatchError(
            f"the connection is to {safe_url(engine.url)}, but {self.qualified_name} lives in "
            f"{safe_url(self.engine.url)}: a checkpoint commits with a load only when both are "
            "in one database (reuse the sink's connection for the state, or keep the "
            "checkpoint's own save after the load: at-least-once)"
        )

    def _on_connection(
        self, connection: Connection, statement: Any, params: Mapping[str, Any]
    ) -> CursorResult[Any]:
        """Run one write on the caller's connection, inside the caller's open transaction:
        never begun, committed, rolled back or retried here (the caller owns all of that)."""
        if not isinstance(connection, Connection):
            raise TypeError(
                f"connection must be a SQLAlchemy Connection, not {type(connection).__name__}"
            )
        self.check_same_database(connection)
        if not connection.in_transaction():
            raise InvalidStateError(
                "connection",
                "has no open transaction: begin() it first, or the save would commit alone",
            )
        with self._translated_errors():
            result: CursorResult[Any] = connection.execute(
                statement, params, execution_options=_KEEP_ROWCOUNT
            )
            return result

    def _read(
        self, statement: Any, params: Mapping[str, Any], *, core: bool = False
    ) -> list[Sequence[Any]]:
        """Run a read (rows unpack by position); a read is idempotent, so a lost connection is
        retried once."""
        for attempt in range(self.backend_row.retry.read_attempts):
            try:
                return self._execute_read(statement, params, core=core)
            except StateUnavailableError as error:
                # A lost or refused connection; a lock timeout is not retried (it waited already).
                if (
                    attempt + 1 == self.backend_row.retry.read_attempts
                    or type(error) is not StateUnavailableError
                ):
                    raise
                log.info("retrying a read on %s after a lost connection", self.qualified_name)
        raise AssertionError("unreachable")  # pragma: no cover

    def _rowcount(self, result: WriteResult) -> int:
        """The rows a statement changed; a driver that cannot tell (-1) gets a typed error."""
        count = int(result.rowcount)
        if count < 0:
            raise StateRowCountUnknownError(
                f"the {self.engine.dialect.driver} driver did not report how many rows a "
                f"statement on {self.qualified_name} changed (rowcount {count}): whether it "
                "applied cannot be told; load the state to learn it"
            )
        return count

    def execute_read(self, statement: Any, params: Mapping[str, Any]) -> list[Row[Any]]:
        """One read over this storage's table, with its retry and error translation.

        For operator tools beyond the runtime's methods (``dpone_state.operations``,
        ``dpone_state.portability``), so they never bypass either. Off the hot path, it runs
        through Core, so its rows read by name.
        """
        return cast("list[Row[Any]]", self._read(statement, params, core=True))

    def execute_write(self, statement: Any, params: Mapping[str, Any]) -> CursorResult[Any]:
        """One write in its own transaction, with the deadlock retry and error translation
        (through Core, as ``execute_read``)."""
        return cast("CursorResult[Any]", self._write(statement, params, core=True))

    def _param(self, column: str) -> BindParameter[Any]:
        """A placeholder for a value of ``column`` (typed like it), bound at execution."""
        return bindparam(f"p_{column}", type_=self.table.c[column].type)

    def _create_tables_once(self) -> list[str]:
        with self._translated_errors():
            try:
                conn = self.engine.connect()
            except DBAPIError as error:
                raise self._error(error, connecting=True) from error
            with conn, migration_lock(conn, provisioning_lock_name(self.schema)):
                create_schema_if_missing(conn, self.schema)  # guarded per dialect (ddl.py)
                if conn.dialect.name == "bigquery":  # clustered by the key (ddl.py)
                    conn.execute(CreateTableIfMissing(self.table))
                    if isinstance(self, XMinStateStorage):
                        provision_bigquery_lock(conn, self.schema, self.table_name)
                else:
                    self.table.metadata.create_all(conn, checkfirst=True)
                added = add_missing_nullable_columns(conn, self.table)
                conn.commit()
        return added

    def create_tables(self) -> None:
        """Create the schema (where the dialect has schemas) and the table, if missing, and
        add the nullable columns an existing table lacks (BigQuery's provisioning path).

        An explicit provisioning step; production databases are provisioned by the migrations.
        """
        # Under the migrations' lock (SQLite: an exclusive transaction), so that several
        # processes creating the same tables at once take turns instead of colliding. BigQuery
        # has no lock: a try that lost a race (the dataset, then a table, appeared meanwhile)
        # is made again, and then finds everything in place.
        tries = 1 if self.backend_row.has_database_lock else 3
        for attempt in range(tries):
            try:
                added = self._create_tables_once()
                break
            except StateDatabaseError:
                if attempt + 1 == tries:
                    raise
        if added:
            log.info("added the column(s) %s to %s", ", ".join(added), self.qualified_name)
        log.info("provisioned %s on %s", self.qualified_name, safe_url(self.engine.url))

    def create_state_table(self) -> None:
        """dpone's name of ``create_tables()``: the same explicit provisioning step."""
        self.create_tables()


class ProbeResult(str, Enum):
    """What the stored checkpoint says of one load's commit (``XMinStateStorage.probe``)."""

    COMMITTED = "committed"
    NOT_COMMITTED = "not committed"
    SUPERSEDED = "superseded"

    def __str__(self) -> str:
        return self.value


def xmin_state_from_row(row: Sequence[Any]) -> XMinState:
    """The checkpoint in a row of ``(xmin_value, __dpone__loaded_at, is_initial,
    wraparound_detected, frozen_xid, revision, extraction_identity, source_fingerprint)`` (the
    load statement's columns, in order)."""
    (
        xmin_value,
        loaded_at,
        is_initial,
        wraparound_detected,
        frozen_xid,
        revision,
        extraction_identity,
        source_fingerprint,
    ) = row
    state: XMinState = object.__new__(XMinState)  # as ``XMinState.from_storage``, unvalidated
    state.__dict__.update(
        xmin_value=xmin_value,
        timestamp=loaded_at,
        is_initial=bool(is_initial),
        wraparound_detected=bool(wraparound_detected),
        frozen_xid=frozen_xid,
        revision=revision or 0,  # NULL on BigQuery rows written before the upgrade
        extraction_identity=extraction_identity,
        source_fingerprint=source_fingerprint,
    )
    return state


class XMinStateStorage(_Storage):
    """Postgres XMin checkpoints, one row per ``(source_schema, source_table)``."""

    default_table = DEFAULT_XMIN_TABLE
    _table_option = "--xmin-table"
    _added_columns = "revision"

    def __init__(
        self,
        connector: Engine | str,
        schema: SchemaOption = DEFAULT,
        table: str = DEFAULT_XMIN_TABLE,
    ) -> None:
        super().__init__(connector, schema, table)
        t = self.table
        key = (t.c.source_schema == self._param("source_schema")) & (
            t.c.source_table == self._param("source_table")
        )
        # A deleted checkpoint stays as a tombstone: its revision negated (-(r + 1)), so the
        # next checkpoint of the key continues at r + 2 and a revision is never reused.
        # (BigQuery: an adopted legacy row's revision may be NULL until the backfill, 0 then.)
        deleted = revision_or_zero(t.c.revision) < 0
        live = revision_or_zero(t.c.revision) >= 0
        row = {name: self._param(name) for name in (*_XMIN_KEY, *_XMIN_VALUES, LOADED_AT)}
        self._update: dict[str, UpdateValue] = {
            **dict.fromkeys(_XMIN_VALUES, INCOMING),
            LOADED_AT: IncomingWhen(deleted),  # a new checkpoint after a delete
            "revision": case((deleted, 1 - t.c.revision), else_=revision_or_zero(t.c.revision) + 1),
        }
        self._unversioned = revision_or_zero(t.c.revision) <= 0
        upsert = {"rows": [{**row, "revision": 1}], "key": _XMIN_KEY, "update": self._update}
        # Statements are built once: each call binds its values, and compiles nothing.
        self._save = Upsert(t, **upsert)  # type: ignore[arg-type]
        # Expected revision 0: no checkpoint (none, deleted, or one the legacy runtime wrote).
        self._save_if_unversioned = Upsert(t, **upsert, where=self._unversioned)  # type: ignore[arg-type]
        # BigQuery: compare-and-set first writes go in a transaction behind the lock row
        # (LockedScript); other writes stay plain DML, which BigQuery queues per table.
        self._lock = (
            lock_table(t.metadata, self.schema) if self.backend_row.first_write_lock else None
        )
        self._save_if_revision = (
            update(t)
            .where(key, t.c.revision == bindparam("p_expected_revision", type_=t.c.revision.type))
            .values(
                {name: self._param(name) for name in _XMIN_VALUES} | {"revision": t.c.revision + 1}
            )
        )
        # The same three saves that also write the receipt (a load's id); a save without one
        # leaves the column alone, so tables from before revision 0005 keep working.
        receipt_row = {**row, LAST_LOAD_ID: self._param(LAST_LOAD_ID)}
        receipt = {
            "rows": [{**receipt_row, "revision": 1}],
            "key": _XMIN_KEY,
            "update": {**upsert["update"], LAST_LOAD_ID: INCOMING},  # type: ignore[dict-item]
        }
        self._save_receipt = Upsert(t, **receipt)  # type: ignore[arg-type]
        self._save_receipt_if_unversioned = Upsert(t, **receipt, where=self._unversioned)  # type: ignore[arg-type]
        self._save_receipt_if_revision = self._save_if_revision.values(
            {LAST_LOAD_ID: self._param(LAST_LOAD_ID)}
        )
        self._probe = select(t.c[LAST_LOAD_ID], t.c.revision).where(
            key, live
        )  # a tombstone is no checkpoint
        if self.backend_row.row_locks:
            self._probe = self._probe.with_for_update()
        self._load = select(
            t.c.xmin_value,
            t.c[LOADED_AT],
            t.c.is_initial,
            t.c.wraparound_detected,
            t.c.frozen_xid,
            t.c.revision,
            t.c.extraction_identity,
            t.c.source_fingerprint,
        ).where(key, live)
        # What a save left behind, to recognise it after an unknown outcome.
        self._written = select(
            t.c.xmin_value,
            t.c.is_initial,
            t.c.wraparound_detected,
            t.c.frozen_xid,
            t.c[UPDATED_AT],
            t.c.revision,
        ).where(key)
        # Naming ``revision`` also makes an unmigrated dpone table refuse the delete as it
        # refuses every other statement (StateNotProvisionedError).
        self._delete = (
            update(t).where(key, live).values(revision=-(revision_or_zero(t.c.revision) + 1))
        )
        self._bulk_statements: dict[int, Upsert] = {}
        self._bulk_names: dict[int, list[str]] = {}  # their parameter names, row by row

    def _build_table(self) -> Table:
        return xmin_state_table(new_metadata(), self.schema, self.table_name)

    @staticmethod
    def _key_params(source_schema: str, source_table: str) -> dict[str, str]:
        return {
            "p_source_schema": check_key_name("source_schema", source_schema),
            "p_source_table": check_key_name("source_table", source_table),
        }

    def save_state(
        self,
        source_schema: str,
        source_table: str,
        xmin_state: XMinState,
        *,
        expected_revision: int | None = None,
        connection: Connection | None = None,
        load_id: str | None = None,
    ) -> datetime:
        """Upsert the checkpoint atomically; ``__dpone__loaded_at`` keeps the first save's time.

        With ``expected_revision`` the save happens only if the stored revision equals it
        (``0``: no checkpoint yet, a deleted one, or one never saved by dpone-state), else
        ``RevisionConflictError``; without it the last writer wins. ``xmin_state`` is an
        ``XMinState`` or any object with its fields (dpone's own). Returns the time of this
        write (UTC): the row's ``__dpone__updated_at``, and its ``__dpone__loaded_at`` when this
        save inserted the row. When the reply is lost, the stored row tells whether this call's
        write applied (then this returns), or that nothing applied (then it is sent once
        more); otherwise ``StateOutcomeUnknownError``.

        With ``connection`` (a ``Connection`` to this storage's database, in an open
        transaction) the one statement runs there and commits or rolls back with the caller's
        transaction; nothing is retried. ``load_id`` records the receipt that ``probe()``
        reads (the id of the load committing with this checkpoint).
        """
        params: dict[str, Any] = self._key_params(source_schema, source_table)
        if load_id is not None:
            params[f"p_{LAST_LOAD_ID}"] = check_name("load_id", load_id, LOAD_ID_MAX)
        xmin_state = XMinState.from_object(xmin_state)
        if expected_revision is not None and (
            isinstance(expected_revision, bool)
            or not isinstance(expected_revision, int)
            or not 0 <= expected_revision <= MAX_BIGINT
        ):
            raise InvalidStateError("expected_revision", "must be an integer >= 0 or None")
        return self._save_state(
            params,
            xmin_state,
            expected_revision,
            utc_now(),
            connection=connection,
            receipt=load_id is not None,
        )

    def _save_state(
        self,
        params: dict[str, Any],
        xmin_state: XMinState,
        expected_revision: int | None,
        written_at: datetime,
        *,
        connection: Connection | None = None,
        receipt: bool = False,
    ) -> datetime:
        """``save_state`` with the ``__dpone__updated_at`` it writes: what identifies this write
        when its reply is lost (and what a retried ``XMinExtraction.commit()`` sends again)."""
        params.update(
            p_xmin_value=xmin_state.xmin_value,
            p_is_initial=xmin_state.is_initial,
            p_wraparound_detected=xmin_state.wraparound_detected,
            p_frozen_xid=xmin_state.frozen_xid,
            p_extraction_identity=xmin_state.extraction_identity,
            p_source_fingerprint=xmin_state.source_fingerprint,
            # ``__dpone__loaded_at`` comes from this clock (UTC) on first insert and is kept
            # by later saves; ``xmin_state.timestamp`` is not stored (dpone's runtime fills it
            # with a naive local time, which dpone's storages ignore as well).
            **{f"p_{UPDATED_AT}": written_at, f"p_{LOADED_AT}": written_at},
        )
        if connection is not None:  # the caller's transaction: sent once, never retried
            if not self._save_once(params, expected_revision, connection, receipt=receipt):
                raise RevisionConflictError(
                    params["p_source_schema"], params["p_source_table"], expected_revision or 0
                )
            return written_at
        for attempt in range(2):
            try:
                applied = self._save_once(params, expected_revision, receipt=receipt)
            except StateOutcomeUnknownError:
                # The reply was lost: the stored row says whether this very call wrote it
                # (its own ``__dpone__updated_at`` and values); if it did not, send it again.
                outcome = self._outcome(params, expected_revision)
                if outcome:
                    return written_at
                if outcome is None or attempt == 1:
                    raise
                continue
            if not applied:
                raise RevisionConflictError(
                    params["p_source_schema"], params["p_source_table"], expected_revision or 0
                )
            return written_at
        raise AssertionError("unreachable")  # pragma: no cover

    def _is_own_write(
        self,
        source_schema: str,
        source_table: str,
        xmin_state: XMinState,
        written_at: datetime,
    ) -> bool:
        """Whether the stored checkpoint is exactly the write made with ``written_at``."""
        params: dict[str, Any] = self._key_params(source_schema, source_table)
        params.update(
            p_xmin_value=xmin_state.xmin_value,
            p_is_initial=xmin_state.is_initial,
            p_wraparound_detected=xmin_state.wraparound_detected,
            p_frozen_xid=xmin_state.frozen_xid,
            **{f"p_{UPDATED_AT}": written_at},
        )
        return self._outcome(params, None) is True

    def _save_once(
        self,
        params: dict[str, Any],
        expected_revision: int | None,
        connection: Connection | None = None,
        *,
        receipt: bool = False,
    ) -> bool:
        """Send the save once; whether it applied (always, without ``expected_revision``)."""

        def write(statement: Any, values: dict[str, Any]) -> WriteResult:
            if connection is None:
                return self._write(statement, values)
            return self._on_connection(connection, statement, values)

        if self._lock is not None and expected_revision == 0 and connection is None and not receipt:
            # Raises RevisionConflictError itself when the stored revision is not 0.
            self._save_locked(params["p_source_schema"], params["p_source_table"], params)
            return True
        if expected_revision is None:
            write(self._save_receipt if receipt else self._save, params)
            return True
        if expected_revision == 0:
            statement = self._save_receipt_if_unversioned if receipt else self._save_if_unversioned
            result = write(statement, params)
            self._rowcount(result)
            return upsert_applied(result, self.engine.dialect.name)
        # The row must exist at that revision: a conditional UPDATE says so on every dialect.
        update_params = {k: v for k, v in params.items() if k != f"p_{LOADED_AT}"}
        update_params["p_expected_revision"] = expected_revision
        guarded: Any = self._save_receipt_if_revision if receipt else self._save_if_revision
        return self._rowcount(write(guarded, update_params)) == 1

    def _outcome(self, params: dict[str, Any], expected_revision: int | None) -> bool | None:
        """After a lost reply: ``True`` if the stored row is this call's write, ``False`` if
        the row is as it was expected before it (nothing applied), ``None`` if unknowable."""
        try:
            rows = cast(
                "list[Row[Any]]",
                self._read(
                    self._written,
                    {k: params[k] for k in ("p_source_schema", "p_source_table")},
                    core=True,  # Core's rows, read by name
                ),
            )
        except StateError:
            return None
        row = rows[0] if rows else None
        if row is not None and (
            row.xmin_value == params["p_xmin_value"]
            and bool(row.is_initial) == params["p_is_initial"]
            and bool(row.wraparound_detected) == params["p_wraparound_detected"]
            and row.frozen_xid == params["p_frozen_xid"]
            and to_utc(UPDATED_AT, row._mapping[UPDATED_AT]) == params[f"p_{UPDATED_AT}"]
        ):
            return True
        if expected_revision is not None:
            unchanged = (
                row is None or row.revision <= 0
                if expected_revision == 0
                else row is not None and row.revision == expected_revision
            )
            return False if unchanged else None
        return None

    def _locked_upsert(self, rows: list[dict[str, Any]], *, guarded: bool) -> Upsert:
        """An upsert of ``rows`` (values, not placeholders) for a ``LockedScript``."""
        spelled = [
            {name: script_string(v) if isinstance(v, str) else v for name, v in row.items()}
            for row in rows
        ]
        return Upsert(
            self.table,
            [{**row, "revision": 1} for row in spelled],
            key=_XMIN_KEY,
            update=self._update,
            where=self._unversioned if guarded else None,
        )

    def _save_locked(
        self, source_schema: str, source_table: str, params: Mapping[str, Any]
    ) -> None:
        """BigQuery, ``expected_revision=0``: the guarded upsert in a transaction behind the
        lock row; a stored revision other than 0 aborts it (``RevisionConflictError``)."""
        assert self._lock is not None
        t = self.table
        row = {name[2:]: value for name, value in params.items()}
        conflict = select(func.ERROR(literal(BIGQUERY_CONFLICT_MARKER))).where(
            t.c.source_schema == script_string(row["source_schema"]),
            t.c.source_table == script_string(row["source_table"]),
            revision_or_zero(t.c.revision) > 0,  # none, legacy (0) or deleted (< 0) may go
        )
        upsert = self._locked_upsert([row], guarded=True)
        try:
            self._write(LockedScript(self._lock, self.table_name, [upsert], [conflict]), {})
        except StateError as error:
            cause = error.__cause__
            if isinstance(cause, DBAPIError) and BIGQUERY_CONFLICT_MARKER in str(cause.orig):
                raise RevisionConflictError(source_schema, source_table, 0) from None
            raise

    def probe(
        self, source_schema: str, source_table: str, load_id: str, *, expected_revision: int
    ) -> ProbeResult:
        """Whether the load ``load_id`` committed its checkpoint, from the stored row.

        ``expected_revision`` is the revision the load's compare-and-set save started from
        (``XMinExtraction.expected_revision``). ``COMMITTED``: the row carries this load's
        receipt. ``NOT_COMMITTED``: the row is still as the load found it (or absent, for a
        first load): its transaction rolled back. ``SUPERSEDED``: the row moved on under
        another receipt (or was deleted): this load may have committed before it or lost to
        it, and either way the stored checkpoint matches the target. Where the dialect has
        row locks the read waits for a transaction still holding the row (a commit in flight).
        """
        params = self._key_params(source_schema, source_table)
        check_name("load_id", load_id, LOAD_ID_MAX)
        if (
            isinstance(expected_revision, bool)
            or not isinstance(expected_revision, int)
            or not 0 <= expected_revision <= MAX_BIGINT
        ):
            raise InvalidStateError("expected_revision", "must be an integer >= 0")
        rows = self._read(self._probe, params)
        if rows and rows[0][0] == load_id:
            return ProbeResult.COMMITTED
        stored = rows[0][1] if rows else None
        if (stored is None and expected_revision == 0) or stored == expected_revision:
            return ProbeResult.NOT_COMMITTED
        return ProbeResult.SUPERSEDED

    def save_states(self, states: Mapping[tuple[str, str], XMinState]) -> int:
        """Upsert many checkpoints in few statements (``BULK_ROWS`` per statement; fewer where the
        database limits parameters per statement); the count.

        The bulk path for backends with DML quotas (BigQuery): last writer wins per key, as in
        ``save_state`` without ``expected_revision``. Each statement is atomic on its own.
        """
        rows: list[tuple[Any, ...]] = []  # values in the order of ``_BULK_COLUMNS``
        now = utc_now()
        # In key order: concurrent bulk writers then lock their common keys in one order and
        # cannot deadlock each other.
        for key, given in sorted(states.items(), key=_bulk_key):
            if not isinstance(key, tuple) or len(key) != 2:
                raise InvalidStateError("states", "keys must be (source_schema, source_table)")
            state = XMinState.from_object(given)
            rows.append(
                (
                    check_key_name("source_schema", key[0]),
                    check_key_name("source_table", key[1]),
                    state.xmin_value,
                    state.is_initial,
                    state.wraparound_detected,
                    state.frozen_xid,
                    state.extraction_identity,
                    state.source_fingerprint,
                    now,
                    now,  # __dpone__loaded_at: kept by an existing row, as in save_state
                )
            )
        if self.backend_row.case_insensitive_keys:
            _refuse_colliding_keys([(row[0], row[1]) for row in rows])
        per_statement = BULK_ROWS
        limit = self.backend_row.max_parameters  # SQL Server refuses more than 2100
        if limit is not None:  # a row binds its values and its first revision
            per_statement = min(BULK_ROWS, (limit - 10) // (len(_BULK_COLUMNS) + 1))
        writes: list[tuple[Upsert, dict[str, Any]]] = []
        for start in range(0, len(rows), per_statement):
            batch = rows[start : start + per_statement]
            statement = self._bulk_statement(len(batch))
            names = self._bulk_names[len(batch)]
            writes.append((statement, dict(zip(names, chain.from_iterable(batch), strict=True))))
        self._write_together(writes)
        return len(rows)

    def _bulk_statement(self, rows: int) -> Upsert:
        """The multi-row upsert for ``rows`` checkpoints, built (and compiled) once per size."""
        statement = self._bulk_statements.get(rows)
        if statement is None:
            t = self.table
            names = _BULK_COLUMNS
            self._bulk_names[rows] = [f"p_{n}_{i}" for i in range(rows) for n in names]
            statement = Upsert(
                t,
                [
                    {
                        **{n: bindparam(f"p_{n}_{i}", type_=t.c[n].type) for n in names},
                        "revision": 1,
                    }
                    for i in range(rows)
                ],
                key=_XMIN_KEY,
                update=self._update,
            )
            self._bulk_statements[rows] = statement
        return statement

    def load_state(self, source_schema: str, source_table: str) -> XMinState | None:
        """The stored checkpoint, or ``None`` when there is none."""
        rows = self._read(self._load, self._key_params(source_schema, source_table))
        if not rows:
            return None
        return xmin_state_from_row(rows[0])

    def list_checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint of the table, ordered by source schema and table (operator reads)."""
        t = self.table
        statement = select(
            t.c.source_schema,
            t.c.source_table,
            t.c.xmin_value,
            t.c[LOADED_AT],
            t.c.is_initial,
            t.c.wraparound_detected,
            t.c.frozen_xid,
            t.c.revision,
            t.c.extraction_identity,
            t.c.source_fingerprint,
            t.c[UPDATED_AT],
        ).where(revision_or_zero(t.c.revision) >= 0)  # a tombstone (a deleted checkpoint) is none
        statement = statement.order_by(t.c.source_schema, t.c.source_table)
        return [
            Checkpoint(
                source_schema=row[0],
                source_table=row[1],
                state=xmin_state_from_row(row[2:10]),
                updated_at=to_utc(UPDATED_AT, row[10]),
            )
            for row in self._read(statement, {})
        ]

    def delete_state(self, source_schema: str, source_table: str) -> bool:
        """Forget the checkpoint (the next run is a full refresh); whether one existed.

        The row stays as a tombstone (revision negated), so the key's next checkpoint gets a
        revision above every earlier one: a stale writer's compare-and-set can never match.
        """
        result = self._write(self._delete, self._key_params(source_schema, source_table))
        return self._rowcount(result) > 0


def _bulk_key(item: tuple[Any, Any]) -> tuple[str, str]:
    """The sort key of a ``save_states`` entry (a malformed key sorts first, then is refused)."""
    key = item[0]
    if isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, str) for k in key):
        return (key[0], key[1])
    return ("", "")


def _refuse_colliding_keys(keys: list[tuple[str, str]]) -> None:
    """Raise ``KeyCollisionError`` when two keys compare equal on SQL Server: equal once
    trailing spaces are ignored and case is folded (a legacy case-insensitive table)."""
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    collisions = []
    for key in keys:
        folded = (key[0].rstrip(" ").casefold(), key[1].rstrip(" ").casefold())
        other = seen.setdefault(folded, key)
        if other != key:
            collisions.append((other, key))
    if collisions:
        raise KeyCollisionError(collisions)


def provision_bigquery_lock(conn: Connection, schema: str | None, name: str) -> None:
    """BigQuery: create the lock table if missing and give table ``name`` its lock row."""
    lock = lock_table(new_metadata(), schema)
    conn.execute(CreateTableIfMissing(lock))
    conn.execute(
        Upsert(lock, [{"name": name, "holds": 0}], key=["name"], update={}),
    )


_XMIN_KEY: Final = ("source_schema", "source_table")
#: XMin columns every save writes.
_XMIN_VALUES: Final = (
    "xmin_value",
    "is_initial",
    "wraparound_detected",
    "frozen_xid",
    "extraction_identity",
    "source_fingerprint",
    UPDATED_AT,
)
#: Columns of each row of a bulk save, in order.
_BULK_COLUMNS: Final = (*_XMIN_KEY, *_XMIN_VALUES, LOADED_AT)

#: Run-row columns an upsert of an existing run changes (the rest keep their first values).
_RUN_UPDATED_COLUMNS: Final = (
    "state",
    "ended_at",
    "duration_min",
    "error_message",
    "rows_read",
    "rows_written",
    "rows_updated",
    "rows_deleted",
    "load_strategy",
    UPDATED_AT,
)
_RUN_FIELDS: Final = (
    "dag_id",
    "source_schema",
    "source_table",
    "target_schema",
    "target_table",
    "load_strategy",
    "execution_date",
    "state",
    "started_at",
    "ended_at",
    "duration_min",
    "error_message",
    "rows_read",
    "rows_written",
    "rows_updated",
    "rows_deleted",
    "process_name",
)


def _ignore(count: int) -> None:
    """No progress report."""


class _PruneStatements:
    """The statements that delete runs before ``p_cutoff`` (of ``p_prune_dag_id`` only, when
    ``by_dag``): all at once, one ``DeleteBatch`` per batch, or batches by boundary."""

    def __init__(self, table: Table, by_dag: bool) -> None:
        t = table
        older = t.c.execution_date < bindparam("p_cutoff", type_=t.c.execution_date.type)
        if by_dag:
            older = older & (t.c.dag_id == bindparam("p_prune_dag_id", type_=t.c.dag_id.type))
        # Always true; naming ``process_name`` makes an unmigrated dpone table refuse the prune
        # as it refuses every other statement (StateNotProvisionedError), not delete quietly.
        provisioned = t.c.process_name.is_(None) | t.c.process_name.is_not(None)
        self.table = t
        self.every = delete(t).where(older, provisioned)
        self._batches: dict[int, DeleteBatch] = {}
        # Batches by boundary (``prune_batches``) walk the retention index in (execution_date,
        # dag_id) order: find the last row of the next batch, then delete up to and including it.
        self.boundary = (
            select(t.c.execution_date, t.c.dag_id)
            .where(older)
            .order_by(t.c.execution_date, t.c.dag_id)
            .offset(bindparam("p_offset", type_=Integer))
            .limit(1)
        )
        boundary_date = bindparam("p_boundary_date", type_=t.c.execution_date.type)
        boundary_dag = bindparam("p_boundary_dag_id", type_=t.c.dag_id.type)
        self.up_to_boundary = delete(t).where(
            older,
            provisioned,
            # Redundant with the next condition, but a range the index scan can stop at: without
            # it the scan reads the whole remaining backlog and filters it (a growing cost).
            t.c.execution_date <= boundary_date,
            (t.c.execution_date < boundary_date)
            | ((t.c.execution_date == boundary_date) & (t.c.dag_id <= boundary_dag)),
        )

    def batch_of(self, rows: int) -> DeleteBatch:
        """The one-statement batch of at most ``rows`` runs, oldest first, built once per size."""
        statement = self._batches.get(rows)
        if statement is None:
            if len(self._batches) >= _MAX_PAGES:
                self._batches.clear()
            statement = self._batches[rows] = DeleteBatch(
                self.every, rows, order_by=[self.table.c.execution_date]
            )
        return statement


#: The upsert's parameter name of each run field.
_RUN_PARAMS = tuple((f"p_{name}", name) for name in _RUN_FIELDS)


class RunStateStorage(_Storage):
    """ETL run rows, one per ``(dag_id, execution_date)``."""

    default_table = DEFAULT_RUN_TABLE
    _table_option = "--run-table"
    _added_columns = "process_name"

    def __init__(
        self,
        connector: Engine | str,
        schema: SchemaOption = DEFAULT,
        table: str = DEFAULT_RUN_TABLE,
    ) -> None:
        super().__init__(connector, schema, table)
        t = self.table
        self._upsert = Upsert(
            t,
            [{name: self._param(name) for name in (*_RUN_FIELDS, LOADED_AT, UPDATED_AT)}],
            key=["dag_id", "execution_date"],
            update=dict.fromkeys(_RUN_UPDATED_COLUMNS, INCOMING),
        )
        columns = [t.c[name] for name in _RUN_FIELDS]
        if "id" in t.c:
            columns.append(t.c.id)
        self._fields = tuple(column.key for column in columns)
        by_dag = select(*columns).where(t.c.dag_id == self._param("dag_id"))
        self._get = by_dag.where(t.c.execution_date == self._param("execution_date"))
        newest_first = t.c.execution_date.desc()
        self._list = by_dag.order_by(newest_first)
        self._pages: dict[tuple[Select[Any], int], Select[Any]] = {}
        at = t.c.execution_date == self._param("execution_date")
        before = t.c.execution_date < bindparam("p_before", type_=t.c.execution_date.type)
        self._list_at = self._list.where(at)
        self._list_before = self._list.where(before)
        self._list_at_before = self._list.where(at, before)
        self._prunes: dict[bool, _PruneStatements] = {}  # by "one DAG's runs only"

    def _build_table(self) -> Table:
        return run_state_table(
            new_metadata(),
            self.schema,
            self.table_name,
            id_kind=run_id_kind(self.engine.dialect.name),
        )

    def _to_models(self, rows: Sequence[Sequence[Any]]) -> list[RunState]:
        return runs_from_rows(self._fields, rows)

    def save_run_state(self, run_state: RunState) -> None:
        """Upsert the run row: a new run is inserted; an existing one gets its outcome updated.

        ``started_at``, ``process_name`` and the source/target names keep their first values.
        ``run_state`` is a ``RunState`` (mutated in place or not) or any object with its fields
        (dpone's own ``RunState``); it is validated on every save and never changed.
        """
        run = RunState.from_object(run_state)  # validated again: the caller may have mutated it
        now = utc_now()
        fields = run.__dict__  # validated just now: read without the attribute protocol
        params = {param: fields[name] for param, name in _RUN_PARAMS}
        params["p_state"] = run.state.value
        params[f"p_{LOADED_AT}"] = params[f"p_{UPDATED_AT}"] = now
        self._write(self._upsert, params)

    def update_run_state(self, run_state: RunState) -> None:
        """The same upsert as ``save_run_state``: a run that does not exist yet is inserted."""
        self.save_run_state(run_state)

    def get_run_state(self, dag_id: str, execution_date: datetime) -> RunState | None:
        """One run, or ``None``."""
        rows = self._read(
            self._get,
            {
                "p_dag_id": check_name("dag_id", dag_id, MAX_DAG_ID),
                "p_execution_date": to_utc("execution_date", execution_date),
            },
        )
        return self._to_models(rows)[0] if rows else None

    def get_run_states_by_dag(
        self,
        dag_id: str,
        execution_date: datetime | None = None,
        limit: int = 100,
        *,
        before: datetime | None = None,
    ) -> list[RunState]:
        """Runs of ``dag_id``, newest ``execution_date`` first, at most ``limit``.

        With ``execution_date``, only the runs at exactly that date (dpone's meaning). With
        ``before``, only runs strictly earlier: to page back through history, pass the
        ``execution_date`` of the last run of the previous page.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise InvalidStateError("limit", f"must be an integer in 1 .. {MAX_LIMIT}")
        params: dict[str, Any] = {"p_dag_id": check_name("dag_id", dag_id, MAX_DAG_ID)}
        statement = self._list
        if execution_date is not None:
            params["p_execution_date"] = to_utc("execution_date", execution_date)
            statement = self._list_at
        if before is not None:
            params["p_before"] = to_utc("before", before)
            statement = self._list_at_before if execution_date is not None else self._list_before
        # ``limit(n)`` keeps SQL Server's ``TOP n`` (a literal, checked int) on every dialect.
        return self._to_models(self._read(self._page(statement, limit), params))

    def _page(self, statement: Select[Any], limit: int) -> Select[Any]:
        """``statement.limit(limit)``, built once per limit: a new ``Select`` per call costs a
        full cache-key walk in Core and a compile on the direct path."""
        pages = self._pages
        page = pages.get((statement, limit))
        if page is None:
            if len(pages) >= _MAX_PAGES:
                pages.clear()
            page = pages[(statement, limit)] = statement.limit(limit)
        return page

    def count_runs_before(self, cutoff: datetime) -> int:
        """How many runs have an ``execution_date`` before ``cutoff`` (what a prune deletes)."""
        t = self.table
        statement = (
            select(func.count()).select_from(t).where(t.c.execution_date < to_utc("cutoff", cutoff))
        )
        return int(self._read(statement, {})[0][0])

    def delete_old_states(self, days_to_keep: int = 30, *, batch_size: int | None = None) -> int:
        """Delete runs whose ``execution_date`` is older than ``days_to_keep`` days; the count.

        One statement by default. With ``batch_size``, deletes in transactions of at most
        ``batch_size`` rows, so a large backlog never holds a long lock: one statement per batch
        (SQLite, SQL Server) or two (find the batch's last row, then delete up to it), as the
        backend's row says (``prune_batches``). SQL Server always deletes in batches
        (``DELETE TOP (n)``, ``n`` = ``batch_size`` or the row's ``prune_batch_rows``), below
        the count where it escalates to a table lock. BigQuery ignores ``batch_size``: every
        statement is a billed job and locks no row a run waits on.
        """
        cutoff = prune_cutoff(days_to_keep)
        if batch_size is not None and (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, int)
            or not 1 <= batch_size <= MAX_BIGINT
        ):
            raise InvalidStateError(
                "batch_size", f"must be an integer in 1 .. {MAX_BIGINT} or None"
            )
        return self._prune_before(cutoff, batch_size=batch_size)

    def _prune_statements(self, by_dag: bool) -> _PruneStatements:
        """The statements of a prune of every run (or, ``by_dag``, one DAG's) before
        ``p_cutoff``, built once."""
        statements = self._prunes.get(by_dag)
        if statements is None:
            statements = self._prunes[by_dag] = _PruneStatements(self.table, by_dag)
        return statements

    def _prune_before(
        self,
        cutoff: datetime,
        *,
        dag_id: str | None = None,
        batch_size: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Delete the runs (of ``dag_id``, or every DAG) whose ``execution_date`` is before
        ``cutoff``, in batches as ``delete_old_states`` does; ``progress`` gets each statement's
        count. The one prune of the runtime's call and of the operator's command."""
        params: dict[str, Any] = {"p_cutoff": to_utc("cutoff", cutoff)}
        if dag_id is not None:
            params["p_prune_dag_id"] = check_name("dag_id", dag_id, MAX_DAG_ID)
        statements = self._prune_statements(dag_id is not None)
        row = self.backend_row
        batch = batch_size or row.prune_batch_rows
        report = progress or _ignore

        def write(statement: Any, values: Mapping[str, Any]) -> int:
            count = self._rowcount(self._write(statement, values))
            report(count)
            return count

        if batch is None or row.prune_batches == "unbatched":
            return write(statements.every, params)
        deleted = 0
        if row.prune_batches == "delete_batch":  # one statement per batch, until a short one
            statement = statements.batch_of(batch)
            while True:
                count = write(statement, params)
                deleted += count
                if count < batch:
                    return deleted
        # By boundaries: read the last row of the next batch on the retention index, delete up
        # to it; the rest in one DELETE once fewer than a batch are left.
        while True:
            last = self._read(statements.boundary, {**params, "p_offset": batch - 1})
            if not last:
                return deleted + write(statements.every, params)
            boundary = {**params, "p_boundary_date": last[0][0], "p_boundary_dag_id": last[0][1]}
            deleted += write(statements.up_to_boundary, boundary)
