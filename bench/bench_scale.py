"""Scale on PostgreSQL: run tables of 10k, 100k and 1M rows.

Shows the query plans of `get_run_states_by_dag` and of pruning, read latency per size (it
should stay flat), and batched pruning: exact counts and the longest single batch.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

from dpone_state import RunStateStorage, create_state_engine

PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
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
        rows = conn.exec_driver_sql("EXPLAIN " + str(compiled), processed).all()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--batch-size", type=int, default=10_000)
    args = parser.parse_args()
    engine = create_state_engine(PG_URL)
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
                runs._prune_batch,
                {"p_cutoff": cutoff, "p_boundary_date": cutoff, "p_dag_id": "dag_7"},
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
