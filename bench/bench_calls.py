"""Per-call latency: dpone-state vs hand-written SQL on the raw driver vs ORM session.merge.

All three approaches run interleaved, call by call, in one process, so machine noise hits
them alike; medians and their ratios are printed. Run with `make bench`.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg2
import sqlalchemy as sa
from sqlalchemy.orm import Session, registry

from dpone_state import RunState, RunStateStorage, XMinState, XMinStateStorage, create_state_engine

PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
SCHEMA = "dpone_bench"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)

XMIN_UPSERT = (
    "INSERT INTO {t} (source_schema, source_table, xmin_value, is_initial, wraparound_detected,"
    " frozen_xid, __dpone__updated_at, __dpone__loaded_at, revision)"
    " VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, 1)"
    " ON CONFLICT (source_schema, source_table) DO UPDATE SET xmin_value = excluded.xmin_value,"
    " is_initial = excluded.is_initial, wraparound_detected = excluded.wraparound_detected,"
    " frozen_xid = excluded.frozen_xid, __dpone__updated_at = excluded.__dpone__updated_at,"
    " revision = {t}.revision + 1"
)
XMIN_LOAD = (
    "SELECT xmin_value, __dpone__loaded_at, is_initial, wraparound_detected, frozen_xid, revision"
    " FROM {t} WHERE source_schema = {p} AND source_table = {p}"
)
RUN_COLUMNS = (
    "dag_id, source_schema, source_table, target_schema, target_table, load_strategy,"
    " execution_date, state, started_at, ended_at, duration_min, error_message, rows_read,"
    " rows_written, rows_updated, rows_deleted, process_name, __dpone__loaded_at,"
    " __dpone__updated_at"
)
RUN_UPSERT = (
    "INSERT INTO {t} (" + RUN_COLUMNS + ") VALUES (" + ", ".join(["{p}"] * 19) + ")"
    " ON CONFLICT (dag_id, execution_date) DO UPDATE SET state = excluded.state,"
    " ended_at = excluded.ended_at, duration_min = excluded.duration_min,"
    " error_message = excluded.error_message, rows_read = excluded.rows_read,"
    " rows_written = excluded.rows_written, rows_updated = excluded.rows_updated,"
    " rows_deleted = excluded.rows_deleted, load_strategy = excluded.load_strategy,"
    " __dpone__updated_at = excluded.__dpone__updated_at"
)
RUN_LIST = (
    "SELECT " + RUN_COLUMNS + " FROM {t} WHERE dag_id = {p} ORDER BY execution_date DESC LIMIT {p}"
)


def run_params(i: int, naive: bool) -> tuple[Any, ...]:
    when = (T0 + timedelta(days=i % 20)).replace(tzinfo=None) if naive else T0
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    return ("dag", "s", "t", "ts", "tt", "full", when, "success", when, None, 1.5, None,
            i, i, 0, 0, None, now, now)  # fmt: skip


def xmin_params(i: int) -> tuple[Any, ...]:
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    return ("s", "r", i, False, False, None, now, T0.replace(tzinfo=None))


def bench(target: str, rounds: int) -> list[tuple[str, float, float, float, float, float]]:
    if target == "postgresql":
        url = PG_URL
        raw = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test")
        raw_ac = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test")
        raw_ac.autocommit = True
        placeholder, xmin_t, run_t = "%s", f"{SCHEMA}.etl_xmin_state", f"{SCHEMA}.etl_run_state"
        schema: str | None = SCHEMA
    else:
        path = tempfile.mkdtemp() + "/bench.db"
        url = f"sqlite:///{path}"
        raw = sqlite3.connect(path, timeout=30)
        raw.execute("PRAGMA journal_mode=WAL")
        raw_ac = sqlite3.connect(path, timeout=30, isolation_level=None)
        placeholder, xmin_t, run_t = "?", "etl_xmin_state", "etl_run_state"
        schema = None
    engine = create_state_engine(url)
    if target == "postgresql":
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
    xmin = XMinStateStorage(engine, schema=schema)
    runs = RunStateStorage(engine, schema=schema)
    xmin.create_tables()
    runs.create_tables()
    mapper = registry()

    class XMinRow:
        pass

    class RunRow:
        pass

    # The ORM maps tables of its own (same names), so it never touches the storages' tables.
    orm_xmin_table = XMinStateStorage(engine, schema=schema).table
    orm_run_table = RunStateStorage(engine, schema=schema).table
    mapper.map_imperatively(XMinRow, orm_xmin_table)
    mapper.map_imperatively(RunRow, orm_run_table, exclude_properties=["id"])
    orm_engine = create_state_engine(url)

    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    def raw_ac_exec(sql: str, params: tuple[Any, ...], fetch: bool) -> None:
        """The same SQL on the raw driver in autocommit: one round trip, as dpone-state."""
        cur = raw_ac.cursor()
        cur.execute(sql.format(t=xmin_t if "xmin" in sql else run_t, p=placeholder), params)
        if fetch:
            cur.fetchall()
        cur.close()

    def raw_exec(sql: str, params: tuple[Any, ...], fetch: bool) -> None:
        cur = raw.cursor()
        cur.execute(sql.format(t=xmin_t if "xmin" in sql else run_t, p=placeholder), params)
        if fetch:
            cur.fetchall()
            raw.rollback()
        else:
            raw.commit()
        cur.close()

    core_engine = create_state_engine(url)

    def core_exec(sql: str, params: tuple[Any, ...], fetch: bool) -> None:
        """The same hand-written SQL through SQLAlchemy Core: the floor any Core library pays."""
        text = sql.format(t=xmin_t if "xmin" in sql else run_t, p=placeholder)
        if fetch:
            with core_engine.connect() as conn:
                conn.exec_driver_sql(text, params).all()
        else:
            with core_engine.begin() as conn:
                conn.exec_driver_sql(text, params)

    def orm_merge(obj: Any) -> None:
        with Session(orm_engine) as session:
            session.merge(obj)
            session.commit()

    def orm_xmin(i: int) -> None:
        row = XMinRow()
        now = datetime.now(timezone.utc)
        for key, value in dict(source_schema="s", source_table="o", xmin_value=i,
                               is_initial=False, wraparound_detected=False, frozen_xid=None,
                               revision=i, __dpone__loaded_at=now,
                               __dpone__updated_at=now).items():  # fmt: skip
            setattr(row, key, value)
        orm_merge(row)

    def orm_run(i: int) -> None:
        row = RunRow()
        for name, value in zip(RUN_COLUMNS.split(", "), run_params(i, naive=False), strict=True):
            setattr(row, name.strip(), value)
        orm_merge(row)

    def orm_load(_: int) -> None:
        with Session(orm_engine) as session:
            table = orm_xmin_table
            session.execute(sa.select(table).where(table.c.source_table == "o")).all()

    def orm_list(_: int) -> None:
        with Session(orm_engine) as session:
            table = orm_run_table
            session.execute(
                sa.select(table).where(table.c.dag_id == "dag").order_by(
                    table.c.execution_date.desc()).limit(100)
            ).all()  # fmt: skip

    run = RunState("dag", "s", "t", "ts", "tt", "full", T0, "success", T0, duration_min=1.5)
    cases: dict[str, dict[str, Callable[[int], None]]] = {
        "save_state": {
            "lib": lambda i: xmin.save_state("s", "t", XMinState(i)),
            "raw": lambda i: raw_exec(XMIN_UPSERT, xmin_params(i), False),
            "rawac": lambda i: raw_ac_exec(XMIN_UPSERT, xmin_params(i), False),
            "core": lambda i: core_exec(XMIN_UPSERT, xmin_params(i), False),
            "orm": orm_xmin,
        },
        "load_state": {
            "lib": lambda i: xmin.load_state("s", "t"),
            "raw": lambda i: raw_exec(XMIN_LOAD, ("s", "r"), True),
            "rawac": lambda i: raw_ac_exec(XMIN_LOAD, ("s", "r"), True),
            "core": lambda i: core_exec(XMIN_LOAD, ("s", "r"), True),
            "orm": orm_load,
        },
        "save_run_state": {
            "lib": lambda i: runs.save_run_state(run),
            "raw": lambda i: raw_exec(RUN_UPSERT, run_params(0, naive=True), False),
            "rawac": lambda i: raw_ac_exec(RUN_UPSERT, run_params(0, naive=True), False),
            "core": lambda i: core_exec(RUN_UPSERT, run_params(0, naive=True), False),
            "orm": orm_run,
        },
        "get_run_states_by_dag": {
            "lib": lambda i: runs.get_run_states_by_dag("dag"),
            "raw": lambda i: raw_exec(RUN_LIST, ("dag", 100), True),
            "rawac": lambda i: raw_ac_exec(RUN_LIST, ("dag", 100), True),
            "core": lambda i: core_exec(RUN_LIST, ("dag", 100), True),
            "orm": orm_list,
        },
    }
    # Warm-up (and 20 runs to list), counting the statements of every lib call; the counter
    # is removed before timing, since an engine with listeners takes a slower path.
    sa.event.listen(engine, "before_cursor_execute", count)
    for i in range(20):
        runs.save_run_state(RunState("dag", "s", "t", "ts", "tt", "full",
                                     T0 + timedelta(days=i), "success", T0))  # fmt: skip
        for name, approaches in cases.items():
            for key, call in approaches.items():
                before = len(statements)
                call(i)
                if key == "lib":
                    assert len(statements) - before == 1, f"{name}: not one statement"
    sa.event.remove(engine, "before_cursor_execute", count)
    results = []
    for name, approaches in cases.items():
        timings: dict[str, list[float]] = {key: [] for key in approaches}
        for i in range(rounds):
            for key, call in approaches.items():
                start = time.perf_counter()
                call(i)
                timings[key].append(time.perf_counter() - start)
        medians = {key: statistics.median(values) for key, values in timings.items()}
        results.append(
            (
                name,
                medians["lib"],
                medians["raw"],
                medians["rawac"],
                medians["core"],
                medians["orm"],
            )
        )
    if target == "postgresql":
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--backend", action="append", choices=["postgresql", "sqlite"])
    args = parser.parse_args()
    for target in args.backend or ["postgresql", "sqlite"]:
        print(f"\n{target}: median µs per call over {args.rounds} interleaved rounds "
              "(lib = dpone-state with its default engine options)")  # fmt: skip
        print(f"{'call':<22}{'lib':>7}{'raw':>7}{'raw-ac':>7}{'core':>7}{'orm':>7}"
              f"{'lib/raw':>9}{'lib/rawac':>10}{'core/raw':>9}{'orm/raw':>9}")  # fmt: skip
        for name, lib, raw, rawac, core, orm in bench(target, args.rounds):
            print(f"{name:<22}{lib * 1e6:7.0f}{raw * 1e6:7.0f}{rawac * 1e6:7.0f}{core * 1e6:7.0f}"
                  f"{orm * 1e6:7.0f}{lib / raw:9.2f}{lib / rawac:10.2f}{core / raw:9.2f}"
                  f"{orm / raw:9.2f}")  # fmt: skip
        print("statements per lib call: 1 (checked on 20 warm-up calls of each method)")


if __name__ == "__main__":
    main()
