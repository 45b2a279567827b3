"""The bulk checkpoint path: `save_states` of 10k checkpoints against the raw driver's own bulk
upsert in one transaction (psycopg2 `execute_values`, sqlite3 `executemany`), and against a loop
of `save_state`; alternated in one run, the same 10k keys for every approach, medians."""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone

import psycopg2
import psycopg2.extras
import sqlalchemy as sa

from dpone_state import XMinState, XMinStateStorage, create_state_engine

PG_URL = os.environ.get(
    "DPONE_STATE_BENCH_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
COLUMNS = (
    "source_schema, source_table, xmin_value, is_initial, wraparound_detected, frozen_xid,"
    " extraction_identity, source_fingerprint, __dpone__updated_at, __dpone__loaded_at, revision"
)
ON_CONFLICT = (
    " ON CONFLICT (source_schema, source_table) DO UPDATE SET xmin_value = excluded.xmin_value,"
    " is_initial = excluded.is_initial, wraparound_detected = excluded.wraparound_detected,"
    " frozen_xid = excluded.frozen_xid, extraction_identity = excluded.extraction_identity,"
    " source_fingerprint = excluded.source_fingerprint,"
    " __dpone__updated_at = excluded.__dpone__updated_at,"
    " revision = {t}.revision + 1"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoints", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--loop", type=int, default=500, help="checkpoints in the save_state loop")
    parser.add_argument("--pg-url", default=PG_URL)
    args = parser.parse_args()
    targets = {"postgresql": args.pg_url, "sqlite": f"sqlite:///{tempfile.mkdtemp()}/bulk.db"}
    print(f"{args.checkpoints} checkpoints, median of {args.rounds} alternated rounds (seconds);"
          f" loop: {args.loop} single save_state calls, scaled to {args.checkpoints}")  # fmt: skip
    print(f"{'backend':<12}{'save_states':>12}{'raw bulk':>10}{'ratio':>7}{'loop':>9}"
          f"{'statements':>12}")  # fmt: skip
    for name, url in targets.items():
        bench_backend(name, url, args)


def bench_backend(name: str, url: str, args: argparse.Namespace) -> None:
    """One backend: alternated rounds of the three approaches, one line of figures."""
    engine = create_state_engine(url)
    schema = "dpone_bench_bulk" if name == "postgresql" else None
    if schema:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    xmin = XMinStateStorage(engine, schema=schema)
    xmin.create_tables()
    table = xmin.qualified_name
    if name == "postgresql":
        raw: object = psycopg2.connect(host="127.0.0.1", user="postgres",
                                       dbname=sa.make_url(url).database)  # fmt: skip
        sql = f"INSERT INTO {table} ({COLUMNS}) VALUES %s" + ON_CONFLICT.format(t=table)

        def raw_bulk(rows: list[tuple[object, ...]]) -> None:
            with raw.cursor() as cur:  # type: ignore[attr-defined]
                psycopg2.extras.execute_values(cur, sql, rows, page_size=500)
            raw.commit()  # type: ignore[attr-defined]

    else:
        raw = sqlite3.connect(sa.make_url(url).database, timeout=30)
        sql = f"INSERT INTO {table} ({COLUMNS}) VALUES ({', '.join('?' * 11)})" + (
            ON_CONFLICT.format(t=table)
        )

        def raw_bulk(rows: list[tuple[object, ...]]) -> None:
            with raw:  # type: ignore[attr-defined]  # one transaction
                raw.executemany(sql, rows)  # type: ignore[attr-defined]

    counted: list[str] = []
    timings: dict[str, list[float]] = {"lib": [], "raw": [], "loop": []}
    for r in range(args.rounds):
        states = {("public", f"t{i}"): XMinState(r * 100_000 + i) for i in range(args.checkpoints)}

        def raw_call(states: dict[tuple[str, str], XMinState] = states) -> None:
            now = datetime.now(timezone.utc).replace(tzinfo=None)
            raw_bulk([
                (s, t, st.xmin_value, st.is_initial, st.wraparound_detected, st.frozen_xid,
                 None, None, now, st.timestamp.replace(tzinfo=None), 1)
                for (s, t), st in states.items()
            ])  # fmt: skip

        def loop_call(states: dict[tuple[str, str], XMinState] = states) -> None:
            for (schema_name, table_name), state in list(states.items())[: args.loop]:
                xmin.save_state(schema_name, table_name, state)

        calls: dict[str, Callable[[], object]] = {
            "lib": lambda states=states: xmin.save_states(states),
            "raw": raw_call,
            "loop": loop_call,
        }
        order = list(calls) if r % 2 == 0 else list(reversed(calls))
        for key in order:
            start = time.perf_counter()
            calls[key]()
            took = time.perf_counter() - start
            timings[key].append(took * (args.checkpoints / args.loop if key == "loop" else 1))
    sa.event.listen(engine, "before_cursor_execute", lambda *a, c=counted: c.append(a[2]))
    xmin.save_states(states)
    lib, rawb, loop = (statistics.median(timings[k]) for k in ("lib", "raw", "loop"))
    print(f"{name:<12}{lib:>12.3f}{rawb:>10.3f}{lib / rawb:>6.2f}x{loop:>9.2f}"
          f"{len(counted):>12}")  # fmt: skip
    raw.close()  # type: ignore[attr-defined]
    if schema:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    engine.dispose()


if __name__ == "__main__":
    main()
