"""Faults: writers killed mid-statement and mid-transaction, a PostgreSQL server restarted.

The restart runs on a throwaway cluster (scripts/services/pg-cluster.sh), never on the shared
server. Under CI=true the cluster is required; elsewhere it is skipped when PostgreSQL's
server binaries are missing.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dpone_state import (
    StateOutcomeUnknownError,
    StateUnavailableError,
    XMinState,
    XMinStateStorage,
    create_state_engine,
)
from dpone_state.engine import ping_when_idle
from tests.backends import IN_CI, free_port
from tests.conftest import StateDB

REPO = Path(__file__).resolve().parents[1]
PG_CLUSTER = REPO / "scripts" / "services" / "pg-cluster.sh"


def _killed_writer(url: str, schema: str | None, in_commit: Any) -> None:
    engine = create_state_engine(url)

    @sa.event.listens_for(engine, "commit")
    def _hang_before_commit(conn: Any) -> None:
        in_commit.set()  # the row is written but not committed: wait to be killed
        threading.Event().wait(60)

    XMinStateStorage(engine, schema=schema).save_state("public", "killed", XMinState(42))


def test_writer_killed_mid_transaction_leaves_no_partial_row(db: StateDB) -> None:
    """Killed after its statement ran and before its COMMIT: the transaction rolls back."""
    if db.engine.dialect.name == "bigquery":
        pytest.skip("each BigQuery DML statement commits on its own: no transaction to kill")
    if db.xmin().autocommit:
        pytest.skip(
            "each call's one statement commits by itself on this backend (autocommit, one round "
            "trip): no transaction stays open to kill; test_writer_killed_mid_statement covers it"
        )
    ctx = mp.get_context("spawn")
    in_commit = ctx.Event()
    proc = ctx.Process(target=_killed_writer, args=(db.url, db.schema, in_commit))
    proc.start()
    try:
        assert in_commit.wait(60), "the writer never reached its commit"
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    xmin = db.xmin()
    assert xmin.load_state("public", "killed") is None
    xmin.save_state("public", "killed", XMinState(43))  # the key is not left locked
    loaded = xmin.load_state("public", "killed")
    assert loaded is not None and (loaded.xmin_value, loaded.revision) == (43, 1)


def _blocked_writer(url: str, schema: str | None, started: Any) -> None:
    engine = create_state_engine(url)
    started.set()
    XMinStateStorage(engine, schema=schema).save_state("public", "killed", XMinState(42))


def test_writer_killed_mid_statement_leaves_no_partial_row(db: StateDB) -> None:
    """Killed while its upsert waits inside the server behind another transaction's lock on
    the key: afterwards the row is absent or whole, never half-written, and the key is free."""
    if db.engine.dialect.name == "bigquery":
        pytest.skip("BigQuery has no row locks to hold a statement in flight")
    xmin = db.xmin()
    ctx = mp.get_context("spawn")
    started = ctx.Event()
    with db.engine.connect() as holder:
        transaction = holder.begin()
        holder.execute(  # an uncommitted row of the same key: the writer must wait for it
            sa.insert(xmin.table).values(
                source_schema="public", source_table="killed", xmin_value=1,
                is_initial=False, wraparound_detected=False, revision=0,
            )
        )  # fmt: skip
        proc = ctx.Process(target=_blocked_writer, args=(db.url, db.schema, started))
        proc.start()
        try:
            assert started.wait(60), "the writer never started"
            threading.Event().wait(1.0)  # let its statement reach the lock
            assert proc.pid is not None
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.join(30)
            transaction.rollback()
    assert proc.exitcode == -signal.SIGKILL
    loaded = xmin.load_state("public", "killed")
    # Absent, or the killed writer's whole row if the server ran its statement to the end.
    assert loaded is None or (loaded.xmin_value, loaded.revision) == (42, 1)
    xmin.save_state("public", "killed", XMinState(43))
    after = xmin.load_state("public", "killed")
    assert after is not None and after.xmin_value == 43


def _cluster(command: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", str(PG_CLUSTER), command],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"pg-cluster.sh {command}: {done.stderr[-2000:]}"
    return done.stdout.strip()


@pytest.fixture(scope="module")
def throwaway_pg() -> Iterator[tuple[str, dict[str, str]]]:
    """A throwaway PostgreSQL cluster of this module's own, on a free port (or
    ``DPONE_STATE_TEST_FAULT_PG_PORT``) with a data dir named after it."""
    if not list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")):
        reason = "PostgreSQL server binaries missing (apt-get install postgresql)"
        if IN_CI:
            pytest.fail(f"required in CI: {reason}", pytrace=False)
        pytest.skip(reason)
    port = os.environ.get("DPONE_STATE_TEST_FAULT_PG_PORT") or free_port()
    env = {
        **os.environ,
        "DPONE_STATE_PG_CLUSTER_DIR": f"/tmp/dpone-state-pg-faults-{port}-{os.getpid()}",
        "DPONE_STATE_PG_CLUSTER_PORT": port,
    }
    _cluster("destroy", env)
    _cluster("init", env)
    try:
        yield _cluster("url", env), env
    finally:
        _cluster("destroy", env)


def test_restart_mid_run_fails_typed_or_succeeds_and_loses_nothing(
    throwaway_pg: tuple[str, dict[str, str]],
) -> None:
    url, env = throwaway_pg
    engine = create_state_engine(url)
    xmin = XMinStateStorage(engine, schema="faults")
    xmin.create_tables()
    committed: dict[str, int] = {}
    unknown: dict[str, set[int]] = {}  # saves whose outcome the storage could not learn
    failures: list[BaseException] = []
    stop = threading.Event()

    def calls() -> None:
        i = 0
        while not stop.is_set() and i < 5000:
            i += 1
            key = f"t{i % 50}"
            try:
                xmin.save_state("public", key, XMinState(i))
                committed[key] = i
                unknown.pop(key, None)
                xmin.load_state("public", key)
            except StateUnavailableError:
                pass  # typed and retryable (nothing applied): what a caller may see
            except StateOutcomeUnknownError:
                unknown.setdefault(key, set()).add(i)  # sent, reply lost: may have applied
            except BaseException as error:
                failures.append(error)
                return

    worker = threading.Thread(target=calls)
    worker.start()
    try:
        for _ in range(2):
            threading.Event().wait(0.3)
            _cluster("restart", env)
        threading.Event().wait(0.3)
    finally:
        stop.set()
        worker.join(60)
    assert failures == []
    assert len(committed) >= 10, "too few calls ran to prove anything"
    for key, value in committed.items():  # nothing committed is lost
        loaded = xmin.load_state("public", key)
        assert loaded is not None
        assert loaded.xmin_value == value or loaded.xmin_value in unknown.get(key, set())

    _cluster("stop", env)
    try:
        with pytest.raises(StateUnavailableError) as info:
            xmin.load_state("public", "t1")
        assert "127.0.0.1" in str(info.value)
    finally:
        _cluster("start", env)
    assert xmin.load_state("public", "t1") is not None  # reconnects after the outage
    engine.dispose()


def test_idle_connections_are_pinged_so_a_restart_between_runs_costs_no_failed_call(
    throwaway_pg: tuple[str, dict[str, str]],
) -> None:
    url, env = throwaway_pg
    pinging = sa.create_engine(url)
    ping_when_idle(pinging, idle_seconds=0.05)
    unguarded = sa.create_engine(url)
    for engine in (pinging, unguarded):
        XMinStateStorage(engine, schema="idle").create_tables()
        XMinStateStorage(engine, schema="idle").save_state("public", "t", XMinState(1))
    _cluster("restart", env)  # every pooled connection is now dead
    threading.Event().wait(0.1)  # ... and idle for longer than the threshold
    XMinStateStorage(pinging, schema="idle").save_state("public", "t", XMinState(2))
    # Without the ping, the dead connection is used: the write was handed to it, so the
    # library cannot know it never arrived (and the row does not say: a last-writer-wins save
    # leaves no trace of what it replaced). The failure is typed and says "outcome unknown".
    with pytest.raises(StateOutcomeUnknownError):
        XMinStateStorage(unguarded, schema="idle").save_state("public", "t", XMinState(3))
    loaded = XMinStateStorage(unguarded, schema="idle").load_state("public", "t")
    assert loaded is not None and loaded.xmin_value == 2
    pinging.dispose()
    unguarded.dispose()
