"""Postgres XMin incremental extraction that never loses a row.

``XMinExtractor(source_engine, storage).extract(schema, table)`` opens one READ ONLY,
REPEATABLE READ transaction on the source, reads the snapshot's xmin there (the *anchor*,
64-bit), checks the table, derives the window from the stored checkpoint and streams the rows
of that window from the same snapshot. ``commit()`` saves the anchor as the new checkpoint,
with compare-and-set, and only when the caller says the target load committed.

Around the window: every checkpoint records which extraction owns it (``extraction_identity``:
another one is refused) and what the source was (``source_fingerprint``: system identifier,
timeline, the table's oid and its partitions / children); when that changed in a way that
can bring rows older than the checkpoint, the run reads the whole table.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect, Engine, MappingResult, Row, RowMapping
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ColumnElement, TextClause

from dpone_state.engine import safe_url
from dpone_state.errors import (
    BackendMismatchError,
    CheckpointIdentityError,
    ForeignPartitionError,
    InvalidStateError,
    RevisionConflictError,
    SourceColumnError,
    SourceNotATableError,
    SourcePermissionError,
    SourceTableNotFoundError,
    XMinError,
)
from dpone_state.models import (
    LOAD_ID_MAX,
    XMIN_TAG_MAX,
    XMinState,
    check_key_name,
    check_name,
    utc_now,
)
from dpone_state.storage import XMinStateStorage
from dpone_state.tables import LAST_LOAD_ID
from dpone_state.xmin_window import (
    WindowKind,
    XMinWindow,
    compute_window,
    epoch_extend,
    xmin_number,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "HISTORY_PRIVILEGES",
    "XMIN_KEY",
    "CheckpointIdentityError",
    "ForeignPartitionError",
    "SourceColumnError",
    "SourceFingerprint",
    "SourceHistory",
    "SourceNotATableError",
    "SourcePermissionError",
    "SourceTableNotFoundError",
    "XMinError",
    "XMinExtraction",
    "XMinExtractor",
    "XMinSnapshot",
    "anchor_statement",
    "checkpoint_table_key",
    "extraction_identity",
    "new_children_hold_only_window_rows",
    "read_source_history",
    "relation_tree",
    "source_change",
    "tree_fingerprint",
    "tree_frozen_xid",
]

log = logging.getLogger("dpone_state.xmin")

DEFAULT_BATCH_SIZE = 10_000
#: Name of the extra column every extracted row carries: its xmin as a Python int. dpone's
#: technical column name (a target table cannot even have a column named ``xmin`` on PostgreSQL).
XMIN_KEY = "__dpone__xmin"
#: The system column read.
_XMIN_SYSTEM_COLUMN = "xmin"
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
_pg_inherits = sa.table(
    "pg_inherits", sa.column("inhrelid"), sa.column("inhparent"), schema="pg_catalog"
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
    """What one run saw in its snapshot: 64-bit anchor (snapshot xmin), next ID, relfrozenxid,
    and (when read) the source's history and the table's fingerprint."""

    anchor: int
    xmax: int
    frozen_xid: int | None
    history: SourceHistory | None = None
    fingerprint: SourceFingerprint | None = None
    #: The relation and its partitions / children as read (``relation_tree``).
    tree: tuple[Row[Any], ...] | None = None


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
            sa.and_(
                sa.func.has_schema_privilege(_pg_namespace.c.oid, "USAGE"),
                sa.func.has_table_privilege(c.c.oid, "SELECT"),
            ).label("can_select"),
        )
        .select_from(c.join(n, n.c.oid == c.c.relnamespace))
        .where(
            n.c.nspname == sa.bindparam("schema_name"),
            c.c.relname == sa.bindparam("table_name"),
        )
    )


@cache
def _tree_statement() -> sa.Select[Any]:
    """The relation and every partition / inheritance child below it, at any depth.

    ``pg_inherits`` holds both declarative partitions and ``INHERIT`` children: together they
    are every relation whose rows a ``SELECT`` on the table returns. Built on first use: the
    PostgreSQL dialect package (for ``REGCLASS``) costs ~25 ms of ``import dpone_state``.
    """
    from sqlalchemy.dialects import postgresql  # noqa: PLC0415

    inh = _pg_inherits
    tree = (
        sa.select(_pg_class.c.oid.label("relid"))
        .where(_pg_class.c.oid == sa.bindparam("relid"))
        .cte("tree", recursive=True)
    )
    parent = tree.alias("parent")
    tree = tree.union_all(
        sa.select(inh.c.inhrelid).select_from(inh.join(parent, inh.c.inhparent == parent.c.relid))
    )
    c = _pg_class
    return (
        sa.select(
            _bigint(c.c.oid).label("oid"),
            sa.cast(sa.cast(c.c.oid, postgresql.REGCLASS), sa.Text).label("name"),
            _pg_namespace.c.nspname,
            c.c.relname,
            c.c.relkind,
            _bigint(c.c.relfrozenxid).label("relfrozenxid"),
            sa.and_(
                sa.func.has_schema_privilege(_pg_namespace.c.oid, "USAGE"),
                sa.func.has_table_privilege(c.c.oid, "SELECT"),
            ).label("can_select"),
        )
        .select_from(
            tree.join(c, c.c.oid == tree.c.relid).join(
                _pg_namespace, _pg_namespace.c.oid == c.c.relnamespace
            )
        )
        .order_by(c.c.oid)
    )


def _can_execute(signature: str) -> ColumnElement[bool]:
    """Whether the function exists on this server version and the user may execute it."""
    function = sa.func.to_regprocedure(signature)
    return sa.case(
        (function.is_(None), sa.false()),
        else_=sa.func.has_function_privilege(function, "EXECUTE"),
    )


def _server_statement() -> sa.Select[Any]:
    """The source database, whether it is a standby, and which control functions may be run."""
    return sa.select(
        sa.func.current_database().label("database"),
        sa.func.pg_is_in_recovery().label("in_recovery"),
        _can_execute("pg_catalog.pg_control_system()").label("can_system"),
        _can_execute("pg_catalog.pg_control_checkpoint()").label("can_checkpoint"),
        sa.and_(
            _can_execute("pg_catalog.pg_current_wal_lsn()"),
            _can_execute("pg_catalog.pg_walfile_name(pg_lsn)"),
        ).label("can_walfile"),
    )


def _columns_statement() -> sa.Select[Any]:
    a = _pg_attribute
    return (
        sa.select(a.c.attname)
        .where(a.c.attrelid == sa.bindparam("relid"), a.c.attnum > 0, sa.not_(a.c.attisdropped))
        .order_by(a.c.attnum)
    )


_RELATION = _relation_statement()
_SERVER = _server_statement()
_COLUMNS = _columns_statement()

#: What reading the source's transaction-ID history needs (PUBLIC has it by default).
HISTORY_PRIVILEGES = (
    "EXECUTE on pg_control_system() (system identifier), and on pg_current_wal_lsn() and "
    "pg_walfile_name(pg_lsn) (timeline of a primary) or pg_control_checkpoint() (timeline of a "
    "standby)"
)


@dataclass(frozen=True)
class SourceHistory:
    """What identifies the source's transaction-ID history: system identifier and timeline.

    A promoted standby keeps the system identifier and starts a new timeline; a restore to a
    point in time starts a new timeline; another cluster (a dump restored, ``pg_upgrade``) has
    another system identifier. ``None`` where the source user may not read it (``unreadable``
    then says what is missing).
    """

    database: str
    system_identifier: str | None
    timeline: int | None
    in_recovery: bool
    unreadable: str = ""


def read_source_history(conn: Connection) -> SourceHistory:
    """The source's database name, system identifier and timeline, as far as they are readable.

    Never fails for want of a privilege: a function the user may not execute is not called.
    """
    server = conn.execute(_SERVER).one()
    columns: list[ColumnElement[Any]] = []
    if server.can_system:
        control = sa.func.pg_control_system().table_valued("system_identifier")
        columns.append(
            sa.select(sa.cast(control.c.system_identifier, sa.Text))
            .scalar_subquery()
            .label("system_identifier")
        )
    if server.in_recovery and server.can_checkpoint:
        checkpoint = sa.func.pg_control_checkpoint().table_valued("timeline_id")
        columns.append(
            sa.select(sa.cast(checkpoint.c.timeline_id, sa.Text)).scalar_subquery().label("tli")
        )
    elif not server.in_recovery and server.can_walfile:
        wal = sa.func.pg_walfile_name(sa.func.pg_current_wal_lsn())
        columns.append(sa.func.substr(wal, 1, 8).label("tli"))
    row = conn.execute(sa.select(*columns)).one()._mapping if columns else {}
    system = row.get("system_identifier")
    tli = row.get("tli")
    timeline = None
    if tli is not None:
        timeline = int(tli) if server.in_recovery else int(tli, 16)
    missing = []
    if system is None:
        missing.append("system identifier")
    if timeline is None:
        missing.append("timeline")
    unreadable = ""
    if missing:
        unreadable = (
            f"the source user cannot read the {' and '.join(missing)} of "
            f"{server.database!r}: a failover or restore to a point in time is not detected "
            f"(grant {HISTORY_PRIVILEGES})"
        )
    return SourceHistory(server.database, system, timeline, bool(server.in_recovery), unreadable)


def _digest(*parts: object) -> str:
    text = json.dumps(parts, separators=(",", ":"), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SourceFingerprint:
    """What the source was when a checkpoint was taken; stored as compact JSON.

    ``relation``: the table's oid (a rename swap, a drop and re-create, a restore change it);
    ``sources``: a digest of the oids and kinds of its partitions and inheritance children
    (``ATTACH`` / ``DETACH PARTITION``, ``INHERIT`` / ``NO INHERIT`` change it). Rewrites
    (``VACUUM FULL``, ``CLUSTER``, ``ALTER TABLE … TYPE``) keep both.
    """

    system_identifier: str | None
    timeline: int | None
    relation: int
    sources: str
    #: The oids of the partitions / children, where they fit the column (else ``None``): a
    #: later run can then tell a child that was added from one that was removed.
    children: tuple[int, ...] | None = None

    def dumps(self) -> str:
        data: dict[str, Any] = {
            "v": 1,
            "system": self.system_identifier,
            "timeline": self.timeline,
            "relation": self.relation,
            "sources": self.sources,
            "children": None if self.children is None else list(self.children),
        }
        text = json.dumps(data, separators=(",", ":"), sort_keys=True)
        if len(text) > XMIN_TAG_MAX:  # too many children to list: the digest alone
            text = json.dumps({**data, "children": None}, separators=(",", ":"), sort_keys=True)
        return text

    @classmethod
    def loads(cls, text: str | None) -> SourceFingerprint | None:
        """The fingerprint stored in a checkpoint; ``None`` if none (or not one we can read)."""
        if not text:
            return None
        try:
            data = json.loads(text)
            children = data.get("children")
            return cls(
                None if data["system"] is None else str(data["system"]),
                None if data["timeline"] is None else int(data["timeline"]),
                int(data["relation"]),
                str(data["sources"]),
                None if children is None else tuple(int(oid) for oid in children),
            )
        except (ValueError, KeyError, TypeError):
            return None

    def history_change(self, stored: SourceFingerprint) -> str:
        """Why the transaction-ID history differs from ``stored``'s ("" if it does not, or if
        a part was unreadable then or now)."""
        if None not in (stored.system_identifier, self.system_identifier) and (
            stored.system_identifier != self.system_identifier
        ):
            return (
                f"the source's system identifier changed ({stored.system_identifier} -> "
                f"{self.system_identifier}): another cluster (restore, pg_upgrade, migration); "
                "its transaction IDs are not the checkpoint's"
            )
        if None not in (stored.timeline, self.timeline) and stored.timeline != self.timeline:
            return (
                f"the source's timeline changed ({stored.timeline} -> {self.timeline}): a "
                "failover or a restore to a point in time may have reused transaction IDs "
                "below the checkpoint"
            )
        return ""

    def changes_since(self, stored: SourceFingerprint | None) -> str:
        """Why rows may have joined the table, or the ID history changed, since ``stored``.

        ``""`` when nothing changed, when children were only removed, or when nothing was
        recorded to compare with (a legacy checkpoint, or a part unreadable then or now).
        """
        if stored is None:
            return ""
        history = self.history_change(stored)
        if history:
            return history
        if stored.relation != self.relation:
            return (
                f"the table was replaced (oid {stored.relation} -> {self.relation}: a rename "
                "swap, a drop and re-create, or a restore); its rows may be older than the "
                "checkpoint"
            )
        if stored.sources != self.sources and self.added_children(stored) != ():
            return (
                "the table's partitions or inheritance children changed (ATTACH/DETACH "
                "PARTITION, INHERIT/NO INHERIT); an attached relation's rows may be older "
                "than the checkpoint"
            )
        return ""

    def added_children(self, stored: SourceFingerprint) -> tuple[int, ...] | None:
        """The children that are new since ``stored``; ``None`` if that cannot be told (the
        children were not listed), ``()`` if children were only removed (no row joined)."""
        if stored.children is None or self.children is None:
            return None
        return tuple(sorted(set(self.children) - set(stored.children)))

    def only_children_added(self, stored: SourceFingerprint | None) -> tuple[int, ...] | None:
        """The added children when they are the only change since ``stored`` (else ``None``):
        a run may then check their rows instead of reading the whole table."""
        if stored is None or self.history_change(stored) or self.relation != stored.relation:
            return None
        return self.added_children(stored) or None


def source_change(
    conn: Connection,
    snapshot: XMinSnapshot,
    stored: SourceFingerprint | None,
    window: XMinWindow,
) -> str:
    """Why this run must read the whole table because the source changed ("" if it need not).

    Children that were only added, and hold only rows of the window, need no full refresh.
    """
    fingerprint = snapshot.fingerprint
    if fingerprint is None:
        return ""
    changed = fingerprint.changes_since(stored)
    added = fingerprint.only_children_added(stored)
    if (
        changed
        and added
        and snapshot.tree is not None
        and new_children_hold_only_window_rows(conn, snapshot.tree, added, window)
    ):
        log.info(
            "xmin: %d new partition(s)/child(ren) hold only rows of this window: no full refresh",
            len(added),
        )
        return ""
    return changed


def relation_tree(conn: Connection, relid: int) -> list[Row[Any]]:
    """``oid``, ``relkind``, ``relfrozenxid`` of the relation and all its descendants."""
    return list(conn.execute(_tree_statement(), {"relid": relid}).all())


def tree_fingerprint(
    history: SourceHistory, relid: int, tree: Sequence[Row[Any]]
) -> SourceFingerprint:
    """The fingerprint of a relation whose tree (``relation_tree``) was read now."""
    children = sorted([_as_int(row.oid), row.relkind] for row in tree if _as_int(row.oid) != relid)
    return SourceFingerprint(
        history.system_identifier,
        history.timeline,
        relid,
        _digest(children),
        tuple(oid for oid, _ in children),
    )


def new_children_hold_only_window_rows(
    conn: Connection, tree: Sequence[Row[Any]], added: Sequence[int], window: XMinWindow
) -> bool:
    """Whether every row of the children ``added`` since the checkpoint lies in ``window``.

    Then the window delivers them and no full refresh is needed (a partition created after
    the checkpoint, e.g. next month's). One ``EXISTS`` per added relation that holds rows, in
    the run's snapshot; it stops at the first row older than the window (a backfill).
    """
    if window.is_full:
        return False
    new = set(added)
    for row in tree:
        if _as_int(row.oid) not in new or row.relkind not in _ROW_RELKINDS or row.relkind == "p":
            continue
        if not row.can_select:  # a partition is read through its parent: cannot check it
            return False
        child = sa.table(row.relname, sa.column(_XMIN_SYSTEM_COLUMN), schema=row.nspname)
        predicate = window.predicate(xmin_number(child.c[_XMIN_SYSTEM_COLUMN]))
        if predicate is None:
            return False
        outside = sa.select(sa.literal(1)).select_from(child).where(sa.not_(predicate))
        if conn.execute(sa.select(outside.exists())).scalar_one():
            return False
    return True


def tree_frozen_xid(tree: Sequence[Row[Any]], xmax: int) -> int | None:
    """The oldest ``relfrozenxid`` of the tree's relations that hold rows, 64-bit."""
    raw = [_as_int(row.relfrozenxid) for row in tree if row.relkind in _ROW_RELKINDS]
    frozen = [epoch_extend(value, xmax) for value in raw if value != 0]
    return min(frozen) if frozen else None


@cache
def _pg_dialect() -> Dialect:
    """PostgreSQL's dialect, to render a ``where`` predicate; imported on first use."""
    from sqlalchemy.dialects import postgresql  # noqa: PLC0415

    return postgresql.dialect()  # type: ignore[no-untyped-call]


def extraction_identity(
    database: str,
    schema: str,
    *,
    table: str,
    columns: Sequence[str] | None,
    where: ColumnElement[bool] | TextClause | None,
    checkpoint_key: str | None,
) -> str:
    """Which extraction owns a checkpoint, as compact JSON (compared as a whole).

    Source database and table, a digest of the columns read and the ``where`` predicate (its
    SQL and bound values), and the caller's ``checkpoint_key``.
    """
    predicate = None
    if where is not None:
        compiled = where.compile(dialect=_pg_dialect())
        predicate = [compiled.string, sorted(compiled.params.items())]
    shape = _digest(None if columns is None else sorted(set(columns)), predicate)
    return json.dumps(
        {"v": 1, "db": database, "table": [schema, table], "select": shape, "key": checkpoint_key},
        separators=(",", ":"),
        sort_keys=True,
        ensure_ascii=False,
    )


def checkpoint_table_key(table: str, checkpoint_key: str | None) -> str:
    """The ``source_table`` a checkpoint is stored under: the table, or ``table#key``."""
    if checkpoint_key is None:
        return table
    check_key_name("checkpoint_key", checkpoint_key)
    if "#" in checkpoint_key:
        raise InvalidStateError("checkpoint_key", "must not contain '#'")
    return check_key_name("source_table and checkpoint_key", f"{table}#{checkpoint_key}")


class XMinExtraction:
    """One run: iterate it for the changed rows, then ``commit()`` once the target committed.

    Rows are ``RowMapping`` objects with the selected columns plus ``__dpone__xmin`` (an int), streamed
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
        identity: str | None = None,
        checkpoint_key: str | None = None,
        connection: Connection,
        transaction: sa.engine.Transaction,
        statement: sa.Select[Any],
        batch_size: int,
    ) -> None:
        self.source_schema = source_schema
        self.source_table = source_table
        self.checkpoint_key = checkpoint_key
        #: The ``source_table`` the checkpoint is stored under (``table#checkpoint_key``).
        self.checkpoint_table = checkpoint_table_key(source_table, checkpoint_key)
        #: The checkpoint this run started from (``None``: none stored).
        self.previous = previous
        self.snapshot = snapshot
        self.window = window
        history = snapshot.history
        #: What this run could not check, said once here and in a WARNING log line (e.g. the
        #: source user cannot read the system identifier / timeline: failover is not detected).
        self.warnings: tuple[str, ...] = (
            (history.unreadable,) if history is not None and history.unreadable else ()
        )
        #: The checkpoint ``commit()`` saves: the anchor and how this window was read.
        self.state = XMinState(
            xmin_value=snapshot.anchor,
            is_initial=window.is_full,
            wraparound_detected=window.wraparound_detected,
            frozen_xid=snapshot.frozen_xid,
            extraction_identity=identity,
            source_fingerprint=(
                snapshot.fingerprint.dumps() if snapshot.fingerprint is not None else None
            ),
        )
        #: Rows handed out so far.
        self.rows_read = 0
        self._storage = storage
        self._connection: Connection | None = connection
        self._transaction = transaction
        self._statement = statement
        self._batch_size = batch_size
        self._result: MappingResult | None = None
        self._started = False
        self._exhausted = False
        self._committed = False
        self._written_at: datetime | None = None  # set by the first try of commit()

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
        self._result = result
        try:
            for batch in result.partitions(self._batch_size):
                self.rows_read += len(batch)
                yield batch
            self._exhausted = True
        finally:
            # An abandoned iterator is finalized by the garbage collector, possibly after
            # close() ended the transaction: the result is closed here only if close() did not.
            if self._result is result:
                self._close_result()
            if self._exhausted:
                self.close()  # release the snapshot as soon as every row is read

    def __iter__(self) -> Iterator[RowMapping]:
        for batch in self.batches():
            yield from batch

    @property
    def storage(self) -> XMinStateStorage:
        """The storage the checkpoint is saved in."""
        return self._storage

    def commit(
        self, *, connection: Connection | None = None, load_id: str | None = None
    ) -> XMinState:
        """Save the anchor as the checkpoint; call it only after the target load committed.

        Every row must have been read first. Compare-and-set against the revision loaded at
        the start: ``RevisionConflictError`` if another run saved in between (nothing written).
        Returns the saved checkpoint (with its new revision).

        With ``connection`` (the target load's, in its open transaction, to the storage's
        database) the save joins that transaction instead: call it before the target commits,
        and the checkpoint commits or rolls back with the load (``load_exactly_once`` runs the
        whole loop). ``load_id`` is the receipt ``probe()`` reads after a lost commit reply.
        """
        if self._committed:
            raise XMinError("this extraction is already committed")
        if not self._exhausted:
            raise XMinError(
                f"not every row of {self.source_schema!r}.{self.source_table!r} was read "
                f"({self.rows_read} so far): saving the checkpoint now would skip the rest"
            )
        self.close()
        storage = self._storage
        # One write time for every try of this commit: it is what identifies this write.
        if self._written_at is None:
            self._written_at = utc_now()
        try:
            params = storage._key_params(self.source_schema, self.checkpoint_table)
            if load_id is not None:
                params[f"p_{LAST_LOAD_ID}"] = check_name("load_id", load_id, LOAD_ID_MAX)
            storage._save_state(
                params,
                self.state,
                self.expected_revision,
                self._written_at,
                connection=connection,
                receipt=load_id is not None,
            )
        except RevisionConflictError:
            if connection is not None:  # in the caller's transaction: the caller decides
                raise
            # A commit() retried after an unknown outcome finds its own earlier write (its
            # write time and values): that is not a conflict.
            if not storage._is_own_write(
                self.source_schema, self.checkpoint_table, self.state, self._written_at
            ):
                raise
        written = self._written_at
        self._committed = True
        log.info(
            "xmin checkpoint of %r.%r %s %d (%s window, %d rows)",
            self.source_schema,
            self.checkpoint_table,
            "moved to" if connection is None else "written, to commit with the load, at",
            self.state.xmin_value,
            self.window.kind,
            self.rows_read,
        )
        # As stored: the first save's time stays (``__dpone__loaded_at``), the revision moved on.
        first_saved = self.previous.timestamp if self.previous else written
        return replace(self.state, timestamp=first_saved, revision=self.expected_revision + 1)

    def close(self) -> None:
        """End the source transaction (read only: nothing to undo); the checkpoint stays."""
        self._close_result()
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                self._transaction.rollback()
            finally:
                connection.close()

    def _close_result(self) -> None:
        """Close the server-side cursor of an unfinished read, quietly (its rows are unwanted)."""
        result, self._result = self._result, None
        if result is not None:
            try:
                result.close()
            except Exception:
                log.debug("closing the cursor of an abandoned xmin extraction", exc_info=True)

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
        where: ColumnElement[bool] | TextClause | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        *,
        checkpoint_key: str | None = None,
    ) -> XMinExtraction:
        """Start one run over ``schema.table``: the rows written since the checkpoint.

        ``columns``: the columns to read (default: all); ``where``: an extra Core predicate
        (e.g. ``sa.column("region") == "eu"``) or explicit SQL text (``sa.text(...)``, as
        dpone's ``custom_predicate``), never a plain string. ``checkpoint_key``: a name for
        this extraction's own checkpoint (stored as ``table#key``), for two pipelines on one
        table. Use the result as a context manager. Raises ``SourceTableNotFoundError``,
        ``SourceNotATableError`` (views), ``ForeignPartitionError``, ``SourcePermissionError``,
        ``SourceColumnError``, ``CheckpointIdentityError`` (the checkpoint belongs to another
        extraction) before any row is read.
        """
        check_key_name("source_schema", schema)
        check_key_name("source_table", table)
        key_table = checkpoint_table_key(table, checkpoint_key)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidStateError("batch_size", "must be an integer >= 1")
        if where is not None and not isinstance(where, (ColumnElement, TextClause)):
            raise TypeError(
                "where must be a SQLAlchemy Core predicate (e.g. sa.column('region') == 'eu') "
                "or explicit SQL text (sa.text(\"region = 'eu'\"), dpone's custom_predicate), "
                f"not a {type(where).__name__}: a plain string is never taken as SQL"
            )
        if columns is not None and (
            isinstance(columns, str) or not all(isinstance(c, str) for c in columns)
        ):
            raise TypeError("columns must be a sequence of column names")
        previous = self.storage.load_state(schema, key_table)
        connection = self.source_engine.connect().execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
        try:
            transaction = connection.begin()
            snapshot, names = self._inspect(connection, schema, table, columns)
            assert snapshot.history is not None
            identity = extraction_identity(
                snapshot.history.database,
                schema,
                table=table,
                columns=columns,
                where=where,
                checkpoint_key=checkpoint_key,
            )
            window = compute_window(
                previous.xmin_value if previous else None, snapshot.anchor, snapshot.frozen_xid
            )
            if previous is not None and not window.is_full and snapshot.fingerprint is not None:
                stored = SourceFingerprint.loads(previous.source_fingerprint)
                changed = source_change(connection, snapshot, stored, window)
                if changed:
                    window = replace(window, kind=WindowKind.FULL, reason=changed)
            source = sa.table(
                table, sa.column(_XMIN_SYSTEM_COLUMN), *map(sa.column, names), schema=schema
            )
            system_xmin = xmin_number(source.c[_XMIN_SYSTEM_COLUMN])
            statement = sa.select(
                *(source.c[name] for name in names), system_xmin.label(XMIN_KEY)
            ).select_from(source)
            predicate = window.predicate(system_xmin)
            if predicate is not None:
                statement = statement.where(predicate)
            if where is not None:
                statement = statement.where(where)
                if len(statement.get_final_froms()) != 1:
                    raise TypeError(
                        "where may only use the source table's columns, as sa.column(name): "
                        "a column of another table would join it in"
                    )
            stored_identity = previous.extraction_identity if previous else None
            if stored_identity is not None and stored_identity != identity:
                raise CheckpointIdentityError(schema, key_table, stored_identity, identity)
        except BaseException:
            connection.close()
            raise
        if window.is_full:
            log.warning("xmin full refresh of %r.%r: %s", schema, key_table, window.reason)
        if snapshot.history.unreadable:
            log.warning(
                "xmin extraction of %r.%r: %s", schema, key_table, snapshot.history.unreadable
            )
        return XMinExtraction(
            storage=self.storage,
            source_schema=schema,
            source_table=table,
            previous=previous,
            snapshot=snapshot,
            window=window,
            identity=identity,
            checkpoint_key=checkpoint_key,
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
            tree = relation_tree(conn, relation.oid)
            foreign = [row.name for row in tree if row.relkind == "f"]
            if foreign:
                raise ForeignPartitionError(
                    f"{name} has foreign partition(s) or inheritance child(ren) "
                    f"{', '.join(foreign)}: their rows come from "
                    "another server with xmin = 0, so no XMin window would ever contain them; "
                    "extract the local partitions by XMin and the foreign ones whole "
                    "(load_strategy full_refresh), or extract them at their own server"
                )
            names = list(conn.execute(_COLUMNS, {"relid": relation.oid}).scalars())
            history = read_source_history(conn)
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
        fingerprint = tree_fingerprint(history, _as_int(relation.oid), tree)
        snapshot = XMinSnapshot(
            anchor, xmax, tree_frozen_xid(tree, xmax), history, fingerprint, tuple(tree)
        )
        return snapshot, names
