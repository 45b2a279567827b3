"""The exactly-once loop under faults: the process killed (SIGKILL) at every step, and a
COMMIT whose reply (or the COMMIT itself) a TCP proxy loses.

The source is a PostgreSQL table (``DPONE_STATE_TEST_POSTGRES_URL``); the target table and
the checkpoint share each target backend's database. After every kill the target holds either
none or all of the run's rows and the checkpoint moved exactly when they are there; a rerun
leaves every source row in the target exactly once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, RowMapping

from dpone_state import (
    LOADED_ONCE,
    BackendMismatchError,
    DatabaseMismatchError,
    Loader,
    LoadNotCommittedError,
    ProbeResult,
    StateOutcomeUnknownError,
    XMinError,
    XMinExtraction,
    XMinExtractor,
    XMinStateStorage,
    create_state_engine,
    load_exactly_once,
    open_state,
)
from dpone_state.xmin import XMIN_KEY, anchor_statement
from tests.backends import BACKENDS
from tests.conftest import _engine_or_skip
from tests.exactly_once_child import STEPS, loaded_table
from tests.tcp_proxy import MYSQL_COMMIT, POSTGRES_COMMIT, LossyProxy

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("sqlite", "postgresql", "mariadb", "mssql")
#: Steps whose kill comes before the COMMIT is sent: nothing may be committed.
NOT_COMMITTED = {"before_load", "mid_load", "after_load", "before_commit"}
#: First port of the proxies (``0``: any free port).
PROXY_PORT = int(os.environ.get("DPONE_STATE_TEST_PROXY_PORT", "0"))


@dataclass
class Place:
    """A source table and a target database holding both the loaded rows and the state."""

    backend: str
    source: Engine
    source_url: str
    source_schema: str
    target: Engine
    target_url: str
    target_schema: str | None

    @property
    def storage(self) -> XMinStateStorage:
        return XMinStateStorage(self.target, schema=self.target_schema)

    def add_source_rows(self, ids: range) -> None:
        """Insert, then wait until a run's window includes them: the anchor (the oldest
        running transaction of the shared server) must have passed their transaction."""
        with self.source.begin() as conn:
            conn.execute(
                sa.text(f'INSERT INTO "{self.source_schema}".items (id) VALUES (:id)'),
                [{"id": i} for i in ids],
            )
            xid = int(conn.execute(sa.text("SELECT txid_current()")).scalar_one())
        deadline = time.monotonic() + 60
        with self.source.connect() as conn:
            statement = anchor_statement(conn.dialect.server_version_info or (0,))
            while conn.execute(statement).one().anchor <= xid:
                assert time.monotonic() < deadline, "the source's anchor never passed the rows"
                conn.rollback()
                time.sleep(0.2)

    def loaded(self) -> tuple[int, int]:
        """Rows in the target and distinct source ids among them."""
        t = loaded_table(self.target_schema)
        with self.target.connect() as conn:
            return (
                int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()),
                int(conn.execute(sa.select(sa.func.count(sa.distinct(t.c.id)))).scalar_one()),
            )

    def revision(self) -> int:
        state = self.storage.load_state(self.source_schema, "items")
        return state.revision if state is not None else 0


def _source_url() -> str:
    url = BACKENDS["postgresql"].url
    assert url is not None
    return url


@pytest.fixture(params=TARGETS)
def place(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Place]:
    backend = BACKENDS[request.param]
    source, source_url = _engine_or_skip(BACKENDS["postgresql"], tmp_path_factory.mktemp("src"))
    target, target_url = _engine_or_skip(backend, tmp_path_factory.mktemp(backend.name))
    source_schema = f"eo_src_{uuid.uuid4().hex[:8]}"
    target_schema = backend.new_schema_name()
    made = Place(backend.name, source, source_url, source_schema, target, target_url, target_schema)
    with source.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{source_schema}"'))
        conn.execute(sa.text(f'CREATE TABLE "{source_schema}".items (id integer NOT NULL)'))
    made.storage.create_tables()  # also creates the schema
    loaded_table(target_schema).create(target)
    try:
        yield made
    finally:
        with source.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{source_schema}" CASCADE'))
        backend.drop_schema(target, target_schema)
        source.dispose()
        target.dispose()


#: The PostgreSQL sessions of the child carry this name, so the test can wait for them to end.
CHILD_APPLICATION = "dpone_state_eo_child"


def _child(place: Place, step: str, *, two_step: bool = False) -> subprocess.CompletedProcess[str]:
    target_url = sa.make_url(place.target_url)
    if place.backend == "postgresql":
        target_url = target_url.update_query_dict({"application_name": CHILD_APPLICATION})
    spec = {
        "two_step": two_step,
        "source_url": place.source_url,
        "source_schema": place.source_schema,
        "source_table": "items",
        "target_url": target_url.render_as_string(hide_password=False),
        "target_schema": place.target_schema,
        "step": step,
    }
    return subprocess.run(
        [sys.executable, "-m", "tests.exactly_once_child", json.dumps(spec)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _wait_for_the_dead_sessions(place: Place) -> None:
    """A COMMIT the killed process sent may still be in flight at the server: wait until its
    sessions are gone before looking (a rerun racing it would meet a compare-and-set
    conflict: safe, but not the test's point)."""
    if place.backend == "postgresql":
        count = sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name")
        deadline = time.monotonic() + 30
        with place.target.connect() as conn:
            while conn.execute(count, {"name": CHILD_APPLICATION}).scalar_one():
                assert time.monotonic() < deadline, "the killed process's sessions linger"
                conn.rollback()
                time.sleep(0.05)
    elif place.backend != "sqlite":
        time.sleep(0.5)  # the server sees the socket close at once; let it finish the COMMIT


def _killed_run_then_rerun(place: Place, step: str, total: int) -> None:
    before_rows, _ = place.loaded()
    before_revision = place.revision()
    killed = _child(place, step)
    assert killed.returncode == -9, (killed.returncode, killed.stdout, killed.stderr)
    _wait_for_the_dead_sessions(place)
    rows, distinct = place.loaded()
    assert rows == distinct, "a row was loaded twice"
    if rows == before_rows:  # nothing committed: the checkpoint did not move
        assert step not in ("after_commit",), "a commit the server confirmed was lost"
        assert place.revision() == before_revision
    else:  # the whole window committed, with its checkpoint
        assert step not in NOT_COMMITTED, f"{step}: a load committed before its COMMIT was sent"
        assert rows == total
        assert place.revision() == before_revision + 1
    rerun = _child(place, "none")
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout.strip().splitlines()[-1])["outcome"] == LOADED_ONCE
    assert place.loaded() == (total, total)


@pytest.mark.parametrize("step", STEPS)
def test_a_kill_at_any_step_then_a_rerun_loads_every_row_once(place: Place, step: str) -> None:
    place.add_source_rows(range(1, 11))
    _killed_run_then_rerun(place, step, 10)  # the first window (compare-and-set insert)
    place.add_source_rows(range(11, 21))
    _killed_run_then_rerun(place, step, 20)  # a later window (compare-and-set update)


def test_the_two_step_loop_replays_a_window_after_a_kill_between_its_commits(
    place: Place,
) -> None:
    """What the exactly-once loop fixes: killed after the target's COMMIT and before the
    checkpoint's, the at-least-once loop loads the window again (duplicates when appending)."""
    if place.backend != "sqlite":
        pytest.skip("one backend shows it")
    place.add_source_rows(range(1, 11))
    killed = _child(place, "after_commit", two_step=True)
    assert killed.returncode == -9, killed.stderr
    assert place.loaded() == (10, 10) and place.revision() == 0  # the gap
    assert _child(place, "none", two_step=True).returncode == 0
    assert place.loaded() == (20, 10)  # every row twice


# --- lost replies --------------------------------------------------------------------------


_COMMIT_BYTES = {"postgresql": POSTGRES_COMMIT, "mysql": MYSQL_COMMIT, "mariadb": MYSQL_COMMIT}


def _through_proxy(place: Place, proxy: LossyProxy) -> Engine:
    url = sa.make_url(place.target_url).set(host="127.0.0.1", port=proxy.port)
    return create_state_engine(url)


def _load_through_proxy(
    place: Place, engine: Engine, calls: list[int]
) -> tuple[XMinExtraction, Loader]:
    storage = XMinStateStorage(engine, schema=place.target_schema)
    table = loaded_table(place.target_schema)

    def load(connection: Connection, batches: Iterator[Sequence[RowMapping]]) -> None:
        calls.append(1)
        for batch in batches:
            connection.execute(
                table.insert(), [{"id": r["id"], "source_xmin": r[XMIN_KEY]} for r in batch]
            )

    extraction = XMinExtractor(place.source, storage).extract(
        place.source_schema, "items", columns=["id"]
    )
    return extraction, load


@pytest.mark.parametrize("forward", [True, False], ids=["reply_lost", "commit_lost"])
def test_a_lost_commit_is_resolved_by_the_probe_not_by_a_replay(
    place: Place, forward: bool
) -> None:
    name = place.target.dialect.name
    if name not in _COMMIT_BYTES:
        pytest.skip(f"{name}: no network between the process and the database to lose")
    upstream = sa.make_url(place.target_url).port or (5432 if name == "postgresql" else 3306)
    place.add_source_rows(range(1, 6))
    # Each case its own port: a closed proxy's sockets may hold its port a while.
    port = PROXY_PORT + 2 * TARGETS.index(place.backend) + int(not forward) if PROXY_PORT else 0
    with LossyProxy(upstream, port=port) as proxy:
        engine = _through_proxy(place, proxy)
        try:
            calls: list[int] = []
            # A first window, loaded as usual: the lost COMMIT below updates an existing row,
            # whose lock the probe waits for (a first load's row cannot be locked; README).
            extraction, load = _load_through_proxy(place, engine, calls)
            assert load_exactly_once(extraction, load, engine).outcome == LOADED_ONCE
            place.add_source_rows(range(6, 11))
            extraction, load = _load_through_proxy(place, engine, calls)
            proxy.arm(_COMMIT_BYTES[name], forward=forward)
            if forward:  # the server committed; only the reply was lost
                result = load_exactly_once(extraction, load, engine, load_id="lost-reply")
                assert proxy.fired == 1
                assert result.outcome == LOADED_ONCE and result.probed
                assert place.loaded() == (10, 10)
                assert place.revision() == 2
            else:  # the COMMIT never arrived: the server rolled back
                with pytest.raises(LoadNotCommittedError) as caught:
                    load_exactly_once(extraction, load, engine, load_id="lost-commit")
                assert proxy.fired == 1 and caught.value.load_id == "lost-commit"
                assert place.loaded() == (5, 5)
                assert place.revision() == 1
                # ... and the next run loads the window once.
                extraction, load = _load_through_proxy(place, engine, calls)
                assert load_exactly_once(extraction, load, engine).outcome == LOADED_ONCE
                assert place.loaded() == (10, 10)
            assert len(calls) == (2 if forward else 3)  # the lost one was never replayed
        finally:
            engine.dispose()


def test_a_lost_reply_and_an_unreachable_database_is_outcome_unknown(place: Place) -> None:
    name = place.target.dialect.name
    if name not in _COMMIT_BYTES:
        pytest.skip(f"{name}: no network between the process and the database to lose")
    upstream = sa.make_url(place.target_url).port or (5432 if name == "postgresql" else 3306)
    place.add_source_rows(range(1, 4))
    port = PROXY_PORT + 10 + TARGETS.index(place.backend) if PROXY_PORT else 0
    with LossyProxy(upstream, port=port) as proxy:
        engine = _through_proxy(place, proxy)
        try:
            extraction, load = _load_through_proxy(place, engine, [])
            assert load_exactly_once(extraction, load, engine).outcome == LOADED_ONCE
            place.add_source_rows(range(4, 7))
            extraction, load = _load_through_proxy(place, engine, [])
            proxy.arm(_COMMIT_BYTES[name], then_down=True)
            with pytest.raises(StateOutcomeUnknownError) as caught:
                load_exactly_once(extraction, load, engine, load_id="in-the-dark")
        finally:
            engine.dispose()
    assert caught.value.load_id == "in-the-dark"  # type: ignore[attr-defined]
    assert caught.value.expected_revision == 1  # type: ignore[attr-defined]
    # Once the database is reachable again, the probe tells: the COMMIT had arrived.
    assert place.storage.probe(
        place.source_schema, "items", "in-the-dark", expected_revision=1
    ) == (ProbeResult.COMMITTED)
    assert place.loaded() == (6, 6)


def test_a_load_that_ends_the_transaction_itself_saves_no_checkpoint(place: Place) -> None:
    if place.backend != "sqlite":
        pytest.skip("one backend shows it")
    place.add_source_rows(range(1, 4))
    append = _append(loaded_table(place.target_schema))

    def load_and_commit(connection: Connection, batches: Iterator[Sequence[RowMapping]]) -> None:
        append(connection, batches)
        connection.commit()

    extractor = XMinExtractor(place.source, place.storage)
    with (
        extractor.extract(place.source_schema, "items") as run,
        pytest.raises(XMinError, match="at-least-once") as caught,
    ):
        load_exactly_once(run, load_and_commit, place.target)
    assert not isinstance(caught.value, LoadNotCommittedError)  # its rows did commit
    assert place.loaded() == (3, 3) and place.revision() == 0


# --- sink reuse and backends without transactions --------------------------------------------


def _append(table: sa.Table) -> Loader:
    def load(connection: Connection, batches: Iterator[Sequence[RowMapping]]) -> None:
        for batch in batches:
            connection.execute(
                table.insert(), [{"id": r["id"], "source_xmin": r[XMIN_KEY]} for r in batch]
            )

    return load


def test_sink_reuse_shares_the_database_and_another_target_is_refused(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    backend = BACKENDS["postgresql"]
    probe_engine, url = _engine_or_skip(backend, tmp_path_factory.mktemp("pg"))
    probe_engine.dispose()
    schema = f"eo_sink_{uuid.uuid4().hex[:8]}"
    manifest = {
        "sink": {"type": "postgres", "connection_id": "dwh", "connection_type": "env"},
        "state": {"type": "postgres", "table": {"schema": schema}},
    }
    with open_state(manifest, environ={"DPONE_CONN_DWH": url}) as stores:
        assert stores.settings.connection_from_sink
        stores.create_tables()
        try:
            with stores.engine.begin() as conn:
                conn.execute(sa.text(f'CREATE TABLE "{schema}".items (id integer NOT NULL)'))
                conn.execute(sa.text(f'INSERT INTO "{schema}".items VALUES (1), (2), (3)'))
            table = loaded_table(schema)
            table.create(stores.engine)
            extraction = XMinExtractor(stores.engine, stores.xmin).extract(schema, "items")
            elsewhere = create_state_engine(f"sqlite:///{tmp_path / 'elsewhere.db'}")
            with pytest.raises(DatabaseMismatchError):
                load_exactly_once(extraction, _append(loaded_table(None)), elsewhere)
            elsewhere.dispose()
            result = load_exactly_once(extraction, _append(table), stores.engine)
            assert (result.outcome, result.rows) == (LOADED_ONCE, 3)
            assert stores.xmin.probe(schema, "items", result.load_id, expected_revision=0) == (
                ProbeResult.COMMITTED
            )
        finally:
            BACKENDS["postgresql"].drop_schema(stores.engine, schema)


def test_a_backend_whose_driver_commits_each_statement_is_refused(
    xmin: XMinStateStorage, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if xmin.backend_row.transactional_loads:
        pytest.skip(f"{xmin.backend_row.state_type}: its loads are transactional")
    source, _ = _engine_or_skip(BACKENDS["postgresql"], tmp_path_factory.mktemp("src"))
    schema = f"eo_bq_{uuid.uuid4().hex[:8]}"
    try:
        with source.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
            conn.execute(sa.text(f'CREATE TABLE "{schema}".items (id integer)'))
        with (
            XMinExtractor(source, xmin).extract(schema, "items") as extraction,
            pytest.raises(BackendMismatchError, match="at-least-once"),
        ):
            load_exactly_once(extraction, _append(loaded_table(None)), xmin.engine)
        assert xmin.load_state(schema, "items") is None
    finally:
        with source.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        source.dispose()
