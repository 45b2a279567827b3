"""Postgres XMin incremental extraction that never loses a row.

``XMinExtractor(source_engine, storage).extract(schema, table)`` opens one READ ONLY,
REPEATABLE READ transaction on the source, reads the snapshot's xmin there (the *anchor*,
64-bit), checks the table, derives the window from the stored checkpoint and streams the rows
of that window from the same snapshot. ``commit()`` saves the anchor as the new checkpoint,
with compare-and-set, and only when the caller says the target load committed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ColumnElement

from dpone_state.engine import safe_url
from dpone_state.errors import (
    BackendMismatchError,
    InvalidStateError,
    SourceColumnError,
    SourceNotATableError,
    SourcePermissionError,
    SourceTableNotFoundError,
    XMinError,
)
from dpone_state.models import XMinState, check_key_name
from dpone_state.storage import XMinStateStorage
from dpone_state.xmin_window import XMinWindow, compute_window, epoch_extend, xmin_number

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "XMIN_KEY",
    "SourceColumnError",
    "SourceNotATableError",
    "SourcePermissionError",
    "SourceTableNotFoundError",
    "XMinError",
    "XMinExtraction",
    "XMinExtractor",
    "XMinSnapshot",
    "anchor_statement",
]

log = logging.getLogger("dpone_state.xmin")

DEFAULT_BATCH_SIZE = 10_000
#: Name of the extra column every extracted row carries: its xmin as a Python int.
XMIN_KEY = "xmin"
#: relkinds that have heap rows with an xmin: table, partitioned table, materialized view.
_ROW_RELKINDS = {"r": "table", "p": "partitioned table", "m": "materialized view"}
_OTHER_RELKINDS = {
    "v": "view",
    "f": "foreign table",
    "S": "sequence",
    "i": "index",
    "I": "partitioned index",
    "c": "composite type",
    "t": "TOAST table",
}
_INSUFFICIENT_PRIVILEGE = "42501"

_pg_namespace = sa.table(
    "pg_namespace", sa.column("oid"), sa.column("nspname"), schema="pg_catalog"
)
_pg_class = sa.table(
    "pg_class",
    sa.column("oid"),
    sa.column("relname"),
    sa.column("relnamespace"),
    sa.column("relkind"),
    sa.column("relfrozenxid"),
    schema="pg_catalog",
)
_pg_attribute = sa.table(
    "pg_attribute",
    sa.column("attrelid"),
    sa.column("attname"),
    sa.column("attnum"),
    sa.column("attisdropped"),
    schema="pg_catalog",
)


def _as_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise XMinError(f"unexpected transaction ID value {value!r} from the server")
    return int(value)


def _bigint(expression: ColumnElement[Any]) -> ColumnElement[int]:
    """``expression::text::bigint`` (xid, xid8 and txid values all read back as integers)."""
    return sa.cast(sa.cast(expression, sa.Text), sa.BigInteger)


@dataclass(frozen=True)
class XMinSnapshot:
    """What one run saw in its snapshot: 64-bit anchor (snapshot xmin), next ID, relfrozenxid."""

    anchor: int
    xmax: int
    frozen_xid: int | None


def anchor_statement(server_version: tuple[int | str, ...]) -> sa.Select[Any]:
    """``anchor`` (snapshot xmin) and ``xmax`` (next ID), 64-bit, and the isolation level.

    ``pg_snapshot_*`` (xid8) on PostgreSQL 13+, the deprecated ``txid_*`` names before.
    """
    if server_version[:1] >= (13,):
        snapshot: ColumnElement[Any] = sa.func.pg_current_snapshot()
        low, high = sa.func.pg_snapshot_xmin(snapshot), sa.func.pg_snapshot_xmax(snapshot)
    else:
        snapshot = sa.func.txid_current_snapshot()
        low, high = sa.func.txid_snapshot_xmin(snapshot), sa.func.txid_snapshot_xmax(snapshot)
    return sa.select(
        _bigint(low).label("anchor"),
        _bigint(high).label("xmax"),
        sa.func.current_setting("transaction_isolation").label("isolation"),
    )


def _relation_statement() -> sa.Select[Any]:
    c, n = _pg_class, _pg_namespace
    return (
        sa.select(
            c.c.oid,
            c.c.relkind,
            _bigint(c.c.relfrozenxid).label("relfrozenxid"),
            sa.func.has_schema_privilege(n.c.oid, "USAGE").label("schema_usage"),
            sa.func.has_table_privilege(c.c.oid, "SELECT").label("can_select"),
        )
        .select_from(c.join(n, n.c.oid == c.c.relnamespace))
        .where(
            n.c.nspname == sa.bindparam("schema_name"),
            c.c.relname == sa.bindparam("table_name"),
        )
    )


def _leaf_frozen_statement() -> sa.Select[Any]:
    """relfrozenxid of the leaf partitions of a partitioned table (PostgreSQL 12+)."""
    tree = sa.func.pg_partition_tree(sa.bindparam("relid")).table_valued("relid", "isleaf")
    return sa.select(_bigint(_pg_class.c.relfrozenxid)).where(
        _pg_class.c.oid.in_(sa.select(tree.c.relid).where(tree.c.isleaf))
    )


def _columns_statement() -> sa.Select[Any]:
    a = _pg_attribute
    return (
        sa.select(a.c.attname)
        .where(a.c.attrelid == sa.bindparam("relid"), a.c.attnum > 0, sa.not_(a.c.attisdropped))
        .order_by(a.c.attnum)
    )


_RELATION = _relation_statement()
_LEAF_FROZEN = _leaf_frozen_statement()
_COLUMNS = _columns_statement()


class XMinExtraction:
    """One run: iterate it for the changed rows, then ``commit()`` once the target committed.

    Rows are ``RowMapping`` objects with the selected columns plus ``xmin`` (an int), streamed
    through a server-side cursor ``batch_size`` rows at a time. Leaving the ``with`` block,
    ``close()`` or an exception without ``commit()`` keeps the old checkpoint: the next run
    reads the same window again (at-least-once).
    """

    def __init__(
        self,
        *,
        storage: XMinStateStorage,
        source_schema: str,
        source_table: str,
        previous: XMinState | None,
        snapshot: XMinSnapshot,
        window: XMinWindow,
        connection: Connection,
        transaction: sa.engine.Transaction,
        statement: sa.Select[Any],
        batch_size: int,
    ) -> None:
        self.source_schema = source_schema
        self.source_table = source_table
        #: The checkpoint this run started from (``None``: none stored).
        self.previous = previous
        self.snapshot = snapshot
        self.window = window
        #: The checkpoint ``commit()`` saves: the anchor and how this window was read.
        self.state = XMinState(
            xmin_value=snapshot.anchor,
            is_initial=window.is_full,
            wraparound_detected=window.wraparound_detected,
            frozen_xid=snapshot.frozen_xid,
        )
        #: Rows handed out so far.
        self.rows_read = 0
        self._storage = storage
        self._connection: Connection | None = connection
        self._transaction = transaction
        self._statement = statement
        self._batch_size = batch_size
        self._started = False
        self._exhausted = False
        self._committed = False

    @property
    def expected_revision(self) -> int:
        """The stored revision this run started from; ``commit()`` saves only over it."""
        return self.previous.revision if self.previous is not None else 0

    def batches(self) -> Iterator[Sequence[RowMapping]]:
        """The changed rows, at most ``batch_size`` per list (read once)."""
        if self._started:
            raise XMinError("the rows of an extraction can be read only once")
        if self._connection is None:
            raise XMinError("the extraction is closed")
        self._started = True
        result = self._connection.execute(
            self._statement, execution_options={"yield_per": self._batch_size}
        ).mappings()
        try:
            for batch in result.partitions(self._batch_size):
                self.rows_read += len(batch)
                yield batch
            self._exhausted = True
        finally:
            result.close()
            if self._exhausted:
                self.close()  # release the snapshot as soon as every row is read

    def __iter__(self) -> Iterator[RowMapping]:
        for batch in self.batches():
            yield from batch

    def commit(self) -> XMinState:
        """Save the anchor as the checkpoint; call it only after the target load committed.

        Every row must have been read first. Compare-and-set against the revision loaded at
        the start: ``RevisionConflictError`` if another run saved in between (nothing written).
        Returns the saved checkpoint (with its new revision).
        """
        if self._committed:
            raise XMinError("this extraction is already committed")
        if not self._exhausted:
            raise XMinError(
                f"not every row of {self.source_schema!r}.{self.source_table!r} was read "
                f"({self.rows_read} so far): saving the checkpoint now would skip the rest"
            )
        self.close()
        self._storage.save_state(
            self.source_schema,
            self.source_table,
            self.state,
            expected_revision=self.expected_revision,
        )
        self._committed = True
        log.info(
            "xmin checkpoint of %r.%r moved to %d (%s window, %d rows)",
            self.source_schema,
            self.source_table,
            self.state.xmin_value,
            self.window.kind,
            self.rows_read,
        )
        # As stored: the first save's time stays (``__dpone__loaded_at``), the revision moved on.
        first_saved = self.previous.timestamp if self.previous else self.state.timestamp
        return replace(self.state, timestamp=first_saved, revision=self.expected_revision + 1)

    def close(self) -> None:
        """End the source transaction (read only: nothing to undo); the checkpoint stays."""
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                self._transaction.rollback()
            finally:
                connection.close()

    def __enter__(self) -> XMinExtraction:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class XMinExtractor:
    """Extracts Postgres tables incrementally by ``xmin``; checkpoints live in ``storage``.

    ``source_engine`` is a PostgreSQL engine for the source database; ``storage`` is an
    ``XMinStateStorage`` on any backend.
    """

    def __init__(self, source_engine: Engine, storage: XMinStateStorage) -> None:
        if not isinstance(source_engine, Engine):
            raise TypeError("source_engine must be a SQLAlchemy Engine")
        if source_engine.dialect.name != "postgresql":
            raise BackendMismatchError(
                f"XMin extraction needs a PostgreSQL source engine, got "
                f"{source_engine.dialect.name!r} ({safe_url(source_engine.url)})"
            )
        if not isinstance(storage, XMinStateStorage):
            raise TypeError("storage must be an XMinStateStorage")
        self.source_engine = source_engine
        self.storage = storage

    def extract(
        self,
        schema: str,
        table: str,
        columns: Sequence[str] | None = None,
        where: ColumnElement[bool] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> XMinExtraction:
        """Start one run over ``schema.table``: the rows written since the checkpoint.

        ``columns``: the columns to read (default: all); ``where``: an extra Core predicate
        (e.g. ``sa.column("region") == "eu"``), never a string. Use the result as a context
        manager. Raises ``SourceTableNotFoundError``, ``SourceNotATableError`` (views),
        ``SourcePermissionError``, ``SourceColumnError`` before any row is read.
        """
        check_key_name("source_schema", schema)
        check_key_name("source_table", table)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidStateError("batch_size", "must be an integer >= 1")
        if where is not None and not isinstance(where, ColumnElement):
            raise TypeError("where must be a SQLAlchemy Core predicate (ColumnElement), not text")
        if columns is not None and (
            isinstance(columns, str) or not all(isinstance(c, str) for c in columns)
        ):
            raise TypeError("columns must be a sequence of column names")
        previous = self.storage.load_state(schema, table)
        connection = self.source_engine.connect().execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
        try:
            transaction = connection.begin()
            snapshot, names = self._inspect(connection, schema, table, columns)
            window = compute_window(
                previous.xmin_value if previous else None, snapshot.anchor, snapshot.frozen_xid
            )
            source = sa.table(table, sa.column(XMIN_KEY), *map(sa.column, names), schema=schema)
            statement = sa.select(
                *(source.c[name] for name in names),
                xmin_number(source.c[XMIN_KEY]).label(XMIN_KEY),
            ).select_from(source)
            predicate = window.predicate(xmin_number(source.c[XMIN_KEY]))
            if predicate is not None:
                statement = statement.where(predicate)
            if where is not None:
                statement = statement.where(where)
                if len(statement.get_final_froms()) != 1:
                    raise TypeError(
                        "where may only use the source table's columns, as sa.column(name): "
                        "a column of another table would join it in"
                    )
        except BaseException:
            connection.close()
            raise
        if window.is_full:
            log.warning("xmin full refresh of %r.%r: %s", schema, table, window.reason)
        return XMinExtraction(
            storage=self.storage,
            source_schema=schema,
            source_table=table,
            previous=previous,
            snapshot=snapshot,
            window=window,
            connection=connection,
            transaction=transaction,
            statement=statement,
            batch_size=batch_size,
        )

    def _inspect(
        self, conn: Connection, schema: str, table: str, columns: Sequence[str] | None
    ) -> tuple[XMinSnapshot, list[str]]:
        """Anchor, relation checks, relfrozenxid and column names, all in the run's snapshot."""
        name = f"{schema!r}.{table!r}"
        try:
            anchor_row = conn.execute(
                anchor_statement(conn.dialect.server_version_info or (0,))
            ).one()
            if anchor_row.isolation != "repeatable read":
                raise XMinError(
                    f"the source transaction runs at {anchor_row.isolation!r}, not repeatable "
                    "read: anchor and rows would not agree"
                )
            relation = conn.execute(_RELATION, {"schema_name": schema, "table_name": table}).first()
            if relation is None:
                raise SourceTableNotFoundError(
                    f"source table {name} does not exist (or its schema is not visible) in "
                    f"{safe_url(conn.engine.url)}"
                )
            kind = relation.relkind
            if kind not in _ROW_RELKINDS:
                what = _OTHER_RELKINDS.get(kind, f"relation of kind {kind!r}")
                raise SourceNotATableError(
                    f"{name} is a {what}: it has no xmin system column, so it cannot be "
                    "extracted by XMin; extract its base table, or use "
                    "incremental_strategy: column"
                )
            if not relation.schema_usage or not relation.can_select:
                missing = "USAGE on schema" if not relation.schema_usage else "SELECT on table"
                raise SourcePermissionError(
                    f"the source user has no {missing} {name}: grant it, or use a user that has"
                )
            anchor, xmax = _as_int(anchor_row.anchor), _as_int(anchor_row.xmax)
            raw_frozen = [_as_int(relation.relfrozenxid)]
            if kind == "p":
                raw_frozen = [
                    _as_int(v)
                    for v in conn.execute(_LEAF_FROZEN, {"relid": relation.oid}).scalars()
                ]
            frozen = [epoch_extend(v, xmax) for v in raw_frozen if v != 0]
            names = list(conn.execute(_COLUMNS, {"relid": relation.oid}).scalars())
        except DBAPIError as error:
            if getattr(error.orig, "pgcode", None) == _INSUFFICIENT_PRIVILEGE:
                raise SourcePermissionError(
                    f"the source user may not read {name}: {type(error.orig).__name__}"
                ) from error
            raise
        if columns is not None:
            unknown = [c for c in columns if c not in names]
            if unknown:
                raise SourceColumnError(f"{name} has no column(s) {unknown!r}")
            names = list(dict.fromkeys(columns))
        return XMinSnapshot(anchor, xmax, min(frozen) if frozen else None), names
