"""Concurrent writers in separate processes, mixed with reads and prunes: no error, one row
per key, no lost update; and racing compare-and-set writers: exactly one wins."""

from __future__ import annotations

import multiprocessing as mp
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from dpone_state import (
    RevisionConflictError,
    RunState,
    RunStateStorage,
    XMinState,
    XMinStateStorage,
    create_state_engine,
)
from tests.conftest import StateDB

PROCESSES = 4
SAVES_PER_PROCESS = 25
BIGQUERY_SAVES_PER_PROCESS = 6
KEYS = ["a", "b", "c"]
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _rounds(db: StateDB, usual: int, on_bigquery: int) -> int:
    """Fewer rounds on BigQuery (the emulator runs one statement of all clients at a time; a
    real project's DML takes seconds): more add minutes there, not contention, as the writers
    interleave on every key either way."""
    return on_bigquery if db.engine.dialect.name == "bigquery" else usual


def _writer(url: str, schema: str | None, worker: int, saves: int, start: Any, errors: Any) -> None:
    engine = create_state_engine(url)
    xmin = XMinStateStorage(engine, schema=schema)
    runs = RunStateStorage(engine, schema=schema)
    start.wait()
    try:
        for i in range(saves):
            for key in KEYS:
                xmin.save_state("public", key, XMinState(worker * 1000 + i))
            xmin.save_state("public", f"own_{worker}", XMinState(i))  # a key of its own
            recent = datetime.now(timezone.utc)
            runs.save_run_state(
                RunState("dag", "s", "t", "ts", "tt", "full", T0, "running", T0, rows_read=i)
            )
            runs.save_run_state(  # a run the prunes below race to delete
                RunState(f"dag_{worker}", "s", "t", "ts", "tt", "full", recent, "running", T0)
            )
            xmin.load_state("public", KEYS[i % len(KEYS)])
            runs.get_run_states_by_dag("dag", limit=5)
            if i % 5 == 0:
                runs.delete_old_states(days_to_keep=0)
    except Exception as error:
        errors.put(f"worker {worker}: {type(error).__name__}: {error}")
    finally:
        engine.dispose()


def _cas_writer(url: str, schema: str | None, expected: int, start: Any, results: Any) -> None:
    engine = create_state_engine(url)
    xmin = XMinStateStorage(engine, schema=schema)
    start.wait()
    try:
        xmin.save_state("public", "cas", XMinState(expected + 1), expected_revision=expected)
        results.put("won")
    except RevisionConflictError:
        results.put("conflict")
    except Exception as error:
        results.put(f"error: {type(error).__name__}: {error}")
    finally:
        engine.dispose()


def _run(target: Any, args_per_process: list[tuple[Any, ...]]) -> None:
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=target, args=args) for args in args_per_process]
    for proc in procs:
        proc.start()
    for proc in procs:
        # The BigQuery emulator serialises every statement of every client (and the suite runs
        # its two BigQuery backends): a worker there has taken up to ~115 s under load.
        proc.join(timeout=300)
        assert proc.exitcode == 0, f"worker exit code {proc.exitcode}"


def test_concurrent_writers_same_keys(db: StateDB) -> None:
    ctx = mp.get_context("spawn")
    start, errors = ctx.Barrier(PROCESSES), ctx.Queue()
    saves = _rounds(db, SAVES_PER_PROCESS, BIGQUERY_SAVES_PER_PROCESS)
    _run(_writer, [(db.url, db.schema, w, saves, start, errors) for w in range(PROCESSES)])
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert problems == []
    xmin = db.xmin()
    with db.engine.connect() as conn:
        rows = conn.execute(
            sa.select(xmin.table.c.source_table, sa.func.count()).group_by(
                xmin.table.c.source_table
            )
        ).all()
    own = [f"own_{w}" for w in range(PROCESSES)]
    assert sorted(rows) == sorted([(key, 1) for key in KEYS + own])
    for key in KEYS:
        state = xmin.load_state("public", key)
        # every save bumped the revision exactly once: none was lost
        assert state is not None and state.revision == PROCESSES * saves
    for key in own:
        state = xmin.load_state("public", key)
        assert state is not None
        assert (state.xmin_value, state.revision) == (saves - 1, saves)


def test_racing_compare_and_set_has_exactly_one_winner(db: StateDB) -> None:
    ctx = mp.get_context("spawn")
    for expected in (0, 1, 2):  # first insert, then updates
        start, results = ctx.Barrier(2), ctx.Queue()
        _run(_cas_writer, [(db.url, db.schema, expected, start, results) for _ in range(2)])
        outcomes = sorted(results.get(timeout=10) for _ in range(2))
        assert outcomes == ["conflict", "won"], outcomes
        state = db.xmin().load_state("public", "cas")
        assert state is not None and state.revision == expected + 1


BULK_KEYS = 60
BULK_ROUNDS = 10
BIGQUERY_BULK_ROUNDS = 4


def _bulk_writer(
    url: str, schema: str | None, reverse: bool, rounds: int, start: Any, errors: Any
) -> None:
    engine = create_state_engine(url)
    xmin = XMinStateStorage(engine, schema=schema)
    keys = [("public", f"bulk_{i:03d}") for i in range(BULK_KEYS)]
    if reverse:
        keys.reverse()
    start.wait()
    try:
        for r in range(rounds):
            xmin.save_states({key: XMinState(r) for key in keys})
    except Exception as error:
        errors.put(f"{type(error).__name__}: {error}")
    finally:
        engine.dispose()


def test_bulk_writers_locking_keys_in_opposite_orders_do_not_fail(db: StateDB) -> None:
    """Two multi-row upserts taking row locks in opposite orders can deadlock; the loser was
    rolled back whole, so the storage sends it again and no caller sees an error."""
    ctx = mp.get_context("spawn")
    start, errors = ctx.Barrier(2), ctx.Queue()
    rounds = _rounds(db, BULK_ROUNDS, BIGQUERY_BULK_ROUNDS)
    _run(
        _bulk_writer,
        [(db.url, db.schema, reverse, rounds, start, errors) for reverse in (False, True)],
    )
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert problems == []
    xmin = db.xmin()
    for i in (0, BULK_KEYS - 1):
        state = xmin.load_state("public", f"bulk_{i:03d}")
        assert state is not None and state.revision == 2 * rounds
