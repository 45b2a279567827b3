"""dpone's own model classes, field for field (``dpone.runtime.state.models`` and
``xmin_storage``), for the tests that hand them to dpone-state as the runtime does."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum


class DponeStatus(Enum):
    """dpone's ``RunStateStatus``: a plain ``Enum``."""

    RUNNING = "running"
    SUCCESS = "success"


@dataclass
class DponeRunState:
    """dpone's ``RunState`` (``runtime/state/models.py``), field for field."""

    dag_id: str
    source_schema: str
    source_table: str
    target_schema: str
    target_table: str
    load_strategy: str
    execution_date: datetime
    state: DponeStatus
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


@dataclass
class DponeXMinState:
    """dpone's ``XMinState`` (``runtime/state/xmin_storage.py``)."""

    xmin_value: int
    timestamp: datetime
    is_initial: bool = False
    wraparound_detected: bool = False
    frozen_xid: int | None = None
    revision: int = 0
