"""The XMin window: which 32-bit row ``xmin`` values a run extracts, from two 64-bit IDs.

Pure arithmetic plus one SQLAlchemy Core predicate; no connection. The checkpoint and the
anchor are epoch-extended transaction IDs (``epoch << 32 | xid``); a row only shows the low
32 bits, so the window is a numeric range on ``xmin::text::bigint`` that may wrap once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

__all__ = [
    "XID_MODULUS",
    "WindowKind",
    "XMinWindow",
    "compute_window",
    "epoch_extend",
    "xmin_number",
]

#: 2**32: a row's ``xmin`` is the full transaction ID modulo this.
XID_MODULUS = 1 << 32
_LOW_MASK = XID_MODULUS - 1


class WindowKind(str, Enum):
    """How the window is read: one numeric range, two ranges around the wrap, or everything."""

    SAME_EPOCH = "same_epoch"
    WRAPAROUND = "wraparound"
    FULL = "full"

    def __str__(self) -> str:
        return self.value


def epoch_extend(raw_xid: int, reference: int) -> int:
    """The 64-bit ID of a 32-bit ``raw_xid`` that is at most 2**32-1 IDs before ``reference``.

    Used for ``relfrozenxid`` against the snapshot's ``xmax`` (the next ID): PostgreSQL keeps
    every unfrozen ID, and ``relfrozenxid``, less than 2**31 behind it, so this is exact.
    """
    if not 0 <= raw_xid < XID_MODULUS or reference < 0:
        raise ValueError(f"raw xid {raw_xid} / reference {reference} out of range")
    return reference - (((reference & _LOW_MASK) - raw_xid) & _LOW_MASK)


def xmin_number(xmin: ColumnElement[Any] | None = None) -> ColumnElement[int]:
    """``CAST(CAST(xmin AS TEXT) AS BIGINT)``: the row's xmin compared as a number, never text.

    ``xmin`` is the system column of a Core table (default: an unqualified ``xmin``).
    """
    column = sa.column("xmin") if xmin is None else xmin
    return sa.cast(sa.cast(column, sa.Text), sa.BigInteger)


@dataclass(frozen=True)
class XMinWindow:
    """The rows one run reads: transactions in ``[previous, anchor)``, or all rows (``FULL``).

    ``reason`` says why a window is ``FULL``; ``wraparound_detected`` is whether the anchor is in
    a later epoch than the checkpoint (the window crossed 2**32 at least once).
    """

    previous: int | None
    anchor: int
    kind: WindowKind
    wraparound_detected: bool
    reason: str = ""

    @property
    def is_full(self) -> bool:
        return self.kind is WindowKind.FULL

    def predicate(self, xmin: ColumnElement[int] | None = None) -> ColumnElement[bool] | None:
        """The Core predicate on the numeric ``xmin`` (bound parameters); ``None`` for FULL."""
        if self.kind is WindowKind.FULL or self.previous is None:
            return None
        value = xmin_number() if xmin is None else xmin
        # unique=True: a caller's ``where`` with a parameter of the same name must never be
        # merged into the window's bounds (it would replace them).
        low = sa.bindparam("xmin_low", self.previous & _LOW_MASK, sa.BigInteger, unique=True)
        high = sa.bindparam("xmin_high", self.anchor & _LOW_MASK, sa.BigInteger, unique=True)
        if self.kind is WindowKind.SAME_EPOCH:
            return sa.and_(value >= low, value < high)
        return sa.or_(value >= low, value < high)


def compute_window(previous: int | None, anchor: int, frozen_xid: int | None) -> XMinWindow:
    """The window from the stored checkpoint, this run's anchor and the table's relfrozenxid.

    All three are 64-bit. Full refresh when there is no checkpoint, the checkpoint is ahead of
    the anchor (another cluster, a restore), the anchor is two or more epochs later (or one
    epoch and 2**32 IDs or more later: 32 bits cannot tell those rows apart), or
    ``relfrozenxid`` has passed the checkpoint (rows of the window may have been frozen).
    """
    if anchor < 0 or (previous is not None and previous < 0):
        raise ValueError("transaction IDs are never negative")
    if previous is None:
        return XMinWindow(None, anchor, WindowKind.FULL, False, "no checkpoint")
    epochs = (anchor >> 32) - (previous >> 32)
    crossed = epochs > 0
    if previous > anchor:
        reason = (
            f"checkpoint {previous} is ahead of the snapshot xmin {anchor} "
            "(restored or different cluster)"
        )
    elif anchor - previous >= XID_MODULUS or epochs >= 2:
        reason = f"{epochs} wraparounds since checkpoint {previous}"
    elif frozen_xid is not None and frozen_xid > previous:
        reason = f"relfrozenxid {frozen_xid} has passed checkpoint {previous}"
    else:
        kind = WindowKind.WRAPAROUND if crossed else WindowKind.SAME_EPOCH
        return XMinWindow(previous, anchor, kind, crossed)
    return XMinWindow(previous, anchor, WindowKind.FULL, crossed, reason)
