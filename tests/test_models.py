"""Models validate on construction and normalise datetimes to aware UTC (no database)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from dpone_state import InvalidStateError, RunState, RunStateStatus, XMinState
from dpone_state.models import KEY_NAME_MAX, MAX_BIGINT, MAX_DAG_ID, NAME_MAX, check_key_name

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
        ("duration_min", float("nan"), "finite"),
        ("duration_min", -1.0, "finite"),
        ("error_message", "boom\x00", "NUL"),
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
