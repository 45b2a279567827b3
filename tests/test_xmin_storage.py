"""XMin checkpoint storage: the same behaviour on every backend."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from dpone_state import (
    InvalidStateError,
    RevisionConflictError,
    StateNotProvisionedError,
    XMinState,
    XMinStateStorage,
)
from dpone_state.models import KEY_NAME_MAX, MAX_BIGINT
from tests.backends import recorded
from tests.conftest import StateDB


def count_rows(db: StateDB, storage: XMinStateStorage) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(storage.table)).scalar_one())


def test_missing_checkpoint_is_none(xmin: XMinStateStorage) -> None:
    assert xmin.load_state("public", "orders") is None


def test_save_then_load_round_trips_every_field(xmin: XMinStateStorage) -> None:
    state = XMinState(MAX_BIGINT, is_initial=True, wraparound_detected=True, frozen_xid=77)
    before = datetime.now(timezone.utc)
    xmin.save_state("public", "orders", state)
    loaded = xmin.load_state("public", "orders")
    assert loaded is not None
    assert (loaded.xmin_value, loaded.is_initial, loaded.wraparound_detected) == (
        MAX_BIGINT,
        True,
        True,
    )
    assert (loaded.frozen_xid, loaded.revision) == (77, 1)
    assert loaded.timestamp.tzinfo is timezone.utc
    # BigQuery and MySQL keep microseconds; allow a little clock skew between test and storage.
    assert before - timedelta(seconds=1) <= loaded.timestamp <= datetime.now(timezone.utc)


def test_loaded_at_is_the_storages_utc_clock_not_the_callers_timestamp(
    xmin: XMinStateStorage,
) -> None:
    """dpone's runtime passes a naive *local* time; it must not be stored as if it were UTC."""
    local_naive = datetime.now() + timedelta(hours=3)  # a UTC+3 host's naive datetime.now()
    before = datetime.now(timezone.utc)
    xmin.save_state("public", "orders", XMinState(10, timestamp=local_naive))
    after = datetime.now(timezone.utc)
    loaded = xmin.load_state("public", "orders")
    assert loaded is not None
    assert before - timedelta(seconds=1) <= loaded.timestamp <= after + timedelta(seconds=1)


def test_save_overwrites_values_and_keeps_first_loaded_at(xmin: XMinStateStorage) -> None:
    xmin.save_state("public", "orders", XMinState(10, is_initial=True))
    first = xmin.load_state("public", "orders")
    assert first is not None
    xmin.save_state(
        "public",
        "orders",
        XMinState(20, timestamp=first.timestamp + timedelta(days=1), frozen_xid=5),
    )
    loaded = xmin.load_state("public", "orders")
    assert loaded == XMinState(20, timestamp=first.timestamp, frozen_xid=5, revision=2)


def test_updated_at_moves_on_save(db: StateDB, xmin: XMinStateStorage) -> None:
    xmin.save_state("s", "t", XMinState(1))
    with db.engine.connect() as conn:
        before = conn.execute(sa.select(xmin.table.c["__dpone__updated_at"])).scalar_one()
    xmin.save_state("s", "t", XMinState(2))
    with db.engine.connect() as conn:
        after = conn.execute(sa.select(xmin.table.c["__dpone__updated_at"])).scalar_one()
    assert after > before and after.tzinfo is timezone.utc


def test_keys_are_exact(db: StateDB, xmin: XMinStateStorage) -> None:
    names = ["orders", "Orders", "ORDERS", "orders.x", "ordérs", 'or"ders', "or'ders", "a b"]
    for value, name in enumerate(names):
        xmin.save_state("public", name, XMinState(value))
    for value, name in enumerate(names):
        loaded = xmin.load_state("public", name)
        assert loaded is not None and loaded.xmin_value == value, name
    assert count_rows(db, xmin) == len(names)


def test_delete_state(xmin: XMinStateStorage) -> None:
    xmin.save_state("public", "orders", XMinState(1))
    xmin.save_state("public", "items", XMinState(2))
    assert xmin.delete_state("public", "orders") is True
    assert xmin.delete_state("public", "orders") is False
    assert xmin.load_state("public", "orders") is None
    assert xmin.load_state("public", "items") is not None


def test_compare_and_set(xmin: XMinStateStorage) -> None:
    xmin.save_state("public", "orders", XMinState(1), expected_revision=0)
    with pytest.raises(RevisionConflictError) as info:
        xmin.save_state("public", "orders", XMinState(2), expected_revision=0)
    assert info.value.expected_revision == 0
    xmin.save_state("public", "orders", XMinState(2), expected_revision=1)
    with pytest.raises(RevisionConflictError):
        xmin.save_state("public", "orders", XMinState(3), expected_revision=1)
    loaded = xmin.load_state("public", "orders")
    assert loaded is not None and (loaded.xmin_value, loaded.revision) == (2, 2)


def test_compare_and_set_on_missing_row_does_not_insert(xmin: XMinStateStorage) -> None:
    with pytest.raises(RevisionConflictError):
        xmin.save_state("public", "orders", XMinState(5), expected_revision=3)
    assert xmin.load_state("public", "orders") is None


def test_compare_and_set_accepts_an_unversioned_legacy_row(
    db: StateDB, xmin: XMinStateStorage
) -> None:
    with db.engine.begin() as conn:  # a row as the legacy runtime writes it: revision 0
        conn.execute(
            sa.insert(xmin.table).values(
                source_schema="public",
                source_table="orders",
                xmin_value=7,
                is_initial=False,
                wraparound_detected=False,
            )
        )
    loaded = xmin.load_state("public", "orders")
    assert loaded is not None and loaded.revision == 0
    xmin.save_state("public", "orders", XMinState(8), expected_revision=loaded.revision)
    assert xmin.load_state("public", "orders") == XMinState(
        8, timestamp=loaded.timestamp, revision=1
    )


@pytest.mark.parametrize(
    ("schema", "table"),
    [("", "t"), ("s", ""), ("s", " t"), ("x" * (KEY_NAME_MAX + 1), "t"), ("s", "t\x00"), (1, "t")],
)
def test_bad_keys_are_rejected_and_nothing_written(
    db: StateDB, xmin: XMinStateStorage, schema: object, table: object
) -> None:
    with pytest.raises(InvalidStateError):
        xmin.save_state(schema, table, XMinState(1))  # type: ignore[arg-type]
    with pytest.raises(InvalidStateError):
        xmin.load_state(schema, table)  # type: ignore[arg-type]
    assert count_rows(db, xmin) == 0


def test_bad_arguments(xmin: XMinStateStorage) -> None:
    with pytest.raises(InvalidStateError, match="xmin_value"):
        xmin.save_state("s", "t", 5)  # type: ignore[arg-type]
    with pytest.raises(InvalidStateError, match="expected_revision"):
        xmin.save_state("s", "t", XMinState(1), expected_revision=-1)


def test_custom_table_name_is_used(db: StateDB) -> None:
    storage = db.xmin(table="custom_xmin")
    with pytest.raises(StateNotProvisionedError, match="custom_xmin"):
        storage.load_state("s", "t")
    storage.create_tables()
    storage.save_state("s", "t", XMinState(9))
    assert storage.load_state("s", "t") is not None
    assert db.xmin().load_state("s", "t") is None


def test_save_states_bulk_upserts_in_one_statement_per_batch(
    db: StateDB, xmin: XMinStateStorage
) -> None:
    xmin.save_state("public", "t0", XMinState(1, is_initial=True))
    first = xmin.load_state("public", "t0")
    states = {("public", f"t{i}"): XMinState(100 + i, frozen_xid=i) for i in range(30)}
    with recorded(db.engine) as statements:
        assert xmin.save_states(states) == 30
    assert len(statements) == 1
    for (schema, table), state in states.items():
        loaded = xmin.load_state(schema, table)
        assert loaded is not None
        assert (loaded.xmin_value, loaded.frozen_xid, loaded.is_initial) == (
            state.xmin_value,
            state.frozen_xid,
            False,
        )
    again = xmin.load_state("public", "t0")
    assert first is not None and again is not None
    assert again.revision == 2 and again.timestamp == first.timestamp
    assert count_rows(db, xmin) == 30


def test_save_states_rejects_bad_items_and_writes_nothing(
    db: StateDB, xmin: XMinStateStorage
) -> None:
    with pytest.raises(InvalidStateError):
        xmin.save_states({("public", "ok"): XMinState(1), ("public", ""): XMinState(2)})
    with pytest.raises(InvalidStateError):
        xmin.save_states({("public", "ok"): 5})  # type: ignore[dict-item]
    assert count_rows(db, xmin) == 0


IDENTITY = '{"db":"sales","key":null,"select":"0123abcd","table":["public","orders"],"v":1}'
FINGERPRINT = '{"relation":16390,"sources":"cf1cbb66","system":"7712461754749421142","timeline":2}'


def test_identity_and_fingerprint_round_trip_and_a_legacy_save_clears_them(
    xmin: XMinStateStorage,
) -> None:
    owned = XMinState(5, extraction_identity=IDENTITY, source_fingerprint=FINGERPRINT)
    xmin.save_state("public", "orders", owned)
    loaded = xmin.load_state("public", "orders")
    assert loaded is not None
    assert (loaded.extraction_identity, loaded.source_fingerprint) == (IDENTITY, FINGERPRINT)
    # a caller that saves without them (dpone's runtime) leaves a legacy checkpoint
    xmin.save_state("public", "orders", XMinState(6), expected_revision=1)
    legacy = xmin.load_state("public", "orders")
    assert legacy is not None and legacy.extraction_identity is legacy.source_fingerprint is None
    xmin.save_states({("public", "bulk"): owned})
    bulk = xmin.load_state("public", "bulk")
    assert bulk is not None and bulk.extraction_identity == IDENTITY
    with pytest.raises(InvalidStateError, match="extraction_identity"):
        XMinState(1, extraction_identity="x" * 1001)


def test_create_tables_adds_the_identity_columns_to_an_older_table(db: StateDB) -> None:
    """BigQuery's provisioning path (no migrations run there): an XMin table of the shape
    before revision 0003 gets the two nullable columns, and keeps its rows."""
    storage = db.xmin(table="older_xmin")
    older = sa.Table(
        "older_xmin",
        sa.MetaData(),
        *(
            c.copy()
            for c in storage.table.columns
            if c.name not in ("extraction_identity", "source_fingerprint")
        ),
        schema=storage.schema,
    )
    with db.engine.begin() as conn:
        older.create(conn)
        conn.execute(sa.insert(older).values(source_schema="s", source_table="t", xmin_value=7))
    with pytest.raises(Exception):  # noqa: B017 - the backend's own "no such column"
        storage.load_state("s", "t")
    storage.create_tables()
    storage.create_tables()  # idempotent
    kept = storage.load_state("s", "t")
    assert kept is not None and kept.xmin_value == 7 and kept.extraction_identity is None
    storage.save_state("s", "t", XMinState(8, extraction_identity=IDENTITY), expected_revision=0)
    loaded = storage.load_state("s", "t")
    assert loaded is not None and loaded.extraction_identity == IDENTITY
