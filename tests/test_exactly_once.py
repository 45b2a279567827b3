"""Checkpoint writes that join the caller's transaction, the receipt and its probe, on every
backend of the suite (BigQuery: the receipt and the probe; its driver has no transactions)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from dpone_state import (
    DatabaseMismatchError,
    InvalidStateError,
    ProbeResult,
    RevisionConflictError,
    XMinState,
    XMinStateStorage,
    same_database,
)
from dpone_state.engine import create_state_engine
from tests.conftest import StateDB

S, T = "src", "orders"


def _needs_transactions(xmin: XMinStateStorage) -> None:
    if not xmin.backend_row.transactional_loads:
        pytest.skip(f"{xmin.backend_row.state_type}: each statement commits alone")


def test_a_save_on_the_callers_connection_commits_and_rolls_back_with_its_transaction(
    xmin: XMinStateStorage,
) -> None:
    _needs_transactions(xmin)
    with xmin.engine.connect() as conn:
        conn.begin()
        xmin.save_state(S, T, XMinState(10), expected_revision=0, connection=conn, load_id="a")
        conn.rollback()
    assert xmin.load_state(S, T) is None
    assert xmin.probe(S, T, "a", expected_revision=0) is ProbeResult.NOT_COMMITTED

    with xmin.engine.connect() as conn:
        conn.begin()
        xmin.save_state(S, T, XMinState(10), expected_revision=0, connection=conn, load_id="b")
        conn.commit()
    stored = xmin.load_state(S, T)
    assert stored is not None and (stored.xmin_value, stored.revision) == (10, 1)
    assert xmin.probe(S, T, "b", expected_revision=0) is ProbeResult.COMMITTED
    assert xmin.probe(S, T, "a", expected_revision=0) is ProbeResult.SUPERSEDED
    assert xmin.probe(S, T, "a", expected_revision=1) is ProbeResult.NOT_COMMITTED


def test_the_save_never_commits_rolls_back_or_retries_the_callers_transaction(
    xmin: XMinStateStorage,
) -> None:
    _needs_transactions(xmin)
    sent: list[str] = []
    with xmin.engine.connect() as conn:
        event.listen(conn, "commit", lambda c: sent.append("commit"))
        event.listen(conn, "rollback", lambda c: sent.append("rollback"))
        conn.begin()
        xmin.save_state(S, T, XMinState(10), expected_revision=0, connection=conn, load_id="a")
        assert conn.in_transaction() and sent == []
        # A conflict is reported, not retried, and the transaction stays the caller's to end.
        with pytest.raises(RevisionConflictError):
            xmin.save_state(S, T, XMinState(11), expected_revision=0, connection=conn)
        assert sent == []
        conn.rollback()
    assert xmin.load_state(S, T) is None


def test_compare_and_set_on_the_callers_connection_moves_revisions_and_receipts(
    xmin: XMinStateStorage,
) -> None:
    _needs_transactions(xmin)
    for revision, load_id in enumerate(("first", "second", "third")):
        with xmin.engine.begin() as conn:
            xmin.save_state(
                S,
                T,
                XMinState(100 + revision),
                expected_revision=revision,
                connection=conn,
                load_id=load_id,
            )
        assert xmin.probe(S, T, load_id, expected_revision=revision) is ProbeResult.COMMITTED
    stored = xmin.load_state(S, T)
    assert stored is not None and (stored.xmin_value, stored.revision) == (102, 3)
    with pytest.raises(RevisionConflictError), xmin.engine.begin() as conn:
        xmin.save_state(S, T, XMinState(200), expected_revision=2, connection=conn)
    # A save without a receipt leaves the last one in place: that load did commit.
    xmin.save_state(S, T, XMinState(300), expected_revision=3)
    assert xmin.probe(S, T, "third", expected_revision=2) is ProbeResult.COMMITTED
    assert xmin.probe(S, T, "second", expected_revision=1) is ProbeResult.SUPERSEDED


def test_receipt_and_probe_without_a_transaction(xmin: XMinStateStorage) -> None:
    """The receipt rides on the storage's own saves too (BigQuery's path)."""
    xmin.save_state(S, T, XMinState(5), expected_revision=0, load_id="own")
    assert xmin.probe(S, T, "own", expected_revision=0) is ProbeResult.COMMITTED
    xmin.save_state(S, T, XMinState(6), expected_revision=1, load_id="next")
    assert xmin.probe(S, T, "own", expected_revision=0) is ProbeResult.SUPERSEDED
    assert xmin.probe(S, T, "next", expected_revision=1) is ProbeResult.COMMITTED
    xmin.delete_state(S, T)
    assert xmin.probe(S, T, "next", expected_revision=1) is ProbeResult.SUPERSEDED
    assert xmin.probe(S, T, "other", expected_revision=0) is ProbeResult.NOT_COMMITTED


def test_bad_receipts_and_connections_are_refused_before_anything_is_sent(
    xmin: XMinStateStorage,
) -> None:
    for bad in ("", " x", "x" * 129, 7):
        with pytest.raises(InvalidStateError):
            xmin.save_state(S, T, XMinState(1), load_id=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidStateError):
        xmin.probe(S, T, "a", expected_revision=-1)
    with pytest.raises(TypeError):
        xmin.save_state(S, T, XMinState(1), connection=xmin.engine)  # type: ignore[arg-type]
    _needs_transactions(xmin)
    with xmin.engine.connect() as conn, pytest.raises(InvalidStateError, match="transaction"):
        xmin.save_state(S, T, XMinState(1), connection=conn)
    assert xmin.load_state(S, T) is None


def test_a_connection_to_another_database_is_refused(
    db: StateDB, tmp_path_factory: pytest.TempPathFactory
) -> None:
    xmin = db.xmin()
    _needs_transactions(xmin)
    other = create_state_engine(f"sqlite:///{tmp_path_factory.mktemp('other') / 'other.db'}")
    url = db.engine.url
    variants = [other]
    system = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql", "mssql": "master"}
    if url.host is not None:  # the same server, another (system) database
        variants.append(sa.create_engine(url.set(database=system[db.engine.dialect.name])))
    try:
        for engine in variants:
            assert not same_database(engine.url, xmin.engine.url)
            with engine.connect() as conn:
                conn.begin()
                with pytest.raises(DatabaseMismatchError, match="one database"):
                    xmin.save_state(S, T, XMinState(1), connection=conn)
    finally:
        for engine in variants:
            engine.dispose()
    # Another engine on the same database is the same database.
    twin = create_state_engine(db.url) if db.backend.name != "bigquery" else db.engine
    try:
        assert same_database(twin.url, xmin.engine.url)
        with twin.begin() as conn:
            xmin.save_state(S, T, XMinState(1), expected_revision=0, connection=conn)
    finally:
        if twin is not db.engine:
            twin.dispose()
    assert xmin.load_state(S, T) is not None


def test_same_database_reads_urls_as_one_database() -> None:
    u = sa.make_url
    assert same_database(u("postgresql://a@h/db"), u("postgresql+psycopg://b:pw@H:5432/db"))
    assert not same_database(u("postgresql://h/db"), u("postgresql://h:5433/db"))
    assert not same_database(u("postgresql://h/db"), u("postgresql://h/db2"))
    assert not same_database(u("postgresql://h/db"), u("mysql://h/db"))
    assert same_database(u("mysql+pymysql://h/db"), u("mariadb+pymysql://h:3306/db"))
    assert same_database(u("sqlite:///./x.db"), u("sqlite:///x.db"))
    assert not same_database(u("sqlite://"), u("sqlite://"))
