"""The bulk checkpoint path (`save_states`, one statement per 500 rows) against a loop of
single `save_state` calls, interleaved in one run, on PostgreSQL and SQLite."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import sqlalchemy as sa

from dpone_state import XMinState, XMinStateStorage, create_state_engine

PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoints", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    targets = {"postgresql": PG_URL, "sqlite": f"sqlite:///{tempfile.mkdtemp()}/bulk.db"}
    print(f"{args.checkpoints} checkpoints, median of {args.rounds} interleaved rounds")
    print(f"{'backend':<12}{'loop s':>9}{'bulk s':>9}{'speed-up':>10}{'stmts loop/bulk':>17}")
    for name, url in targets.items():
        engine = create_state_engine(url)
        schema = "dpone_bench_bulk" if name == "postgresql" else None
        if schema:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        xmin = XMinStateStorage(engine, schema=schema)
        xmin.create_tables()
        counted: list[str] = []
        sa.event.listen(engine, "before_cursor_execute", lambda *a, c=counted: c.append(a[2]))
        loop, bulk, stmts = [], [], {"loop": 0, "bulk": 0}
        for r in range(args.rounds):
            states = {
                ("public", f"t{i}"): XMinState(r * 10_000 + i) for i in range(args.checkpoints)
            }
            counted.clear()
            start = time.perf_counter()
            for (schema_name, table), state in states.items():
                xmin.save_state(schema_name, table, state)
            loop.append(time.perf_counter() - start)
            stmts["loop"] = len(counted)
            counted.clear()
            start = time.perf_counter()
            xmin.save_states(states)
            bulk.append(time.perf_counter() - start)
            stmts["bulk"] = len(counted)
        lo, bu = statistics.median(loop), statistics.median(bulk)
        print(f"{name:<12}{lo:>9.3f}{bu:>9.3f}{lo / bu:>9.1f}x{stmts['loop']:>10}/{stmts['bulk']}")
        if schema:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


if __name__ == "__main__":
    main()
