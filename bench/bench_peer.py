"""The peer: Meltano's state store (its system-database backend) beside dpone-state and the raw
driver, on the same PostgreSQL server, interleaved call by call in a shuffled order.

Runs in a virtual environment of its own (Meltano pins its own dependencies): `make bench-peer`
builds it (`.venv-peer`: meltano, psycopg2-binary, this package) and runs this file there.

- ``lib``: dpone-state's `save_state` / `load_state` (one checkpoint, one key);
- ``raw``: the same upsert / select on psycopg2 in autocommit (the one-round-trip floor);
- ``meltano``: `DBStateStoreManager.set` / `.get` of a complete state holding the same values,
  on an engine with SQLAlchemy's default pool;
- ``meltano-nullpool``: the same on the NullPool engine Meltano creates itself (a new server
  connection per session).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone

import psycopg2
import sqlalchemy as sa
from meltano.core.job_state import JobState
from meltano.core.state_store.base import MeltanoState
from meltano.core.state_store.db import DBStateStoreManager
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from dpone_state import XMinState, XMinStateStorage, create_state_engine

PG_URL = os.environ.get(
    "DPONE_STATE_BENCH_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
SCHEMA = "dpone_bench_peer"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pg-url", default=PG_URL)
    args = parser.parse_args()
    url = sa.make_url(args.pg_url)
    engine = create_state_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.exec_driver_sql(f"CREATE SCHEMA {SCHEMA}")
    xmin = XMinStateStorage(engine, schema=SCHEMA)
    xmin.create_tables()
    # Meltano's `state` table (its system database's model), in the benchmark's schema.
    meltano_url = url.set(query={"options": f"-csearch_path={SCHEMA}"})
    pooled = sa.create_engine(meltano_url)
    nullpool = sa.create_engine(meltano_url, poolclass=NullPool)
    JobState.__table__.create(pooled)
    raw = psycopg2.connect(host=url.host, port=url.port, user=url.username, dbname=url.database)
    raw.autocommit = True
    table = f"{SCHEMA}.etl_xmin_state"
    upsert = (
        f"INSERT INTO {table} (source_schema, source_table, xmin_value, is_initial,"
        " wraparound_detected, frozen_xid, extraction_identity, source_fingerprint,"
        " __dpone__updated_at, __dpone__loaded_at, revision)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 1)"
        " ON CONFLICT (source_schema, source_table)"
        " DO UPDATE SET xmin_value = excluded.xmin_value, is_initial = excluded.is_initial,"
        " wraparound_detected = excluded.wraparound_detected, frozen_xid = excluded.frozen_xid,"
        " extraction_identity = excluded.extraction_identity,"
        " source_fingerprint = excluded.source_fingerprint,"
        " __dpone__updated_at = excluded.__dpone__updated_at,"
        f" revision = {table}.revision + 1"
    )
    load = (
        "SELECT xmin_value, __dpone__loaded_at, is_initial, wraparound_detected, frozen_xid,"
        " revision, extraction_identity, source_fingerprint"
        f" FROM {table} WHERE source_schema = %s AND source_table = %s"
    )

    def raw_exec(sql: str, params: tuple[object, ...], fetch: bool) -> None:
        cur = raw.cursor()
        cur.execute(sql, params)
        if fetch:
            cur.fetchall()
        cur.close()

    def meltano_set(engine: sa.Engine, i: int) -> None:
        with Session(engine) as session:
            state = {"singer_state": {"xmin": i, "loaded_at": T0.isoformat()}}
            DBStateStoreManager(session).set(MeltanoState("s:t", completed_state=state))

    def meltano_get(engine: sa.Engine) -> None:
        with Session(engine) as session:
            DBStateStoreManager(session).get("s:t")

    def now() -> datetime:
        return datetime.now(timezone.utc).replace(tzinfo=None)

    cases: dict[str, dict[str, Callable[[int], object]]] = {
        "save (one checkpoint)": {
            "lib": lambda i: xmin.save_state("s", "t", XMinState(i)),
            "raw": lambda i: raw_exec(
                upsert,
                ("s", "t", i, False, False, None, None, None, now(), T0.replace(tzinfo=None)),
                False,
            ),
            "meltano": lambda i: meltano_set(pooled, i),
            "meltano-nullpool": lambda i: meltano_set(nullpool, i),
        },
        "load (one checkpoint)": {
            "lib": lambda i: xmin.load_state("s", "t"),
            "raw": lambda i: raw_exec(load, ("s", "t"), True),
            "meltano": lambda i: meltano_get(pooled),
            "meltano-nullpool": lambda i: meltano_get(nullpool),
        },
    }
    for approaches in cases.values():  # warm-up
        for call in approaches.values():
            for i in range(10):
                call(i)
    runs: list[dict[str, dict[str, float]]] = []
    for _ in range(args.runs):
        medians: dict[str, dict[str, float]] = {}
        for name, approaches in cases.items():
            keys = list(approaches)
            timings: dict[str, list[float]] = {key: [] for key in keys}
            for i in range(args.rounds):
                random.shuffle(keys)
                for key in keys:
                    start = time.perf_counter()
                    approaches[key](i)
                    timings[key].append(time.perf_counter() - start)
            medians[name] = {key: statistics.median(v) for key, v in timings.items()}
        runs.append(medians)
    keys = list(next(iter(cases.values())))
    print(f"µs per call, median of {args.runs} runs x {args.rounds} shuffled interleaved rounds "
          f"(SQLAlchemy {sa.__version__}); x = median per-run ratio to raw")  # fmt: skip
    print(f"{'call':<24}" + "".join(f"{k:>18}" for k in keys))
    for name in cases:
        cells = []
        for key in keys:
            micros = statistics.median(r[name][key] for r in runs) * 1e6
            ratio = statistics.median(r[name][key] / r[name]["raw"] for r in runs)
            cells.append(f"{micros:9.0f} ({ratio:5.2f}x)")
        print(f"{name:<24}" + "".join(f"{c:>18}" for c in cells))
    raw.close()
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    for each in (engine, pooled, nullpool):
        each.dispose()


if __name__ == "__main__":
    main()
