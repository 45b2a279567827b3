"""The values the runtime stores: XMin checkpoints and run-state rows, validated on construction."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any, TypeVar

from dpone_state.errors import InvalidIdentifierError, InvalidStateError

__all__ = [
    "ERROR_MESSAGE_MAX",
    "IDENTIFIER_MAX",
    "KEY_NAME_MAX",
    "LOAD_ID_MAX",
    "MAX_BIGINT",
    "MAX_DAG_ID",
    "MAX_TIMESTAMP",
    "MIN_TIMESTAMP",
    "NAME_MAX",
    "PROCESS_NAME_MAX",
    "RUN_STATE_KEYS",
    "XMIN_TAG_MAX",
    "Checkpoint",
    "RunState",
    "RunStateStatus",
    "XMinState",
    "check_identifier",
    "check_key_name",
    "check_name",
    "prune_cutoff",
    "to_utc",
    "utc_now",
]

#: Largest value of a signed 64-bit column (xmin checkpoints, counts, revisions).
MAX_BIGINT = 2**63 - 1
#: Longest source schema / table name in a checkpoint key (fits every backend's key limits).
KEY_NAME_MAX = 128
#: Longest source/target name in a run row (the legacy ``nvarchar(256)``).
NAME_MAX = 256
#: Longest ``dag_id`` (a run key part; fits SQL Server's 900-byte clustered key with the date).
MAX_DAG_ID = 400
#: Longest ``process_name``: dpone's default ``schema.table->schema.table`` reaches ~516
#: characters; its newer SQL Server table holds 512.
PROCESS_NAME_MAX = 512
LOAD_STRATEGY_MAX = 64
#: Longest load id a checkpoint's receipt holds.
LOAD_ID_MAX = 128
#: Longest ``extraction_identity`` / ``source_fingerprint`` of a checkpoint (compact JSON).
XMIN_TAG_MAX = 1000
#: Longest error message kept (characters); MySQL ``MEDIUMTEXT`` holds 16 MiB of utf8mb4.
#: A longer one is cut, with ``TRUNCATION_MARKER``, rather than failing the save.
ERROR_MESSAGE_MAX = 1_000_000
TRUNCATION_MARKER = "… [truncated by dpone-state: {dropped} more characters]"
#: Timestamps every backend stores (MySQL ``DATETIME`` starts at year 1000).
MIN_TIMESTAMP = datetime(1000, 1, 1, tzinfo=timezone.utc)
MAX_TIMESTAMP = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)


_T = TypeVar("_T")

log = logging.getLogger("dpone_state")


class RunStateStatus(str, Enum):
    """State of one ETL run, stored as its lower-case value."""

    SUCCESS = "success"
    FAILED = "failed"
    UP_FOR_RETRY = "up_for_retry"
    SKIPPED = "skipped"
    RUNNING = "running"

    def __str__(self) -> str:
        return self.value


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def to_utc(field_name: str, value: object) -> datetime:
    """Naive datetimes are UTC, aware ones are converted; the result is aware UTC and in range."""
    if value.__class__ is datetime and value.tzinfo is timezone.utc:
        result = value  # aware UTC already (``utc_now()``, rows read back): nothing to convert
    elif not isinstance(value, datetime):
        raise InvalidStateError(field_name, f"expected a datetime, got {type(value).__name__}")
    else:
        try:
            aware = value.replace(tzinfo=timezone.utc) if value.utcoffset() is None else value
            result = aware.astimezone(timezone.utc)
        except OverflowError:
            raise InvalidStateError(
                field_name, f"{value.isoformat()} is out of range once converted to UTC"
            ) from None
    if not MIN_TIMESTAMP <= result <= MAX_TIMESTAMP:
        raise InvalidStateError(
            field_name,
            f"{result.isoformat()} is outside the range every backend stores "
            f"({MIN_TIMESTAMP.date()} .. {MAX_TIMESTAMP.date()})",
        )
    return result


def _check_text(field_name: str, value: object, max_len: int) -> str:
    if not isinstance(value, str):
        raise InvalidStateError(field_name, f"expected a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise InvalidStateError(field_name, f"is {len(value)} characters long; at most {max_len}")
    if "\x00" in value:
        raise InvalidStateError(field_name, "contains a NUL character, which no backend stores")
    if value.isascii():  # one UTF-16 unit per character, no surrogate: nothing more to count
        return value
    # SQL Server's NVARCHAR(n) holds n UTF-16 code units: a character outside the BMP (emoji)
    # takes two, so the limit is counted that way on every backend. The one encoding also
    # rejects lone surrogates, which no backend can store.
    try:
        units = len(value.encode("utf-16-le")) // 2
    except UnicodeEncodeError:
        raise InvalidStateError(field_name, "is not valid Unicode (lone surrogate)") from None
    if units > max_len:
        raise InvalidStateError(
            field_name,
            f"is {units} UTF-16 code units long (characters beyond U+FFFF count twice, as in "
            f"SQL Server's NVARCHAR); at most {max_len}",
        )
    return value


def check_name(field_name: str, value: object, max_len: int = NAME_MAX) -> str:
    """A name: a non-empty string without NUL or edge whitespace, within the column limit.

    Edge whitespace is refused because SQL Server and MySQL compare strings ignoring trailing
    spaces, so such names would not be distinct keys on every backend.
    """
    text = _check_text(field_name, value, max_len)
    if not text:
        raise InvalidStateError(field_name, "must not be empty")
    if text != text.strip():
        raise InvalidStateError(field_name, "must not start or end with whitespace")
    return text


#: Longest schema or table name accepted (SQL Server's and BigQuery's limits are larger).
IDENTIFIER_MAX = 128


def check_identifier(field: str, value: object) -> str:
    """``value`` if it can be used as a schema or table name, else ``InvalidIdentifierError``.

    The one check of configured names: storages, the manifest and the migrations use it.
    """
    if not isinstance(value, str) or not value or value != value.strip():
        raise InvalidIdentifierError(
            field, f"{value!r} is not a usable name: use a non-empty string without edge spaces"
        )
    if "\x00" in value or len(value) > IDENTIFIER_MAX:
        raise InvalidIdentifierError(
            field, f"must be at most {IDENTIFIER_MAX} characters and contain no NUL"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidIdentifierError(field, "is not valid Unicode (lone surrogate)") from None
    return value


def check_key_name(field_name: str, value: object) -> str:
    """A checkpoint key part (source schema or table name)."""
    return check_name(field_name, value, KEY_NAME_MAX)


def _check_int(field_name: str, value: object, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidStateError(field_name, f"expected an integer, got {type(value).__name__}")
    if not 0 <= value <= MAX_BIGINT:
        raise InvalidStateError(field_name, f"{value} is outside 0 .. 2**63-1")
    return int(value)


def _from_storage(cls: type[_T], fields: dict[str, Any]) -> _T:
    """An instance from values the database returned, skipping write-side validation.

    Rows were validated when written (or come from the legacy runtime) and the column types
    already return aware UTC datetimes; re-validating every row would dominate read latency.
    """
    instance = object.__new__(cls)
    instance.__dict__.update(fields)
    return instance


def _attribute(obj: object, name: str, required: bool, what: str) -> Any:
    """``obj.name`` (or ``obj[name]`` for a mapping); a missing required field is typed."""
    if isinstance(obj, Mapping):
        if name in obj:
            return obj[name]
    elif hasattr(obj, name):
        return getattr(obj, name)
    if required:
        raise InvalidStateError(
            name, f"missing: {type(obj).__name__} is not a {what} (it has no {name!r})"
        )
    return None


def _enum_value(value: object) -> object:
    """An enum member of any class (dpone's own ``RunStateStatus``) as its ``.value``."""
    return value.value if isinstance(value, Enum) else value


@dataclass(frozen=True)
class XMinState:
    """A Postgres XMin checkpoint: the 64-bit, epoch-extended transaction ID to resume from.

    ``timestamp`` is when the checkpoint was first stored (``__dpone__loaded_at``, set by the
    storage's UTC clock; a value given here is not stored, as in dpone); ``revision`` counts
    saves and is what compare-and-set (``expected_revision``) checks.
    """

    xmin_value: int
    timestamp: datetime = field(default_factory=utc_now)
    is_initial: bool = False
    wraparound_detected: bool = False
    frozen_xid: int | None = None
    revision: int = 0
    #: Which extraction owns the checkpoint (source database, table, columns, predicate,
    #: ``checkpoint_key``); ``None``: not recorded (a legacy checkpoint, adopted on next save).
    extraction_identity: str | None = None
    #: What the source was when the checkpoint was taken (system identifier, timeline, the
    #: table's oid and its partitions / inheritance children); a change forces a full refresh.
    source_fingerprint: str | None = None

    def __post_init__(self) -> None:
        _check_int("xmin_value", self.xmin_value)
        if self.extraction_identity is not None:
            _check_text("extraction_identity", self.extraction_identity, XMIN_TAG_MAX)
        if self.source_fingerprint is not None:
            _check_text("source_fingerprint", self.source_fingerprint, XMIN_TAG_MAX)
        if self.frozen_xid is not None:
            _check_int("frozen_xid", self.frozen_xid)
        _check_int("revision", self.revision)
        for name in ("is_initial", "wraparound_detected"):
            if getattr(self, name).__class__ is not bool:
                raise InvalidStateError(name, "expected a bool")
        timestamp = to_utc("timestamp", self.timestamp)
        if timestamp is not self.timestamp:
            object.__setattr__(self, "timestamp", timestamp)

    @classmethod
    def from_object(cls, obj: object) -> XMinState:
        """A validated checkpoint from any object with ``XMinState``'s fields (dpone's own
        ``XMinState``, a mapping, …): read by attribute, validated and converted."""
        if type(obj) is cls:
            return obj  # frozen and validated on construction
        values = {
            f.name: _attribute(obj, f.name, f.name == "xmin_value", "checkpoint")
            for f in fields(cls)
        }
        values = {name: value for name, value in values.items() if value is not None}
        return cls(**values)

    @classmethod
    def from_storage(cls, **fields: Any) -> XMinState:
        """A checkpoint as read from the database (no re-validation)."""
        return _from_storage(
            cls,
            {
                "frozen_xid": None,
                "revision": 0,
                "extraction_identity": None,
                "source_fingerprint": None,
                **fields,
            },
        )


#: The keys of ``RunState.to_dict()`` (dpone's 18, in dpone's order).
RUN_STATE_KEYS: tuple[str, ...] = (
    "id", "dag_id", "process_name", "source_schema", "source_table", "target_schema",
    "target_table", "load_strategy", "execution_date", "state", "started_at", "ended_at",
    "duration_min", "error_message", "rows_read", "rows_written", "rows_updated", "rows_deleted",
)  # fmt: skip
_RUN_REQUIRED = frozenset(
    {
        "dag_id", "source_schema", "source_table", "target_schema", "target_table",
        "load_strategy", "execution_date", "state", "started_at",
    }
)  # fmt: skip
_RUN_DATETIMES = ("execution_date", "started_at", "ended_at")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _diagnostic_text(value: object) -> str:
    """An error message as it can be stored: NUL and lone surrogates replaced, cut to fit.

    A diagnostic field must never make the save that records a failure fail itself.
    """
    if not isinstance(value, str):
        raise InvalidStateError("error_message", f"expected a string, got {type(value).__name__}")
    text = _LONE_SURROGATE.sub("\ufffd", value.replace("\x00", "\ufffd"))
    if len(text) > ERROR_MESSAGE_MAX:
        marker = TRUNCATION_MARKER.format(dropped=len(text) - ERROR_MESSAGE_MAX)
        text = text[: ERROR_MESSAGE_MAX - len(marker)] + marker
        log.warning("error_message cut to %d characters to fit every backend", ERROR_MESSAGE_MAX)
    return text


def _duration(value: object) -> float | None:
    """Minutes >= 0: a negative one (naive local clocks across a DST change) is stored as 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidStateError("duration_min", "expected a number of minutes")
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float (2**1024): not a finite number either
        number = math.inf
    if not math.isfinite(number):
        log.warning("duration_min %r is not a finite number: stored as NULL", value)
        return None
    if number < 0:
        log.warning(
            "duration_min %r is negative (naive local clocks across a DST change?): stored as 0",
            value,
        )
        return 0.0
    return number


@dataclass
class RunState:
    """One ETL run of a DAG, keyed by ``(dag_id, execution_date)``. Datetimes are aware UTC.

    Mutable, as dpone's runtime uses it (it changes ``state``, ``ended_at``, … in place and
    saves again): validated on construction and again by every save.
    """

    dag_id: str
    source_schema: str
    source_table: str
    target_schema: str
    target_table: str
    load_strategy: str
    execution_date: datetime
    state: RunStateStatus
    started_at: datetime
    ended_at: datetime | None = None
    duration_min: float | None = None
    error_message: str | None = None
    id: int | None = None
    rows_read: int | None = None
    rows_written: int | None = None
    rows_updated: int | None = None
    rows_deleted: int | None = None
    process_name: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field and normalise it in place (aware UTC datetimes, the status enum,
        a storable error message and duration); ``InvalidStateError`` names a bad field."""
        check_name("dag_id", self.dag_id, MAX_DAG_ID)
        for name in ("source_schema", "source_table", "target_schema", "target_table"):
            check_name(name, getattr(self, name))
        check_name("load_strategy", self.load_strategy, LOAD_STRATEGY_MAX)
        if self.process_name is not None:
            check_name("process_name", self.process_name, PROCESS_NAME_MAX)
        if self.state.__class__ is not RunStateStatus:  # a member already needs no lookup
            raw_state = _enum_value(self.state)
            try:
                self.state = RunStateStatus(raw_state)
            except ValueError:
                valid = ", ".join(s.value for s in RunStateStatus)
                raise InvalidStateError("state", f"{raw_state!r} is not one of: {valid}") from None
        self.execution_date = to_utc("execution_date", self.execution_date)
        self.started_at = to_utc("started_at", self.started_at)
        if self.ended_at is not None:
            self.ended_at = to_utc("ended_at", self.ended_at)
        self.duration_min = _duration(self.duration_min)
        if self.error_message is not None:
            self.error_message = _diagnostic_text(self.error_message)
        for name in ("id", "rows_read", "rows_written", "rows_updated", "rows_deleted"):
            _check_int(name, getattr(self, name), optional=True)

    @classmethod
    def from_object(cls, obj: object) -> RunState:
        """A validated copy of any object with ``RunState``'s fields: this class (mutated in
        place since it was built), dpone's own ``RunState`` (its status enum read by
        ``.value``), or a mapping. The object itself is not changed."""
        if type(obj) is cls:  # a copy validated like a new one, without the generic reads
            copy = object.__new__(cls)
            copy.__dict__.update(obj.__dict__)
            copy.validate()
            return copy
        values = {
            f.name: _attribute(obj, f.name, f.name in _RUN_REQUIRED, "run state")
            for f in fields(cls)
        }
        values["state"] = _enum_value(values["state"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """dpone's 18 keys; datetimes as ISO 8601 strings with their UTC offset."""
        result: dict[str, Any] = {name: getattr(self, name) for name in RUN_STATE_KEYS}
        result["state"] = RunStateStatus(_enum_value(self.state)).value
        for name in _RUN_DATETIMES:
            value = result[name]
            result[name] = value.isoformat() if isinstance(value, datetime) else value
        return result

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunState:
        """The run ``to_dict()`` (or dpone's ``RunState.to_dict()``) described.

        ISO strings (with or without an offset; naive is UTC) or datetimes; a missing optional
        key is ``None``; an unknown key is refused (a typo must not vanish silently).
        """
        if not isinstance(data, Mapping):
            raise InvalidStateError("data", f"expected a mapping, got {type(data).__name__}")
        unknown = sorted(str(key) for key in data if key not in RUN_STATE_KEYS)
        if unknown:
            raise InvalidStateError(
                unknown[0], f"unknown key; a run has: {', '.join(RUN_STATE_KEYS)}"
            )
        values: dict[str, Any] = {name: data.get(name) for name in RUN_STATE_KEYS}
        for name in _RUN_DATETIMES:
            value = values[name]
            if isinstance(value, str):
                try:
                    values[name] = datetime.fromisoformat(value)
                except ValueError:
                    raise InvalidStateError(
                        name, f"{value!r} is not an ISO 8601 datetime"
                    ) from None
        for name in _RUN_REQUIRED:
            if values[name] is None:
                raise InvalidStateError(name, "missing")
        return cls(**values)

    @classmethod
    def from_storage(cls, **fields: Any) -> RunState:
        """A run as read from the database (no re-validation; ``state`` must be known)."""
        try:
            fields["state"] = RunStateStatus(fields["state"])
        except ValueError:
            raise InvalidStateError(
                "state", f"the database holds an unknown run state {fields['state']!r}"
            ) from None
        return _from_storage(cls, {**_RUN_DEFAULTS, **fields})


#: Each status by its stored value: one dict lookup per row instead of an ``Enum`` call.
_STATUS_BY_VALUE: dict[str, RunStateStatus] = {status.value: status for status in RunStateStatus}


def runs_from_rows(fields: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[RunState]:
    """Runs from database rows whose columns are ``fields`` in order (no re-validation, as
    ``RunState.from_storage``); an unknown ``state`` value is an ``InvalidStateError``."""
    missing = [name for name in _RUN_DEFAULTS if name not in fields]
    defaults = {name: None for name in missing}
    state_index = list(fields).index("state")
    runs = []
    new = object.__new__
    for row in rows:
        status = _STATUS_BY_VALUE.get(row[state_index])
        if status is None:
            raise InvalidStateError(
                "state", f"the database holds an unknown run state {row[state_index]!r}"
            )
        run = new(RunState)
        values = run.__dict__
        values.update(zip(fields, row, strict=True))
        values["state"] = status
        if defaults:
            values.update(defaults)
        runs.append(run)
    return runs


_RUN_DEFAULTS: dict[str, Any] = {
    name: None
    for name in (
        "ended_at", "duration_min", "error_message", "id", "rows_read", "rows_written",
        "rows_updated", "rows_deleted", "process_name",
    )
}  # fmt: skip


@dataclass(frozen=True)
class Checkpoint:
    """One stored checkpoint with its key and last update time (``list_checkpoints``)."""

    source_schema: str
    source_table: str
    state: XMinState
    updated_at: datetime


def prune_cutoff(days_to_keep: int, now: datetime | None = None) -> datetime:
    """The ``execution_date`` before which ``delete_old_states(days_to_keep)`` deletes runs."""
    if isinstance(days_to_keep, bool) or not isinstance(days_to_keep, int) or days_to_keep < 0:
        raise InvalidStateError("days_to_keep", "must be an integer >= 0")
    try:
        return (now or utc_now()) - timedelta(days=days_to_keep)
    except OverflowError:
        raise InvalidStateError("days_to_keep", f"{days_to_keep} days is too far back") from None
