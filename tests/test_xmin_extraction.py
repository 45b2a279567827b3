"""XMin extraction against a real PostgreSQL: windows, open transactions, wraparound, freeze.

The source is a throwaway PostgreSQL cluster this module owns (scripts/services/pg-cluster.sh:
init, wrap, destroy), on its own port and data dir, with autovacuum off. Windows depend on
every transaction in flight cluster-wide (the anchor is the snapshot's xmin), so on the shared
server another session's open transaction would move rows to a later window; here nothing
else runs and every assertion is exact. Checkpoints live in SQLite, or on every state backend
for the commit / conflict tests.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dpone_state import (
    BackendMismatchError,
    ExtractionMode,
    ExtractionStrategy,
    RevisionConflictError,
    SourceColumnError,
    SourceNotATableError,
    SourcePermissionError,
    SourceTableNotFoundError,
    StrategyConfigurationError,
    WindowKind,
    XMinError,
    XMinExtractor,
    XMinState,
    XMinStateStorage,
    compute_window,
    create_state_engine,
    select_strategy,
)
from dpone_state.xmin import anchor_statement
from tests.backends import IN_CI, free_port

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "services" / "pg-cluster.sh"
PG_BIN = Path(os.environ.get("DPONE_STATE_PG_BIN", "/usr/lib/postgresql/15/bin"))
EPOCH = 1 << 32


# A free port and a data dir of its own by default, so that two test sessions on one machine
# (two worktrees) never share, or destroy, each other's cluster.
CLUSTER_PORT = os.environ.get("DPONE_STATE_TEST_XMIN_CLUSTER_PORT") or free_port()
CLUSTER_DIR = os.environ.get("DPONE_STATE_TEST_XMIN_CLUSTER_DIR") or (
    f"/tmp/dpone-state-pg-xmin-{CLUSTER_PORT}"
)


@dataclass
class Cluster:
    """The throwaway source cluster: its URL, an engine, and the script that runs it."""

    url: str
    engine: Engine

    def script(self, command: str) -> None:
        env = {
            **os.environ,
            "DPONE_STATE_PG_CLUSTER_DIR": CLUSTER_DIR,
            "DPONE_STATE_PG_CLUSTER_PORT": CLUSTER_PORT,
            "DPONE_STATE_PG_BIN": str(PG_BIN),
        }
        done = subprocess.run(
            ["bash", str(SCRIPT), command], env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"pg-cluster.sh {command} failed: {done.stderr[-2000:]}")

    def next_xid(self) -> int:
        """The next 64-bit transaction ID, without using one."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
                ).scalar_one()
            )

    def burn(self, count: int) -> None:
        """Use ``count`` transaction IDs (one autocommit transaction each)."""
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for _ in range(count):
                conn.exec_driver_sql("SELECT txid_current()")


def _cluster_unavailable() -> str | None:
    if not (PG_BIN / "pg_ctl").exists():
        return f"no PostgreSQL binaries in {PG_BIN} (apt-get install postgresql-15)"
    if os.geteuid() != 0:
        return "the throwaway cluster runs initdb through runuser, which needs root"
    return None


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """A fresh throwaway cluster (init here, destroyed at the end of the session).

    Session scope: the commit tests run once per state backend, and pytest groups those by
    backend across modules; a module-scoped cluster would be re-created for each group.
    """
    problem = _cluster_unavailable()
    if problem is not None:
        if IN_CI:
            pytest.fail(f"required in CI: throwaway PostgreSQL cluster: {problem}", pytrace=False)
        pytest.skip(f"throwaway PostgreSQL cluster: {problem}")
    url = f"postgresql+psycopg2://postgres@127.0.0.1:{CLUSTER_PORT}/postgres"
    engine = create_state_engine(url)
    made = Cluster(url, engine)
    made.script("destroy")  # a leftover of an interrupted run with the same settings
    made.script("init")
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            # Nothing else may hold a transaction: every window below is then exact.
            conn.execute(sa.text("ALTER SYSTEM SET autovacuum = off"))
            conn.execute(sa.text("SELECT pg_reload_conf()"))
        yield made
    finally:
        engine.dispose()
        made.script("destroy")


@dataclass
class Source:
    """One schema of the cluster with helpers to write rows and learn their transaction ID."""

    cluster: Cluster
    schema: str

    @property
    def engine(self) -> Engine:
        return self.cluster.engine

    def q(self, name: str) -> str:
        """A quoted identifier, for the test's own DDL/DML only."""
        return '"' + name.replace('"', '""') + '"'

    def table(self, name: str) -> str:
        return f"{self.q(self.schema)}.{self.q(name)}"

    def write(self, *statements: str, **params: Any) -> int:
        """Run ``statements`` in one transaction; its 64-bit transaction ID."""
        with self.engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement), params)
            return int(
                conn.execute(sa.text("SELECT pg_current_xact_id()::text::bigint")).scalar_one()
            )


@pytest.fixture
def source(cluster: Cluster) -> Iterator[Source]:
    schema = f"xmin_src_{uuid.uuid4().hex[:8]}"
    made = Source(cluster, schema)
    made.write(f"CREATE SCHEMA {made.q(schema)}")
    yield made
    made.write(f"DROP SCHEMA {made.q(schema)} CASCADE")


@pytest.fixture
def checkpoints(tmp_path: Path) -> XMinStateStorage:
    """Checkpoints in an SQLite file (the commit / conflict tests use every backend)."""
    storage = XMinStateStorage(f"sqlite:///{tmp_path / 'state.db'}")
    storage.create_tables()
    return storage


@dataclass
class Run:
    rows: list[dict[str, Any]]
    saved: XMinState
    kind: WindowKind


def run(
    extractor: XMinExtractor, schema: str, table: str, batch_size: int = 2, **kwargs: Any
) -> Run:
    """One complete run: read every row, 'load' it, commit the checkpoint."""
    with extractor.extract(schema, table, batch_size=batch_size, **kwargs) as extraction:
        rows = [dict(row) for row in extraction]
        saved = extraction.commit()
        return Run(rows, saved, extraction.window.kind)


def ids(result: Run) -> list[Any]:
    return sorted(row["id"] for row in result.rows)


# --- changes land in exactly the next window -------------------------------------------------


def test_inserts_updates_and_reinserts_are_each_extracted_in_the_next_window(
    source: Source, checkpoints: XMinStateStorage
) -> None:
    t = source.table("orders")
    source.write(f"CREATE TABLE {t} (id int PRIMARY KEY, v text)")
    first_xid = source.write(f"INSERT INTO {t} VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    extractor = XMinExtractor(source.engine, checkpoints)

    full = run(extractor, source.schema, "orders")
    assert full.kind is WindowKind.FULL and full.saved.is_initial
    assert ids(full) == [1, 2, 3]
    assert {row["__dpone__xmin"] for row in full.rows} == {first_xid % EPOCH}
    assert full.saved.xmin_value > first_xid
    assert checkpoints.load_state(source.schema, "orders") == full.saved

    assert run(extractor, source.schema, "orders").rows == []  # unchanged: nothing

    insert_xid = source.write(f"INSERT INTO {t} VALUES (4, 'd')")
    inserted = run(extractor, source.schema, "orders")
    assert inserted.kind is WindowKind.SAME_EPOCH and not inserted.saved.is_initial
    assert inserted.rows == [{"id": 4, "v": "d", "__dpone__xmin": insert_xid % EPOCH}]

    update_xid = source.write(f"UPDATE {t} SET v = 'B' WHERE id = 2")
    updated = run(extractor, source.schema, "orders")
    assert updated.rows == [{"id": 2, "v": "B", "__dpone__xmin": update_xid % EPOCH}]

    source.write(f"DELETE FROM {t} WHERE id = 3")
    reinsert_xid = source.write(f"INSERT INTO {t} VALUES (3, 'C')")
    reinserted = run(extractor, source.schema, "orders")
    assert reinserted.rows == [{"id": 3, "v": "C", "__dpone__xmin": reinsert_xid % EPOCH}]

    assert run(extractor, source.schema, "orders").rows == []
    values = [r.saved.xmin_value for r in (full, inserted, updated, reinserted)]
    assert values == sorted(set(values))  # strictly increasing
    assert updated.saved.revision == 4 and reinserted.saved.revision == 5


def test_a_transaction_open_at_the_anchor_is_extracted_by_the_next_run(
    source: Source, checkpoints: XMinStateStorage
) -> None:
    t = source.table("events")
    source.write(f"CREATE TABLE {t} (id int)")
    extractor = XMinExtractor(source.engine, checkpoints)
    run(extractor, source.schema, "events")

    with source.engine.connect() as slow:
        slow_tx = slow.begin()
        slow.execute(sa.text(f"INSERT INTO {t} VALUES (10)"))
        slow_xid = int(
            slow.execute(sa.text("SELECT pg_current_xact_id()::text::bigint")).scalar_one()
        )
        fast_xid = source.write(f"INSERT INTO {t} VALUES (11)")  # commits after slow began
        assert fast_xid > slow_xid

        during = run(extractor, source.schema, "events")
        # The anchor is the snapshot's xmin, not txid_current(): it stops at the open
        # transaction, so row 11 (committed, but after it) waits for the next window too.
        assert during.saved.xmin_value == slow_xid
        assert during.rows == []
        slow_tx.commit()

    after = run(extractor, source.schema, "events")
    assert ids(after) == [10, 11]
    assert after.saved.xmin_value > fast_xid
    assert run(extractor, source.schema, "events").rows == []


def test_rows_stream_in_batches_with_columns_and_an_extra_predicate(
    source: Source, checkpoints: XMinStateStorage
) -> None:
    t = source.table("wide")
    source.write(f"CREATE TABLE {t} (id int, region text, payload text)")
    source.write(
        f"INSERT INTO {t} SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, 'x' "
        "FROM generate_series(1, 25) g"
    )
    extractor = XMinExtractor(source.engine, checkpoints)
    with extractor.extract(
        source.schema, "wide", columns=["id"], where=sa.column("region") == "eu", batch_size=4
    ) as extraction:
        batches = [list(batch) for batch in extraction.batches()]
        assert [len(b) for b in batches] == [4, 4, 4]
        # dpone's technical column name: a target cannot even have a column named xmin
        assert all(set(row.keys()) == {"id", "__dpone__xmin"} for b in batches for row in b)
        assert sorted(row["id"] for b in batches for row in b) == list(range(2, 25, 2))
        assert extraction.rows_read == 12
        extraction.commit()

    with pytest.raises(SourceColumnError, match="nope"):
        extractor.extract(source.schema, "wide", columns=["id", "nope"])
    with pytest.raises(TypeError, match="plain string is never taken as SQL"):
        extractor.extract(source.schema, "wide", where="region = 'eu'")  # type: ignore[arg-type]
    # dpone's custom_predicate is SQL text: accepted when it says so explicitly
    checkpoints.delete_state(source.schema, "wide")
    with extractor.extract(source.schema, "wide", where=sa.text("region = 'us'")) as extraction:
        assert sorted(row["id"] for row in extraction) == list(range(1, 26, 2))
    other = sa.table("other", sa.column("region"))
    with pytest.raises(TypeError, match="join it in"):
        extractor.extract(source.schema, "wide", where=other.c.region == "eu")


def test_names_with_upper_case_spaces_quotes_and_non_ascii(
    cluster: Cluster, checkpoints: XMinStateStorage
) -> None:
    schema = f'Src Ü "{uuid.uuid4().hex[:6]}"'
    table = 'Or\'ders "Δ" Tab'
    column = 'Mixed "Case" é'
    made = Source(cluster, schema)
    made.write(f"CREATE SCHEMA {made.q(schema)}")
    try:
        t = made.table(table)
        made.write(f"CREATE TABLE {t} (id int, {made.q(column)} text)")
        made.write(f"INSERT INTO {t} VALUES (1, 'one')")
        extractor = XMinExtractor(cluster.engine, checkpoints)
        full = run(extractor, schema, table, columns=["id", column])
        assert [(r["id"], r[column]) for r in full.rows] == [(1, "one")]
        made.write(f"INSERT INTO {t} VALUES (2, 'two')")
        assert [r["id"] for r in run(extractor, schema, table, columns=["id", column]).rows] == [2]
        stored = checkpoints.load_state(schema, table)
        assert stored is not None and stored.revision == 2
    finally:
        made.write(f"DROP SCHEMA {made.q(schema)} CASCADE")


# --- at-least-once: the checkpoint moves only on commit; compare-and-set ----------------------


def test_a_failure_before_commit_keeps_the_old_checkpoint(
    source: Source, xmin: XMinStateStorage
) -> None:
    t = source.table("orders")
    source.write(f"CREATE TABLE {t} (id int)")
    extractor = XMinExtractor(source.engine, xmin)
    before = run(extractor, source.schema, "orders").saved
    source.write(f"INSERT INTO {t} VALUES (5)")

    with (
        pytest.raises(RuntimeError, match="target load failed"),
        extractor.extract(source.schema, "orders") as extraction,
    ):
        assert [row["id"] for row in extraction] == [5]
        raise RuntimeError("target load failed")
    assert xmin.load_state(source.schema, "orders") == before

    with extractor.extract(source.schema, "orders", batch_size=1) as extraction:
        next(iter(extraction))  # stops before the end of the stream
        with pytest.raises(XMinError, match="not every row"):
            extraction.commit()
    assert xmin.load_state(source.schema, "orders") == before

    with extractor.extract(source.schema, "orders") as extraction:
        pass  # no commit: e.g. the process is killed after the load, before the save
    assert xmin.load_state(source.schema, "orders") == before

    replay = run(extractor, source.schema, "orders")  # the same window again
    assert ids(replay) == [5]
    assert replay.saved.revision == before.revision + 1


def test_two_concurrent_runs_of_one_table_one_commits_the_other_conflicts(
    source: Source, xmin: XMinStateStorage
) -> None:
    t = source.table("orders")
    source.write(f"CREATE TABLE {t} (id int)")
    source.write(f"INSERT INTO {t} VALUES (1)")
    extractor = XMinExtractor(source.engine, xmin)
    for expected_revision in (0, 1):  # first run (no checkpoint yet), then an incremental one
        first = extractor.extract(source.schema, "orders")
        second = extractor.extract(source.schema, "orders")
        with first, second:
            assert first.expected_revision == second.expected_revision == expected_revision
            list(first)
            list(second)
            saved = first.commit()
            with pytest.raises(RevisionConflictError):
                second.commit()
        assert xmin.load_state(source.schema, "orders") == saved
        assert saved.revision == expected_revision + 1
        source.write(f"INSERT INTO {t} VALUES (2)")


# --- typed errors ------------------------------------------------------------------------------


def test_views_missing_tables_and_missing_privileges_give_typed_errors(
    source: Source, checkpoints: XMinStateStorage
) -> None:
    t = source.table("base")
    source.write(
        f"CREATE TABLE {t} (id int)",
        f"CREATE VIEW {source.table('v')} AS SELECT id FROM {t}",
        f"CREATE MATERIALIZED VIEW {source.table('mv')} AS SELECT id FROM {t}",
        f"CREATE SEQUENCE {source.table('seq')}",
    )
    extractor = XMinExtractor(source.engine, checkpoints)
    with pytest.raises(SourceNotATableError, match="is a view: it has no xmin"):
        extractor.extract(source.schema, "v")
    with pytest.raises(SourceNotATableError, match="is a sequence"):
        extractor.extract(source.schema, "seq")
    assert run(extractor, source.schema, "mv").saved.is_initial  # a matview has rows and xmin
    with pytest.raises(SourceTableNotFoundError, match="does not exist"):
        extractor.extract(source.schema, "nope")
    with pytest.raises(SourceTableNotFoundError, match="does not exist"):
        extractor.extract("no_such_schema", "base")

    role = f"xmin_reader_{uuid.uuid4().hex[:6]}"
    source.write(f"CREATE ROLE {role} LOGIN")
    reader = sa.create_engine(source.cluster.url.replace("postgres@", f"{role}@"))
    try:
        as_reader = XMinExtractor(reader, checkpoints)
        with pytest.raises(SourcePermissionError, match="USAGE on schema"):
            as_reader.extract(source.schema, "base")
        source.write(f"GRANT USAGE ON SCHEMA {source.q(source.schema)} TO {role}")
        with pytest.raises(SourcePermissionError, match="SELECT on table"):
            as_reader.extract(source.schema, "base")
        source.write(f"GRANT SELECT ON {t} TO {role}")
        assert run(as_reader, source.schema, "base").saved.is_initial
    finally:
        reader.dispose()
        source.write(f"DROP OWNED BY {role}", f"DROP ROLE {role}")
    assert checkpoints.load_state(source.schema, "v") is None
    assert checkpoints.load_state(source.schema, "nope") is None

    sqlite_engine = sa.create_engine("sqlite://")
    with pytest.raises(BackendMismatchError, match="PostgreSQL source"):
        XMinExtractor(sqlite_engine, checkpoints)


# --- the anchor, and the window predicate on the server -----------------------------------------


def test_the_anchor_is_the_same_in_both_function_families(cluster: Cluster) -> None:
    """``pg_snapshot_*`` (13+) and ``txid_*`` (before 13) read one snapshot identically."""
    repeatable = cluster.engine.connect().execution_options(isolation_level="REPEATABLE READ")
    with repeatable as conn, conn.begin():
        modern = conn.execute(anchor_statement((15, 0))).one()
        legacy = conn.execute(anchor_statement((12, 0))).one()
        assert (modern.anchor, modern.xmax) == (legacy.anchor, legacy.xmax)
        assert modern.isolation == "repeatable read"


@pytest.mark.parametrize(
    ("previous", "anchor", "inside", "outside"),
    [
        # numeric, not text: "1000000000" < "999999990" as text
        (999_999_990, 1_000_000_010, [999_999_990, 1_000_000_000], [1_000_000_010, 5, 99]),
        # one wraparound: both sides of 2**32
        (EPOCH - 10, EPOCH + 10, [EPOCH - 10, EPOCH - 1, 3, 9], [10, 11, EPOCH - 11, 1_000]),
        # later epochs: only the low 32 bits are compared
        (3 * EPOCH + 100, 3 * EPOCH + 200, [100, 199], [99, 200, EPOCH - 1]),
        (3 * EPOCH + 100, 3 * EPOCH + 100, [], [99, 100, 101]),  # empty window
    ],
)
def test_the_window_predicate_compares_xmin_numerically_on_the_server(
    cluster: Cluster, previous: int, anchor: int, inside: list[int], outside: list[int]
) -> None:
    window = compute_window(previous, anchor, frozen_xid=None)
    assert not window.is_full
    raw = sa.column("raw", sa.BigInteger)
    rows = sa.values(raw, name="xids").data([(v,) for v in inside + outside])
    predicate = window.predicate(rows.c.raw)
    assert predicate is not None
    with cluster.engine.connect() as conn:
        picked = conn.execute(sa.select(rows.c.raw).where(predicate)).scalars().all()
    assert sorted(picked) == sorted(inside)


def test_full_refresh_rules() -> None:
    assert compute_window(None, 500, None).reason == "no checkpoint"
    crossed = compute_window(EPOCH - 5, EPOCH + 5, None)
    assert crossed.kind is WindowKind.WRAPAROUND and crossed.wraparound_detected
    two = compute_window(EPOCH - 5, 2 * EPOCH + 1, None)
    assert two.is_full and two.wraparound_detected and "2 wraparounds" in two.reason
    wide = compute_window(EPOCH - 5, 2 * EPOCH - 5, None)  # one epoch, but 2**32 IDs apart
    assert wide.is_full
    frozen = compute_window(100, 200, frozen_xid=101)
    assert frozen.is_full and "relfrozenxid" in frozen.reason
    assert compute_window(100, 200, frozen_xid=100).kind is WindowKind.SAME_EPOCH
    behind = compute_window(300, 200, None)
    assert behind.is_full and "ahead" in behind.reason


# --- strategy selection ---------------------------------------------------------------------------


@pytest.mark.parametrize("load", ["incremental_merge", "incremental_append"])
def test_strategy_selection_follows_dpone_rules(load: str) -> None:
    xmin_mode = ExtractionStrategy(ExtractionMode.XMIN)
    assert select_strategy(load, {"incremental_strategy": "xmin"}) == xmin_mode
    assert select_strategy(load, {}) == xmin_mode  # the legacy default
    assert select_strategy(load, {"incremental_column": "updated_at"}) == ExtractionStrategy(
        ExtractionMode.COLUMN, "updated_at"
    )
    explicit = {"incremental_strategy": "column", "incremental_column": "id"}
    assert select_strategy(load, explicit) == ExtractionStrategy(ExtractionMode.COLUMN, "id")
    with pytest.raises(StrategyConfigurationError, match="requires"):
        select_strategy(load, {"incremental_strategy": "column"})
    with pytest.raises(StrategyConfigurationError, match="conflicts with"):
        select_strategy(load, {"incremental_strategy": "xmin", "incremental_column": "id"})
    with pytest.raises(StrategyConfigurationError, match="not one of"):
        select_strategy(load, {"incremental_strategy": "ctid"})
    with pytest.raises(StrategyConfigurationError, match="non-empty"):
        select_strategy(load, {"incremental_column": ""})


@pytest.mark.parametrize(
    ("spelling", "mode"),
    [
        ("pg_xmin", ExtractionMode.XMIN),
        ("Postgres-XMin", ExtractionMode.XMIN),
        ("XMIN", ExtractionMode.XMIN),
        ("column_cursor", ExtractionMode.COLUMN),
        ("Incremental-Column", ExtractionMode.COLUMN),
        ("COLUMN", ExtractionMode.COLUMN),
    ],
)
def test_strategy_selection_accepts_dpones_spellings(spelling: str, mode: ExtractionMode) -> None:
    options = {"incremental_strategy": spelling}
    if mode is ExtractionMode.COLUMN:
        options["incremental_column"] = "updated_at"
    assert select_strategy("incremental_merge", options).mode is mode
    if mode is ExtractionMode.XMIN:
        with pytest.raises(StrategyConfigurationError, match="conflicts with"):
            select_strategy("incremental_merge", {**options, "incremental_column": "id"})


def test_other_load_strategies_read_the_table_whole() -> None:
    full = ExtractionStrategy(ExtractionMode.FULL)
    assert select_strategy("full_refresh", {"incremental_strategy": "xmin"}) == full
    assert select_strategy("replace", {}) == full


# --- the throwaway cluster: wraparound and frozen rows ----------------------------------------------


def test_vacuum_freeze_past_the_checkpoint_forces_a_flagged_full_refresh(
    source: Source, checkpoints: XMinStateStorage
) -> None:
    t = source.table("frozen")
    source.write(f"CREATE TABLE {t} (id int)")
    source.write(f"INSERT INTO {t} VALUES (1), (2)")
    extractor = XMinExtractor(source.engine, checkpoints)
    first = run(extractor, source.schema, "frozen")
    source.write(f"INSERT INTO {t} VALUES (3)")
    with source.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f"VACUUM (FREEZE) {t}"))
        relfrozenxid = int(
            conn.execute(
                sa.text(
                    "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
                    " - age(relfrozenxid) FROM pg_class WHERE oid = CAST(:t AS regclass)"
                ),
                {"t": t},
            ).scalar_one()
        )
    assert relfrozenxid > first.saved.xmin_value  # the premise: freezing passed the checkpoint

    refreshed = run(extractor, source.schema, "frozen")
    assert refreshed.kind is WindowKind.FULL
    assert refreshed.saved.is_initial
    assert refreshed.saved.frozen_xid == relfrozenxid
    assert ids(refreshed) == [1, 2, 3]

    after = run(extractor, source.schema, "frozen")
    assert after.kind is WindowKind.SAME_EPOCH and not after.saved.is_initial
    assert after.rows == []


def test_wraparound_on_a_real_cluster_loses_no_row(
    cluster: Cluster, checkpoints: XMinStateStorage
) -> None:
    cluster.script("wrap")  # next XID just below 2**32 (restarts the server)
    cluster.engine.dispose()
    assert EPOCH - 2000 < cluster.next_xid() < EPOCH
    schema = f"xmin_wrap_{uuid.uuid4().hex[:6]}"
    source = Source(cluster, schema)
    source.write(f"CREATE SCHEMA {source.q(schema)}")
    t = source.table("w")
    source.write(f"CREATE TABLE {t} (id int PRIMARY KEY, v text)")
    extractor = XMinExtractor(cluster.engine, checkpoints)

    runs = [run(extractor, schema, "w")]  # full, epoch 0
    source.write(f"INSERT INTO {t} VALUES (1, 'a')")
    runs.append(run(extractor, schema, "w"))
    assert ids(runs[-1]) == [1] and not runs[-1].saved.wraparound_detected

    cluster.burn(EPOCH - 6 - cluster.next_xid())
    before_wrap = [
        source.write(f"INSERT INTO {t} VALUES (2, 'b')"),
        source.write(f"UPDATE {t} SET v = 'A' WHERE id = 1"),
    ]
    cluster.burn(12)
    assert cluster.next_xid() >> 32 == 1  # wrapped into epoch 1
    after_wrap = [
        source.write(f"INSERT INTO {t} VALUES (3, 'c')"),
        source.write(f"UPDATE {t} SET v = 'B' WHERE id = 2"),
    ]
    assert all(x < EPOCH for x in before_wrap) and all(x > EPOCH for x in after_wrap)

    crossing = run(extractor, schema, "w")
    runs.append(crossing)
    assert crossing.kind is WindowKind.WRAPAROUND
    assert crossing.saved.wraparound_detected and not crossing.saved.is_initial
    assert sorted((r["id"], r["v"], r["__dpone__xmin"]) for r in crossing.rows) == [
        (1, "A", before_wrap[1] % EPOCH),  # raw xmin just below 2**32
        (2, "B", after_wrap[1] % EPOCH),  # raw xmin a few IDs above 0
        (3, "c", after_wrap[0] % EPOCH),
    ]
    assert crossing.saved.xmin_value > EPOCH

    source.write(f"INSERT INTO {t} VALUES (4, 'd')")
    runs.append(run(extractor, schema, "w"))
    assert ids(runs[-1]) == [4]
    assert not runs[-1].saved.wraparound_detected and runs[-1].kind is WindowKind.SAME_EPOCH
    assert run(extractor, schema, "w").rows == []

    values = [r.saved.xmin_value for r in runs]
    assert all(a < b for a, b in itertools.pairwise(values)), values
    assert [r.saved.wraparound_detected for r in runs] == [False, False, True, False]
    source.write(f"DROP SCHEMA {source.q(schema)} CASCADE")
