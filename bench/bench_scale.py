"""Scale: run tables of 10k, 100k and 1M rows on PostgreSQL; pruning half of 1M rows.

Shows the query plans of `get_run_states_by_dag` and of pruning, read latency per size (it
should stay flat), batched pruning (exact counts, the longest single batch), and
`delete_old_states(batch_size=10_000)` removing 500k of 1M rows against a hand-written batch
loop on the raw driver (`ctid` on PostgreSQL, `rowid` on SQLite, `DELETE … LIMIT` on MariaDB
with `--mysql-url`), alternated and repeated.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg2
import pymysql
import sqlalchemy as sa

from dpone_state import RunStateStorage, create_state_engine

PG_URL = os.environ.get(
    "DPONE_STATE_BENCH_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("DPONE_STATE_BENCH_MYSQL_URL")
SCHEMA = "dpone_bench_scale"
DAGS = 100


def explain(engine: sa.Engine, statement: Any, params: dict[str, Any]) -> list[str]:
    compiled = statement.compile(dialect=engine.dialect)
    bound = compiled.construct_params(params)
    with engine.connect() as conn:
        processed = {
            key: compiled.binds[key].type.bind_processor(engine.dialect)(value)  # type: ignore[misc]
            if compiled.binds[key].type.bind_processor(engine.dialect)
            else value
            for key, value in bound.items()
        }
        args: Any = processed  # positional (psycopg2 binds %s): in the statement's order
        if compiled.positional:
            args = tuple(processed[name] for name in compiled.positiontup or ())
        rows = conn.exec_driver_sql("EXPLAIN " + str(compiled), args).all()
    return [row[0] for row in rows]


def fill(engine: sa.Engine, runs: RunStateStorage, rows: int, now: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(sa.delete(runs.table))
        conn.exec_driver_sql(
            f"INSERT INTO {SCHEMA}.etl_run_state (dag_id, source_schema, source_table,"
            " target_schema, target_table, load_strategy, state, execution_date, started_at)"
            " SELECT 'dag_' || mod(i, %(dags)s), 'public', 't', 'dwh', 't', 'full', 'success',"
            " %(now)s - interval '30 minutes' - (i / %(dags)s) * interval '1 hour', %(now)s"
            " FROM generate_series(0, %(n)s - 1) AS i",
            {"dags": DAGS, "n": rows, "now": now.replace(tzinfo=None)},
        )
        conn.exec_driver_sql(f"ANALYZE {SCHEMA}.etl_run_state")


RAW_PRUNE = {
    "postgresql": "DELETE FROM {t} WHERE ctid IN (SELECT ctid FROM {t} WHERE execution_date < %s"
    " LIMIT %s)",
    "sqlite": "DELETE FROM {t} WHERE rowid IN (SELECT rowid FROM {t} WHERE execution_date < ?"
    " LIMIT ?)",
    # MySQL/MariaDB refuse LIMIT in an IN subquery; a single-table DELETE takes it natively.
    "mysql": "DELETE FROM {t} WHERE execution_date < %s LIMIT %s",
}
SQLITE_FILL = (
    "WITH RECURSIVE i(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM i WHERE n < ? - 1)"
    " INSERT INTO etl_run_state (dag_id, source_schema, source_table, target_schema,"
    " target_table, load_strategy, state, execution_date, started_at)"
    " SELECT 'dag_' || (n % ?), 'public', 't', 'dwh', 't', 'full', 'success',"
    " strftime('%Y-%m-%d %H:%M:%f', ?, '-30 minutes', '-' || (n / ?) || ' hours'), ? FROM i"
)
# MariaDB's sequence engine (seq_0_to_N) numbers the rows.
MYSQL_FILL = (
    "INSERT INTO {t} (dag_id, source_schema, source_table, target_schema, target_table,"
    " load_strategy, state, execution_date, started_at)"
    " SELECT CONCAT('dag_', seq MOD %s), 'public', 't', 'dwh', 't', 'full', 'success',"
    " %s - INTERVAL 30 MINUTE - INTERVAL (seq DIV %s) HOUR, %s FROM seq_0_to_{last}"
)


def prune_vs_raw(target: str, url: str, rows: int, batch: int, rounds: int) -> None:
    """Half of ``rows`` pruned in batches: dpone-state against a raw driver loop, alternated."""
    engine = create_state_engine(url)
    schema = None if target == "sqlite" else SCHEMA
    runs = RunStateStorage(engine, schema=schema)
    runs.create_tables()
    now = datetime.now(timezone.utc)
    keep_days = int(rows // DAGS / 2 / 24)
    cutoff = now - timedelta(days=keep_days)
    batches: list[float] = []
    started: dict[int, float] = {}

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _start(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        started[id(cursor)] = time.perf_counter()

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _end(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            batches.append(time.perf_counter() - started.pop(id(cursor)))

    table = runs.qualified_name
    if target == "postgresql":
        raw: Any = psycopg2.connect(host="127.0.0.1", user="postgres",
                                    dbname=sa.make_url(url).database)  # fmt: skip
        raw.autocommit = True
    elif target == "mysql":
        u = sa.make_url(url)
        raw = pymysql.connect(host=u.host, port=u.port or 3306, user=u.username,
                              password=u.password or "", database=u.database,
                              autocommit=True)  # fmt: skip
    else:
        raw = sqlite3.connect(sa.make_url(url).database, isolation_level=None, timeout=30)

    def refill() -> int:
        if target == "postgresql":
            fill(engine, runs, rows, now)
        elif target == "mysql":
            stamp = now.replace(tzinfo=None)
            with raw.cursor() as cur:
                cur.execute(f"DELETE FROM {table}")
                cur.execute(MYSQL_FILL.format(t=table, last=rows - 1), (DAGS, stamp, DAGS, stamp))
                cur.execute(f"ANALYZE TABLE {table}")
        else:
            stamp = now.replace(tzinfo=None).isoformat(" ")
            raw.execute("DELETE FROM etl_run_state")
            raw.execute(SQLITE_FILL, (rows, DAGS, stamp, DAGS, stamp))
            raw.execute("ANALYZE")
        with engine.connect() as conn:
            return int(conn.execute(
                sa.select(sa.func.count()).where(runs.table.c.execution_date < cutoff)
            ).scalar_one())  # fmt: skip

    def lib() -> tuple[int, list[float]]:
        batches.clear()
        return runs.delete_old_states(keep_days, batch_size=batch), list(batches)

    def hand_written() -> tuple[int, list[float]]:
        sql = RAW_PRUNE[target].format(t=table)
        bound = cutoff.replace(tzinfo=None)
        param: Any = bound.isoformat(" ") if target == "sqlite" else bound
        deleted, times = 0, []
        while True:
            start = time.perf_counter()
            cur = raw.cursor()
            cur.execute(sql, (param, batch))
            times.append(time.perf_counter() - start)
            deleted += cur.rowcount
            if cur.rowcount < batch:
                return deleted, times

    totals: dict[str, list[float]] = {"lib": [], "raw": []}
    longest: dict[str, list[float]] = {"lib": [], "raw": []}
    for _ in range(rounds):
        for name, prune in (("lib", lib), ("raw", hand_written)):
            expected = refill()
            start = time.perf_counter()
            deleted, times = prune()
            totals[name].append(time.perf_counter() - start)
            longest[name].append(max(times))
            assert deleted == expected, (name, deleted, expected)
    lib_s, raw_s = statistics.median(totals["lib"]), statistics.median(totals["raw"])
    print(f"{target}: {expected} of {rows} rows pruned in batches of {batch}, median of "
          f"{rounds} alternated rounds: dpone-state {lib_s:.2f} s (longest batch "
          f"{statistics.median(longest['lib']) * 1e3:.1f} ms), hand-written loop {raw_s:.2f} s "
          f"(longest {statistics.median(longest['raw']) * 1e3:.1f} ms): {lib_s / raw_s:.2f}x")  # fmt: skip
    if runs.backend_row.prune_batches == "delete_batch":  # one DeleteBatch statement a batch
        one_statement = runs._prune_statements(by_dag=False).batch_of(batch)
        compiled = one_statement.compile(dialect=engine.dialect)
        bound = cutoff.replace(tzinfo=None)
        value: Any = bound.isoformat(" ") if target == "sqlite" else bound
        cur = raw.cursor()
        if target == "sqlite":
            cur.execute(f"EXPLAIN QUERY PLAN {compiled}", (value,))
            plan = [row[3] for row in cur.fetchall()]
        else:
            cur.execute(f"EXPLAIN {compiled}", {"p_cutoff": value})
            plan = [" ".join(str(v) for v in row) for row in cur.fetchall()]
        sql = " ".join(str(compiled).split())
        print(f"{target}: one dpone-state batch: {sql}\n  " + "\n  ".join(plan))
    raw.close()
    if target == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    elif target == "mysql":
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {SCHEMA}")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--prune-rows", type=int, default=1_000_000)
    parser.add_argument("--prune-rounds", type=int, default=2)
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--mysql-url", default=MYSQL_URL, help="MariaDB: prune it too")
    args = parser.parse_args()
    prune_vs_raw("postgresql", args.pg_url, args.prune_rows, args.batch_size, args.prune_rounds)
    sqlite_url = f"sqlite:///{tempfile.mkdtemp()}/scale.db"
    prune_vs_raw("sqlite", sqlite_url, args.prune_rows, args.batch_size, args.prune_rounds)
    if args.mysql_url:
        prune_vs_raw("mysql", args.mysql_url, args.prune_rows, args.batch_size, args.prune_rounds)
    engine = create_state_engine(args.pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    runs = RunStateStorage(engine, schema=SCHEMA)
    runs.create_tables()
    now = datetime.now(timezone.utc)
    deletes: list[float] = []
    started: dict[int, float] = {}

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _start(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        started[id(cursor)] = time.perf_counter()

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _end(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            deletes.append(time.perf_counter() - started.pop(id(cursor)))

    print(f"{'rows':>9}{'read ms':>9}{'pruned':>9}{'expected':>9}{'batches':>8}"
          f"{'max batch ms':>13}{'prune s':>9}")  # fmt: skip
    plans: dict[int, tuple[list[str], list[str]]] = {}
    for size in (int(s) for s in args.sizes.split(",")):
        fill(engine, runs, size, now)
        timings = []
        for i in range(60):
            start = time.perf_counter()
            runs.get_run_states_by_dag(f"dag_{i % DAGS}", limit=100)
            timings.append(time.perf_counter() - start)
        read_ms = statistics.median(timings[10:]) * 1e3
        hours = size // DAGS
        keep_days = int(hours * 0.9 / 24)  # prune about the oldest 10%
        cutoff = now - timedelta(days=keep_days)
        with engine.connect() as conn:
            expected = conn.execute(
                sa.select(sa.func.count()).where(runs.table.c.execution_date < cutoff)
            ).scalar_one()
        plans[size] = (
            explain(engine, runs._list.limit(100), {"p_dag_id": "dag_7"}),
            explain(
                engine,
                runs._prune_statements(by_dag=False).up_to_boundary,
                {"p_cutoff": cutoff, "p_boundary_date": cutoff, "p_boundary_dag_id": "dag_7"},
            ),
        )
        deletes.clear()
        start = time.perf_counter()
        pruned = runs.delete_old_states(keep_days, batch_size=args.batch_size)
        took = time.perf_counter() - start
        print(f"{size:>9}{read_ms:>9.2f}{pruned:>9}{expected:>9}{len(deletes):>8}"
              f"{max(deletes) * 1e3:>13.1f}{took:>9.2f}")  # fmt: skip
        assert pruned == expected, "pruning must report the exact count"
    for size, (read_plan, prune_plan) in plans.items():
        print(f"\nplan of get_run_states_by_dag at {size} rows:")
        print("\n".join("  " + line for line in read_plan))
        print(f"plan of one prune batch at {size} rows:")
        print("\n".join("  " + line for line in prune_plan))
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


if __name__ == "__main__":
    main()
