"""Models validate on construction and normalise datetimes to aware UTC (no database)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from dpone_state import InvalidStateError, RunState, RunStateStatus, XMinState
from dpone_state.models import (
    ERROR_MESSAGE_MAX,
    KEY_NAME_MAX,
    MAX_BIGINT,
    MAX_DAG_ID,
    NAME_MAX,
    check_key_name,
)
from tests.dpone_models import DponeRunState, DponeStatus, DponeXMinState

NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)


def run(**overrides: object) -> RunState:
    fields: dict[str, object] = dict(
        dag_id="dag",
        source_schema="public",
        source_table="orders",
        target_schema="dwh",
        target_table="orders",
        load_strategy="incremental_merge",
        execution_date=NOW,
        state=RunStateStatus.RUNNING,
        started_at=NOW,
    )
    fields.update(overrides)
    return RunState(**fields)  # type: ignore[arg-type]


def test_xmin_bounds() -> None:
    assert XMinState(0).xmin_value == 0
    assert XMinState(MAX_BIGINT).xmin_value == MAX_BIGINT
    for bad in (-1, MAX_BIGINT + 1, 1.5, "1", True, None):
        with pytest.raises(InvalidStateError) as info:
            XMinState(bad)  # type: ignore[arg-type]
        assert info.value.field == "xmin_value"


def test_xmin_other_fields() -> None:
    with pytest.raises(InvalidStateError, match="frozen_xid"):
        XMinState(1, frozen_xid=-5)
    with pytest.raises(InvalidStateError, match="revision"):
        XMinState(1, revision=-1)
    with pytest.raises(InvalidStateError, match="is_initial"):
        XMinState(1, is_initial=1)  # type: ignore[arg-type]


def test_naive_datetimes_are_utc_and_aware_ones_are_converted() -> None:
    naive = datetime(2026, 1, 2, 3, 4, 5)
    assert XMinState(1, timestamp=naive).timestamp == naive.replace(tzinfo=timezone.utc)
    plus_two = timezone(timedelta(hours=2))
    aware = datetime(2026, 1, 2, 5, 4, 5, tzinfo=plus_two)
    converted = XMinState(1, timestamp=aware).timestamp
    assert converted == datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert converted.tzinfo is timezone.utc


def test_datetimes_out_of_range_are_rejected() -> None:
    with pytest.raises(InvalidStateError, match=r"out of range|outside"):
        XMinState(1, timestamp=datetime.max.replace(tzinfo=timezone(timedelta(hours=-5))))
    with pytest.raises(InvalidStateError, match="outside"):
        run(execution_date=datetime(999, 12, 31))
    with pytest.raises(InvalidStateError, match="expected a datetime"):
        run(started_at="2026-01-01")


def test_run_state_status_is_coerced_and_checked() -> None:
    assert run(state="success").state is RunStateStatus.SUCCESS
    with pytest.raises(InvalidStateError, match="up_for_retry"):
        run(state="done")


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("dag_id", "", "empty"),
        ("dag_id", "x" * (MAX_DAG_ID + 1), "at most"),
        ("source_table", "x" * (NAME_MAX + 1), "at most"),
        ("target_schema", " padded", "whitespace"),
        ("load_strategy", "a\x00b", "NUL"),
        ("source_schema", "\ud800", "surrogate"),
        ("process_name", "", "empty"),
        ("rows_read", -1, "outside"),
        ("rows_deleted", 2**63, "outside"),
        ("duration_min", "3", "number"),
        ("error_message", 5, "string"),
        ("process_name", "x" * 513, "at most"),
    ],
)
def test_run_state_rejects_bad_fields(field: str, value: object, reason: str) -> None:
    with pytest.raises(InvalidStateError, match=reason) as info:
        run(**{field: value})
    assert info.value.field == field


def test_names_keep_case_spaces_quotes_and_unicode() -> None:
    name = 'Ordérs "2026"; DROP TABLE x'
    assert run(source_table=name).source_table == name
    assert check_key_name("source_table", "x" * KEY_NAME_MAX) == "x" * KEY_NAME_MAX
    with pytest.raises(InvalidStateError, match="at most"):
        check_key_name("source_table", "x" * (KEY_NAME_MAX + 1))


def test_name_limits_count_utf16_code_units_like_nvarchar() -> None:
    emoji = "\U0001f600"  # beyond U+FFFF: two UTF-16 code units, as SQL Server's NVARCHAR counts
    assert run(dag_id=emoji * (MAX_DAG_ID // 2)).dag_id == emoji * (MAX_DAG_ID // 2)
    with pytest.raises(InvalidStateError, match="UTF-16 code units") as info:
        run(dag_id=emoji * (MAX_DAG_ID // 2 + 1))
    assert info.value.field == "dag_id"
    assert check_key_name("source_schema", emoji * (KEY_NAME_MAX // 2))
    with pytest.raises(InvalidStateError, match="UTF-16"):
        check_key_name("source_schema", "a" + emoji * (KEY_NAME_MAX // 2))


# --- dpone's runtime uses the models like this ------------------------------------------------


def test_run_state_is_mutable_and_validated_again_on_demand() -> None:
    """dpone's RunStateTracker changes the same object in place, then saves it again."""
    state = run()
    state.state = RunStateStatus.FAILED
    state.ended_at = datetime(2026, 1, 2, 6, 4, 5)  # naive: UTC
    state.duration_min = 3.5
    state.error_message = "boom"
    state.validate()
    assert state.ended_at == datetime(2026, 1, 2, 6, 4, 5, tzinfo=timezone.utc)
    state.state = "up_for_retry"  # type: ignore[assignment]
    state.validate()
    assert state.state is RunStateStatus.UP_FOR_RETRY
    state.rows_read = -1
    with pytest.raises(InvalidStateError, match="rows_read"):
        state.validate()


def test_diagnostic_fields_never_fail_a_save() -> None:
    long = "x" * (ERROR_MESSAGE_MAX + 10)
    cut = run(error_message=long).error_message
    assert cut is not None and len(cut) == ERROR_MESSAGE_MAX and cut.endswith("characters]")
    assert "10 more characters" in cut
    assert run(error_message="a\x00b\ud800c").error_message == "a\ufffdb\ufffdc"
    assert run(duration_min=-0.5).duration_min == 0.0  # naive local clocks across a DST change
    assert run(duration_min=float("nan")).duration_min is None
    assert run(duration_min=2).duration_min == 2.0


def test_process_name_accepts_dpones_default_width() -> None:
    name = f"{'s' * 127}.{'t' * 127}->{'s' * 127}.{'t' * 127}"
    assert len(name) == 512
    assert run(process_name=name).process_name == name


def test_to_dict_has_dpones_18_keys_and_round_trips() -> None:
    state = run(
        ended_at=NOW + timedelta(minutes=2),
        duration_min=2.0,
        error_message="e",
        id=7,
        rows_read=1,
        rows_written=2,
        rows_updated=3,
        rows_deleted=4,
        process_name="p",
    )
    data = state.to_dict()
    assert list(data) == [
        "id", "dag_id", "process_name", "source_schema", "source_table", "target_schema",
        "target_table", "load_strategy", "execution_date", "state", "started_at", "ended_at",
        "duration_min", "error_message", "rows_read", "rows_written", "rows_updated",
        "rows_deleted",
    ]  # fmt: skip
    assert data["execution_date"] == "2026-01-02T03:04:05.678901+00:00"
    assert data["state"] == "running" and data["ended_at"] == "2026-01-02T03:06:05.678901+00:00"
    assert RunState.from_dict(data) == state
    # dpone's to_dict() of naive datetimes (no offset) reads back as UTC
    dpone_dict = {**data, "execution_date": "2026-01-02T03:04:05.678901", "ended_at": None}
    assert RunState.from_dict(dpone_dict).execution_date == NOW
    with pytest.raises(InvalidStateError, match="unknown key"):
        RunState.from_dict({**data, "stat": "running"})
    with pytest.raises(InvalidStateError, match="ISO 8601"):
        RunState.from_dict({**data, "started_at": "yesterday"})
    with pytest.raises(InvalidStateError, match="missing"):
        RunState.from_dict({k: v for k, v in data.items() if k != "dag_id"})


def test_from_object_reads_the_runtimes_own_models() -> None:
    naive = datetime(2026, 1, 2, 3, 4, 5)
    theirs = DponeRunState(
        "dag", "public", "orders", "dwh", "orders", "incremental_merge", naive,
        DponeStatus.SUCCESS, naive, rows_read=3,
    )  # fmt: skip
    ours = RunState.from_object(theirs)
    assert ours.state is RunStateStatus.SUCCESS and ours.rows_read == 3
    assert ours.execution_date == naive.replace(tzinfo=timezone.utc)
    assert theirs.execution_date is naive  # the caller's object is not changed
    theirs.rows_read = -3
    with pytest.raises(InvalidStateError, match="rows_read"):
        RunState.from_object(theirs)
    with pytest.raises(InvalidStateError, match="dag_id"):
        RunState.from_object(object())
    checkpoint = XMinState.from_object(DponeXMinState(42, naive, frozen_xid=7))
    assert (checkpoint.xmin_value, checkpoint.frozen_xid, checkpoint.revision) == (42, 7, 0)
    with pytest.raises(InvalidStateError, match="xmin_value"):
        XMinState.from_object(DponeXMinState(-1, naive))
    same = XMinState(5)
    assert XMinState.from_object(same) is same
