"""Exactly-once loads: the target load and its XMin checkpoint commit in one transaction.

``load_exactly_once(extraction, load, target)`` is the runtime's loop as one call. On one
connection of ``target`` (the database that also holds the state tables) it begins a
transaction, hands the connection and the extraction's batches to ``load``, writes the
checkpoint there with compare-and-set and this load's receipt (its ``load_id``), and commits.
Both commit or neither does, so the checkpoint never moves past an uncommitted load and a
committed load is never read again. When the commit's reply is lost the outcome is unknown:
the stored receipt is probed (``XMinStateStorage.probe``) instead of loading again.

What it returns or raises is exactly what is known:

- ``LoadResult`` (``outcome == "loaded once"``): committed, heard or confirmed by the probe.
- ``LoadNotCommittedError``: nothing committed; the target and the checkpoint are unchanged.
- ``LoadSupersededError``: the commit was not heard and the checkpoint has moved on under
  another receipt; do not replay these rows, extract again.
- ``StateOutcomeUnknownError``: the commit was not heard and the probe could not read the row
  either; probe again (``load_id`` and ``expected_revision`` are on the error) before rerunning.
- ``XMinError``: ``load`` committed or rolled back the connection itself; the checkpoint is not
  saved (at-least-once for that window).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Final

from sqlalchemy.engine import Connection, Engine, RowMapping

from dpone_state.engine import safe_url
from dpone_state.errors import (
    BackendMismatchError,
    LoadNotCommittedError,
    LoadSupersededError,
    StateOutcomeUnknownError,
    XMinError,
    first_line,
)
from dpone_state.models import XMinState
from dpone_state.storage import ProbeResult
from dpone_state.xmin import XMinExtraction

__all__ = ["LOADED_ONCE", "LoadResult", "Loader", "load_exactly_once"]

log = logging.getLogger("dpone_state.exactly_once")

#: The one successful outcome.
LOADED_ONCE: Final = "loaded once"

#: ``load(connection, batches)``: write the batches to the target on ``connection``, inside its
#: open transaction, without committing or rolling it back. Its return value is ignored.
Loader = Callable[[Connection, Iterator[Sequence[RowMapping]]], object]


@dataclass(frozen=True)
class LoadResult:
    """A load that committed once, with its checkpoint."""

    #: Always ``"loaded once"``.
    outcome: str
    #: The receipt stored with the checkpoint.
    load_id: str
    #: The checkpoint as committed (its revision is the one the receipt carries).
    state: XMinState
    #: Rows the extraction handed to ``load``.
    rows: int
    #: ``True`` when the commit's reply was lost and the probe found the receipt.
    probed: bool = False


class _LoadEndedTransactionError(XMinError):
    """``load`` ended the transaction itself: what it wrote may be committed, the checkpoint
    is not saved."""


class _OutcomeUnknown(StateOutcomeUnknownError):
    """``StateOutcomeUnknownError`` carrying what a later ``probe()`` needs."""

    def __init__(self, message: str, load_id: str, expected_revision: int) -> None:
        super().__init__(message)
        self.load_id = load_id
        self.expected_revision = expected_revision


def load_exactly_once(
    extraction: XMinExtraction,
    load: Loader,
    target: Engine,
    *,
    load_id: str | None = None,
) -> LoadResult:
    """Load the extraction's rows into ``target`` and commit its checkpoint with them, once.

    ``target`` must be an engine of the state storage's own database (the same server and
    database; ``DatabaseMismatchError`` otherwise) on a backend whose transactions span
    statements (not BigQuery). ``load_id`` defaults to a new UUID. The extraction is used up
    whatever happens. See the module docstring for what each outcome means.
    """
    storage = extraction.storage
    if not isinstance(target, Engine):
        raise TypeError("target must be a SQLAlchemy Engine")
    storage.check_same_database(target)
    if not storage.backend_row.transactional_loads:
        raise BackendMismatchError(
            f"{storage.backend_row.state_type}: its driver commits each statement alone, so a "
            "load and its checkpoint cannot commit together; load, then extraction.commit() "
            "(at-least-once)"
        )
    receipt = load_id if load_id is not None else uuid.uuid4().hex
    expected = extraction.expected_revision
    where = f"{extraction.source_schema!r}.{extraction.source_table!r}"
    try:
        connection = target.connect()
    except Exception as error:
        extraction.close()
        raise LoadNotCommittedError(
            f"load {receipt} of {where}: cannot connect to {safe_url(target.url)} "
            f"({first_line(error)}); nothing was loaded",
            receipt,
        ) from error
    try:
        state = _load_and_write(extraction, load, connection, receipt, where)
        try:
            connection.commit()
        except Exception as error:
            # The COMMIT may or may not have reached the server: never replay, ask the row.
            connection.invalidate()
            return _resolve(
                extraction,
                state=state,
                receipt=receipt,
                expected=expected,
                where=where,
                error=error,
            )
    finally:
        extraction.close()
        connection.close()
    log.info("load %s of %s committed once (%d rows)", receipt, where, extraction.rows_read)
    return LoadResult(LOADED_ONCE, receipt, state, extraction.rows_read)


def _load_and_write(
    extraction: XMinExtraction, load: Loader, connection: Connection, receipt: str, where: str
) -> XMinState:
    """Begin, load, write the checkpoint with its receipt; roll back on any failure."""
    try:
        connection.begin()
        load(connection, extraction.batches())
        if not connection.in_transaction():
            raise _LoadEndedTransactionError(
                f"load {receipt} of {where}: the load committed or rolled back the connection "
                "itself, so its rows cannot commit with the checkpoint (which is not saved): "
                "the window is read again next run (at-least-once); never end the transaction "
                "in load"
            )
        return extraction.commit(connection=connection, load_id=receipt)
    except _LoadEndedTransactionError:
        raise
    except BaseException as error:
        with suppress(Exception):  # a lost connection rolls back at the server anyway
            connection.rollback()
        if not isinstance(error, Exception):
            raise
        raise LoadNotCommittedError(
            f"load {receipt} of {where} failed before its commit ({type(error).__name__}: "
            f"{first_line(error)}); the target and the checkpoint are unchanged",
            receipt,
        ) from error


def _resolve(
    extraction: XMinExtraction,
    *,
    state: XMinState,
    receipt: str,
    expected: int,
    where: str,
    error: Exception,
) -> LoadResult:
    """The commit's reply was lost: what the stored receipt says happened."""
    log.warning("load %s of %s: commit outcome unknown (%s); probing", receipt, where, error)
    try:
        found = extraction.storage.probe(
            extraction.source_schema,
            extraction.checkpoint_table,  # the checkpoint's key (a shared checkpoint's own)
            receipt,
            expected_revision=expected,
        )
    except Exception as probe_error:  # typed or not, the row could not be read
        raise _OutcomeUnknown(
            f"load {receipt} of {where}: the commit's reply was lost and the probe failed too "
            f"({first_line(probe_error)}); probe again before running it again",
            receipt,
            expected,
        ) from error
    if found is ProbeResult.COMMITTED:
        log.info("load %s of %s: the probe found its receipt, committed once", receipt, where)
        return LoadResult(LOADED_ONCE, receipt, state, extraction.rows_read, probed=True)
    if found is ProbeResult.NOT_COMMITTED:
        raise LoadNotCommittedError(
            f"load {receipt} of {where}: the commit failed ({first_line(error)}) and the "
            "checkpoint still stands where the load found it: nothing was committed",
            receipt,
        ) from error
    raise LoadSupersededError(
        f"load {receipt} of {where}: the commit's reply was lost and the checkpoint has moved "
        f"past revision {expected} under another receipt; extract again, do not replay",
        receipt,
    ) from error
