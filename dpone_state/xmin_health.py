"""XMin health: how far each checkpoint is from trouble, judged against the live source.

``xmin_health(source_engine, storage)`` reads every checkpoint of ``storage`` and, in one short
READ ONLY, REPEATABLE READ transaction on the source, what the next run would find: the anchor
(snapshot xmin), each table's ``relfrozenxid`` and fingerprint (oid, partitions, inheritance
children), the system identifier and timeline, and the freeze settings. Nothing is written,
anywhere. Each checkpoint gets a ``verdict``:

- ``"full refresh due"``: the next run will read the whole table (no window can be trusted:
  ``relfrozenxid`` passed the checkpoint, the checkpoint is ahead of the source or 2^32+ IDs
  behind, the timeline / system identifier changed, the table was replaced or its partitions
  changed);
- ``"warn"``: a threshold of ``HealthThresholds`` is crossed (too many transactions or too much
  time behind, a forced freeze near, the source's freeze headroom low, the table missing, the
  history unreadable);
- ``"ok"`` otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from dpone_state.engine import safe_url
from dpone_state.errors import BackendMismatchError, InvalidStateError
from dpone_state.models import Checkpoint, utc_now
from dpone_state.storage import XMinStateStorage
from dpone_state.xmin import (
    _RELATION,
    SourceFingerprint,
    SourceHistory,
    XMinSnapshot,
    _as_int,
    anchor_statement,
    read_source_history,
    relation_tree,
    source_change,
    tree_fingerprint,
    tree_frozen_xid,
)
from dpone_state.xmin_window import compute_window, epoch_extend

__all__ = [
    "FULL_REFRESH_DUE",
    "OK",
    "VERDICTS",
    "WARN",
    "CheckpointHealth",
    "HealthThresholds",
    "xmin_health",
]

OK: Final = "ok"
WARN: Final = "warn"
FULL_REFRESH_DUE: Final = "full refresh due"
#: The verdicts, from best to worst.
VERDICTS: Final = (OK, WARN, FULL_REFRESH_DUE)


@dataclass(frozen=True)
class HealthThresholds:
    """When a checkpoint gets ``"warn"``; ``None`` turns a check off.

    ``xids_behind``: transactions between the checkpoint and the source's snapshot xmin;
    ``age``: time since the checkpoint was last saved; ``xids_until_forced_freeze``: the
    estimated transactions left before ``relfrozenxid`` passes the checkpoint (a forced full
    refresh); ``freeze_headroom``: transactions left before the source database reaches
    ``autovacuum_freeze_max_age`` (anti-wraparound autovacuum of everything);
    ``unreadable_history``: warn when the system identifier / timeline cannot be read (a
    failover would then go unnoticed).
    """

    xids_behind: int | None = 200_000_000
    age: timedelta | None = timedelta(days=1)
    xids_until_forced_freeze: int | None = 20_000_000
    freeze_headroom: int | None = 20_000_000
    unreadable_history: bool = True

    def __post_init__(self) -> None:
        for name in ("xids_behind", "xids_until_forced_freeze", "freeze_headroom"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise InvalidStateError(name, "must be an integer >= 0 or None")
        if self.age is not None and (
            not isinstance(self.age, timedelta) or self.age < timedelta(0)
        ):
            raise InvalidStateError("age", "must be a timedelta >= 0 or None")


@dataclass(frozen=True)
class CheckpointHealth:
    """One checkpoint judged against the source, with the numbers behind the verdict."""

    #: The source relation (for a ``checkpoint_key`` checkpoint, the table it extracts).
    source_schema: str
    source_table: str
    #: The stored key's table part (``table`` or ``table#checkpoint_key``) and the key.
    checkpoint_table: str
    checkpoint_key: str | None
    #: The stored checkpoint (64-bit), its revision and last save.
    xmin_value: int
    revision: int
    updated_at: datetime
    #: Time since the last save.
    age: timedelta
    #: The source's snapshot xmin now (64-bit): where a run starting now would stop.
    anchor: int
    #: ``anchor - xmin_value``: the next window's width in transactions (negative: the
    #: checkpoint is ahead of the source: restored, another cluster or a failover).
    xids_behind: int
    #: The table's live ``relfrozenxid`` (the oldest of its partitions), 64-bit.
    frozen_xid: int | None
    #: Estimated transactions before ``relfrozenxid`` passes the checkpoint (0: passed or
    #: imminent). ``None``: the table was not found or holds no heap.
    xids_until_forced_freeze: int | None
    #: The source's ``autovacuum_freeze_max_age`` and the transactions left before its
    #: database's ``datfrozenxid`` reaches it.
    freeze_max_age: int
    freeze_headroom: int
    #: The source's system identifier and timeline now (``None``: not readable).
    system_identifier: str | None
    timeline: int | None
    #: Whether the table exists (and is visible to the source user).
    table_found: bool
    #: Non-empty when the checkpoint belongs to another database than the source's.
    identity_mismatch: str
    #: Non-empty when the system identifier or timeline differs from the checkpoint's.
    history_mismatch: str
    #: Why the next run would be a full refresh ("" when it would read a window).
    full_refresh_reason: str
    verdict: str
    #: Every reason behind the verdict, worst first.
    reasons: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping: datetimes as ISO 8601, ``age`` in seconds."""
        return {
            "source_schema": self.source_schema,
            "source_table": self.source_table,
            "checkpoint_table": self.checkpoint_table,
            "checkpoint_key": self.checkpoint_key,
            "xmin_value": self.xmin_value,
            "revision": self.revision,
            "updated_at": self.updated_at.isoformat(),
            "age_seconds": self.age.total_seconds(),
            "anchor": self.anchor,
            "xids_behind": self.xids_behind,
            "frozen_xid": self.frozen_xid,
            "xids_until_forced_freeze": self.xids_until_forced_freeze,
            "freeze_max_age": self.freeze_max_age,
            "freeze_headroom": self.freeze_headroom,
            "system_identifier": self.system_identifier,
            "timeline": self.timeline,
            "table_found": self.table_found,
            "identity_mismatch": self.identity_mismatch,
            "history_mismatch": self.history_mismatch,
            "full_refresh_reason": self.full_refresh_reason,
            "verdict": self.verdict,
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class _Source:
    anchor: int
    xmax: int
    history: SourceHistory
    freeze_max_age: int
    freeze_min_age: int
    database_frozen: int


def _settings_statement() -> sa.Select[Any]:
    database = sa.table("pg_database", sa.column("datname"), sa.column("datfrozenxid"))
    as_int = sa.cast(sa.cast(database.c.datfrozenxid, sa.Text), sa.BigInteger)
    return sa.select(
        sa.cast(sa.func.current_setting("autovacuum_freeze_max_age"), sa.BigInteger).label(
            "freeze_max_age"
        ),
        sa.cast(sa.func.current_setting("vacuum_freeze_min_age"), sa.BigInteger).label(
            "freeze_min_age"
        ),
        sa.select(as_int)
        .where(database.c.datname == sa.func.current_database())
        .scalar_subquery()
        .label("datfrozenxid"),
    )


_SETTINGS = _settings_statement()


def _identity(checkpoint: Checkpoint) -> dict[str, Any] | None:
    text = checkpoint.state.extraction_identity
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _relation_of(checkpoint: Checkpoint) -> tuple[str, str, str | None, str | None]:
    """(schema, table, checkpoint_key, database) a checkpoint extracts, from its identity."""
    identity = _identity(checkpoint)
    if identity is not None:
        table = identity.get("table")
        if isinstance(table, list) and len(table) == 2:
            key = identity.get("key")
            database = identity.get("db")
            return (
                str(table[0]),
                str(table[1]),
                None if key is None else str(key),
                None if database is None else str(database),
            )
    return checkpoint.source_schema, checkpoint.source_table, None, None


def _threshold_warnings(
    thresholds: HealthThresholds,
    source: _Source,
    *,
    xids_behind: int,
    age: timedelta,
    until_freeze: int | None,
    headroom: int,
) -> list[str]:
    """The thresholds a checkpoint crosses."""
    warn = []
    if thresholds.xids_behind is not None and xids_behind >= thresholds.xids_behind:
        warn.append(f"{xids_behind} transactions behind the source")
    if thresholds.age is not None and age >= thresholds.age:
        warn.append(f"last saved {age} ago")
    limit = thresholds.xids_until_forced_freeze
    if until_freeze is not None and limit is not None and until_freeze < limit:
        warn.append(
            f"about {until_freeze} transactions before relfrozenxid passes the checkpoint "
            "(a forced full refresh): run the extraction"
        )
    if thresholds.freeze_headroom is not None and headroom < thresholds.freeze_headroom:
        warn.append(
            f"the source database is {headroom} transactions from "
            f"autovacuum_freeze_max_age ({source.freeze_max_age})"
        )
    if thresholds.unreadable_history and source.history.unreadable:
        warn.append(source.history.unreadable)
    return warn


def _judge(
    checkpoint: Checkpoint,
    source: _Source,
    conn: Connection,
    thresholds: HealthThresholds,
    now: datetime,
) -> CheckpointHealth:
    state = checkpoint.state
    schema, table, key, database = _relation_of(checkpoint)
    history = source.history
    identity_mismatch = ""
    if database is not None and database != history.database:
        identity_mismatch = (
            f"the checkpoint belongs to database {database!r}, the source is "
            f"{history.database!r}: not judged against it"
        )
    relation = conn.execute(_RELATION, {"schema_name": schema, "table_name": table}).first()
    stored = SourceFingerprint.loads(state.source_fingerprint)
    frozen = None
    snapshot = None
    if relation is not None:
        relid = _as_int(relation.oid)
        tree = relation_tree(conn, relid)
        frozen = tree_frozen_xid(tree, source.xmax)
        fingerprint = tree_fingerprint(history, relid, tree)
        snapshot = XMinSnapshot(source.anchor, source.xmax, frozen, history, fingerprint, (*tree,))
    history_mismatch = ""
    if stored is not None and snapshot is not None and snapshot.fingerprint is not None:
        history_mismatch = snapshot.fingerprint.history_change(stored)
    window = compute_window(state.xmin_value, source.anchor, frozen)
    full_reason = window.reason
    if not window.is_full and snapshot is not None:
        # what the next run would decide, the same way (new partitions' rows checked)
        full_reason = source_change(conn, snapshot, stored, window)
    until_freeze = None
    if frozen is not None:
        if frozen > state.xmin_value:
            until_freeze = 0
        else:
            forced_at = max(
                frozen + source.freeze_max_age, state.xmin_value + source.freeze_min_age
            )
            until_freeze = max(0, forced_at - source.xmax)
    headroom = source.database_frozen + source.freeze_max_age - source.xmax
    xids_behind = source.anchor - state.xmin_value
    age = max(timedelta(0), now - checkpoint.updated_at)

    due: list[str] = []
    warn: list[str] = []
    if identity_mismatch:
        warn.append(identity_mismatch)
    elif relation is None:
        warn.append(
            f"table {schema!r}.{table!r} not found in {history.database!r} (or not visible to "
            "the source user): the next run fails"
        )
    elif full_reason:
        due.append(full_reason)
    if not identity_mismatch:
        warn += _threshold_warnings(
            thresholds,
            source,
            xids_behind=xids_behind,
            age=age,
            until_freeze=None if due else until_freeze,
            headroom=headroom,
        )
    verdict = FULL_REFRESH_DUE if due else WARN if warn else OK
    return CheckpointHealth(
        source_schema=schema,
        source_table=table,
        checkpoint_table=checkpoint.source_table,
        checkpoint_key=key,
        xmin_value=state.xmin_value,
        revision=state.revision,
        updated_at=checkpoint.updated_at,
        age=age,
        anchor=source.anchor,
        xids_behind=xids_behind,
        frozen_xid=frozen,
        xids_until_forced_freeze=until_freeze,
        freeze_max_age=source.freeze_max_age,
        freeze_headroom=headroom,
        system_identifier=history.system_identifier,
        timeline=history.timeline,
        table_found=relation is not None,
        identity_mismatch=identity_mismatch,
        history_mismatch=history_mismatch,
        full_refresh_reason=full_reason if relation is not None else "",
        verdict=verdict,
        reasons=(*due, *warn),
    )


def xmin_health(
    source_engine: Engine,
    storage: XMinStateStorage,
    *,
    thresholds: HealthThresholds | None = None,
    all_databases: bool = False,
    now: datetime | None = None,
) -> list[CheckpointHealth]:
    """Every checkpoint of ``storage`` judged against the source, ordered by key.

    Read-only: one short READ ONLY, REPEATABLE READ transaction on ``source_engine``, one read of
    the state store. Checkpoints recorded for another source database are left out unless
    ``all_databases`` (then they are listed with ``identity_mismatch`` and ``"warn"``).
    """
    if not isinstance(source_engine, Engine):
        raise TypeError("source_engine must be a SQLAlchemy Engine")
    if source_engine.dialect.name != "postgresql":
        raise BackendMismatchError(
            f"XMin health needs a PostgreSQL source engine, got "
            f"{source_engine.dialect.name!r} ({safe_url(source_engine.url)})"
        )
    if not isinstance(storage, XMinStateStorage):
        raise TypeError("storage must be an XMinStateStorage")
    limits = thresholds if thresholds is not None else HealthThresholds()
    checkpoints: Sequence[Checkpoint] = storage.list_checkpoints()
    at = utc_now() if now is None else now
    connection = source_engine.connect().execution_options(
        isolation_level="REPEATABLE READ", postgresql_readonly=True
    )
    with connection as conn, conn.begin():
        anchor_row = conn.execute(anchor_statement(conn.dialect.server_version_info or (0,))).one()
        xmax = _as_int(anchor_row.xmax)
        history = read_source_history(conn)
        settings = conn.execute(_SETTINGS).one()
        source = _Source(
            anchor=_as_int(anchor_row.anchor),
            xmax=xmax,
            history=history,
            freeze_max_age=_as_int(settings.freeze_max_age),
            freeze_min_age=min(
                _as_int(settings.freeze_min_age), _as_int(settings.freeze_max_age) // 2
            ),
            database_frozen=epoch_extend(_as_int(settings.datfrozenxid), xmax),
        )
        result = [_judge(c, source, conn, limits, at) for c in checkpoints]
    if not all_databases:
        result = [h for h in result if not h.identity_mismatch]
    return result
