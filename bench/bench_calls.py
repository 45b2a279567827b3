"""Per-call latency: dpone-state against the raw driver in autocommit (the one-round-trip floor).

Approaches run interleaved call by call in one process, in a shuffled order each round, so the
noise of a shared machine hits them alike; each run reports medians, and the figures printed
are the medians of ``--runs`` runs. Every write approach writes the same key (one row), so page
effects of a growing table never favour one of them. Run with ``make bench``.

- ``lib``: dpone-state with its default engine (``create_state_engine``);
- ``raw``: the very statement dpone-state sends (its SQL text, compiled once) on the raw driver
  (psycopg2 / sqlite3) in autocommit on one connection, the values of each call put in a
  prepared parameter set: the one-round-trip floor of that statement;
- ``hand``: a simpler hand-written statement of the same call (no tombstone or revision
  arithmetic, no ``revision >= 0`` filter) on the same raw connection: what the statement's
  extra server work costs;
- ``core``: the hand-written SQL through SQLAlchemy Core (``exec_driver_sql`` on a pooled
  connection), in a transaction: what a library on SQLAlchemy's ``Connection`` pays at least.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg2
import sqlalchemy as sa

from dpone_state import RunState, RunStateStorage, XMinState, XMinStateStorage, create_state_engine

PG_URL = os.environ.get(
    "DPONE_STATE_BENCH_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
SCHEMA = "dpone_bench"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
PAGE = 20

XMIN_UPSERT = (
    "INSERT INTO {t} (source_schema, source_table, xmin_value, is_initial, wraparound_detected,"
    " frozen_xid, extraction_identity, source_fingerprint, __dpone__updated_at,"
    " __dpone__loaded_at, revision) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, 1)"
    " ON CONFLICT (source_schema, source_table) DO UPDATE SET xmin_value = excluded.xmin_value,"
    " is_initial = excluded.is_initial, wraparound_detected = excluded.wraparound_detected,"
    " frozen_xid = excluded.frozen_xid, extraction_identity = excluded.extraction_identity,"
    " source_fingerprint = excluded.source_fingerprint,"
    " __dpone__updated_at = excluded.__dpone__updated_at,"
    " revision = {t}.revision + 1"
)
XMIN_LOAD = (
    "SELECT xmin_value, __dpone__loaded_at, is_initial, wraparound_detected, frozen_xid, revision,"
    " extraction_identity, source_fingerprint FROM {t}"
    " WHERE source_schema = {p} AND source_table = {p}"
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


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def run_params() -> tuple[Any, ...]:
    when, now = T0.replace(tzinfo=None), _now()
    return ("dag", "s", "t", "ts", "tt", "full", when, "success", when, None, 1.5, None,
            1, 1, 0, 0, None, now, now)  # fmt: skip


def xmin_params(i: int) -> tuple[Any, ...]:
    return ("s", "t", i, False, False, None, None, None, _now(), T0.replace(tzinfo=None))


Case = dict[str, Callable[[int], object]]


class SameSql:
    """The statement dpone-state sends for one call, compiled once by the library; a call of
    the raw driver sends it with a copy of the parameters, the varying ones replaced."""

    def __init__(self, storage: Any, statement: Any, params: dict[str, Any]) -> None:
        plan = storage._runner.plan(statement)  # the library's own compiled statement
        assert plan is not None, "the direct path compiles every storage statement"
        self.sql: str = plan.sql
        self.template: Any = plan.parameters(params)
        slots = [
            (i if plan.names is None else plan.names[i], key)
            for i, (key, _, _, _) in enumerate(plan.order)
        ]
        self.where: dict[str, Any] = {
            key: [slot for slot, k in slots if k == key] for key in params
        }

    def params(self, **changes: Any) -> Any:
        if isinstance(self.template, tuple):
            values = list(self.template)
            for key, value in changes.items():
                for index in self.where[key]:
                    values[index] = value
            return tuple(values)
        named = dict(self.template)
        for key, value in changes.items():
            for name in self.where[key]:
                named[name] = value
        return named


def cases(target: str, url: str) -> tuple[dict[str, Case], Callable[[], None]]:
    """The calls of every approach, and a cleanup."""
    if target == "postgresql":
        raw = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=sa.make_url(url).database)
        raw.autocommit = True
        placeholder, xmin_t, run_t = "%s", f"{SCHEMA}.etl_xmin_state", f"{SCHEMA}.etl_run_state"
        schema: str | None = SCHEMA
    else:
        path = sa.make_url(url).database
        raw = sqlite3.connect(path, timeout=30, isolation_level=None)
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
    for day in range(PAGE):
        runs.save_run_state(RunState("dag", "s", "t", "ts", "tt", "full",
                                     T0 - timedelta(days=day), "success", T0))  # fmt: skip
    core_engine = create_state_engine(url)
    now = datetime.now(timezone.utc)
    stamp: Callable[[], object] = (
        (lambda: str(_now())) if target == "sqlite" else _now  # what the column types send
    )
    xmin_key = {"p_source_schema": "s", "p_source_table": "t"}
    same = {
        "save_state": SameSql(xmin, xmin._save, {
            **xmin_key, "p_xmin_value": 0, "p_is_initial": False,
            "p_wraparound_detected": False, "p_frozen_xid": None,
            "p_extraction_identity": None, "p_source_fingerprint": None,
            "p___dpone__updated_at": now, "p___dpone__loaded_at": now}),
        "load_state": SameSql(xmin, xmin._load, xmin_key),
        "page": SameSql(runs, runs._page(runs._list, PAGE), {"p_dag_id": "dag"}),
    }  # fmt: skip
    run0 = RunState("dag", "s", "t", "ts", "tt", "full", T0, "success", T0, duration_min=1.5,
                    rows_read=1, rows_written=1, rows_updated=0, rows_deleted=0)  # fmt: skip
    run_params_lib = {f"p_{n}": getattr(run0, n) for n in runs._fields if n != "id"}
    run_params_lib.update(p_state="success", p___dpone__loaded_at=now, p___dpone__updated_at=now)
    same["save_run_state"] = SameSql(runs, runs._upsert, run_params_lib)
    sql = {
        name: text.format(t=xmin_t if "XMIN" in name else run_t, p=placeholder)
        for name, text in (
            ("XMIN_UPSERT", XMIN_UPSERT),
            ("XMIN_LOAD", XMIN_LOAD),
            ("RUN_UPSERT", RUN_UPSERT),
            ("RUN_LIST", RUN_LIST),
        )
    }

    def raw_exec(name: str, params: tuple[Any, ...], fetch: bool) -> None:
        cur = raw.cursor()
        cur.execute(sql[name], params)
        if fetch:
            cur.fetchall()
        cur.close()

    def same_exec(name: str, fetch: bool, **changes: Any) -> None:
        call = same[name]
        cur = raw.cursor()
        cur.execute(call.sql, call.params(**changes))
        if fetch:
            cur.fetchall()
        cur.close()

    def core_exec(name: str, params: tuple[Any, ...], fetch: bool) -> None:
        if fetch:
            with core_engine.connect() as conn:
                conn.exec_driver_sql(sql[name], params).all()
        else:
            with core_engine.begin() as conn:
                conn.exec_driver_sql(sql[name], params)

    run = RunState("dag", "s", "t", "ts", "tt", "full", T0, "success", T0, duration_min=1.5,
                   rows_read=1, rows_written=1, rows_updated=0, rows_deleted=0)  # fmt: skip
    table: dict[str, Case] = {
        "save_state": {
            "lib": lambda i: xmin.save_state("s", "t", XMinState(i)),
            "raw": lambda i: same_exec(
                "save_state", False, p_xmin_value=i, p___dpone__updated_at=stamp()
            ),
            "hand": lambda i: raw_exec("XMIN_UPSERT", xmin_params(i), False),
            "core": lambda i: core_exec("XMIN_UPSERT", xmin_params(i), False),
        },
        "load_state": {
            "lib": lambda i: xmin.load_state("s", "t"),
            "raw": lambda i: same_exec("load_state", True),
            "hand": lambda i: raw_exec("XMIN_LOAD", ("s", "t"), True),
            "core": lambda i: core_exec("XMIN_LOAD", ("s", "t"), True),
        },
        "save_run_state": {
            "lib": lambda i: runs.save_run_state(run),
            "raw": lambda i: same_exec("save_run_state", False, p___dpone__updated_at=stamp()),
            "hand": lambda i: raw_exec("RUN_UPSERT", run_params(), False),
            "core": lambda i: core_exec("RUN_UPSERT", run_params(), False),
        },
        f"get_run_states_by_dag ({PAGE} rows)": {
            "lib": lambda i: runs.get_run_states_by_dag("dag", limit=PAGE),
            "raw": lambda i: same_exec("page", True),
            "hand": lambda i: raw_exec("RUN_LIST", ("dag", PAGE), True),
            "core": lambda i: core_exec("RUN_LIST", ("dag", PAGE), True),
        },
    }
    assert len(runs.get_run_states_by_dag("dag", limit=PAGE)) == PAGE

    def cleanup() -> None:
        raw.close()
        if target == "postgresql":
            with engine.begin() as conn:
                conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        engine.dispose()
        core_engine.dispose()

    return table, cleanup


def one_run(table: dict[str, Case], rounds: int) -> dict[str, dict[str, float]]:
    """Medians (seconds) per call and approach: each round runs every approach once, shuffled."""
    medians: dict[str, dict[str, float]] = {}
    for name, approaches in table.items():
        keys = list(approaches)
        timings: dict[str, list[float]] = {key: [] for key in keys}
        for i in range(rounds):
            random.shuffle(keys)
            for key in keys:
                call = approaches[key]
                start = time.perf_counter()
                call(i)
                timings[key].append(time.perf_counter() - start)
        medians[name] = {key: statistics.median(values) for key, values in timings.items()}
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--backend", action="append", choices=["postgresql", "sqlite"])
    parser.add_argument("--pg-url", default=PG_URL)
    args = parser.parse_args()
    for target in args.backend or ["postgresql", "sqlite"]:
        url = args.pg_url if target == "postgresql" else f"sqlite:///{tempfile.mkdtemp()}/b.db"
        table, cleanup = cases(target, url)
        try:
            for approaches in table.values():  # warm-up: connections, compiled statements
                for call in approaches.values():
                    for i in range(20):
                        call(i)
            runs = [one_run(table, args.rounds) for _ in range(args.runs)]
        finally:
            cleanup()
        print(f"\n{target}: µs per call, median of {args.runs} runs x {args.rounds} shuffled "
              "interleaved rounds; ratios are medians of the per-run ratios")  # fmt: skip
        print(f"{'call':<34}{'lib':>7}{'raw':>7}{'hand':>7}{'core':>7}"
              f"{'lib/raw':>9}{'hand/raw':>9}{'core/raw':>9}")  # fmt: skip
        for name in table:
            med = {k: statistics.median(r[name][k] for r in runs) * 1e6 for k in runs[0][name]}
            ratio = {
                k: statistics.median(r[name][k] / r[name]["raw"] for r in runs)
                for k in ("lib", "hand", "core")
            }
            print(f"{name:<34}{med['lib']:7.0f}{med['raw']:7.0f}{med['hand']:7.0f}"
                  f"{med['core']:7.0f}{ratio['lib']:9.2f}{ratio['hand']:9.2f}"
                  f"{ratio['core']:9.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
