"""Where a one-row call's time goes above the raw driver: a profile of dpone-state's calls.

For each call, the µs per call spent in the driver's own execute/fetch and the rest grouped by
where it runs (the pool's checkout and check-in or the kept connection's checks,
dpone-state's storage and execution path,
the column types, SQLAlchemy's remaining helpers), from cProfile over N calls. Profiling slows
Python code more than the driver's C code, so read the shares, not the absolute figures.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from dpone_state import RunState, RunStateStorage, XMinState, XMinStateStorage, create_state_engine

PG_URL = os.environ.get(
    "DPONE_STATE_BENCH_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def where(filename: str, function: str) -> str:
    if "pool/" in filename or "queue.py" in filename or "event/" in filename:
        return "connection (kept: its checks; else the pool)"
    if "dpone_state/engine.py" in filename or "dpone_state/keeper.py" in filename:
        return "connection (kept: its checks; else the pool)"
    if "dpone_state/execution.py" in filename:
        return "dpone-state execution path (parameters, cursor, rows)"
    if "dpone_state/coltypes.py" in filename or "sqltypes.py" in filename:
        return "column types (UTC timestamps, booleans)"
    if "dpone_state/" in filename:
        return "dpone-state storage (validation, models)"
    if "sqlalchemy" in filename:
        return "other SQLAlchemy"
    if function.startswith("<method 'execute'") or function.startswith("<method 'fetch"):
        return "driver: execute / fetch (the round trip)"
    return "other (builtins, datetime, driver helpers)"


def profile(name: str, call: Callable[[], object], calls: int) -> None:
    for _ in range(200):
        call()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        call()
    profiler.disable()
    stats = pstats.Stats(profiler)
    groups: dict[str, float] = defaultdict(float)
    for (filename, _, function), row in stats.stats.items():  # type: ignore[attr-defined]
        groups[where(filename, function)] += row[2]  # own time
    total = sum(groups.values())
    print(f"{name}: {total / calls * 1e6:.0f} µs per call under the profiler")
    for group, seconds in sorted(groups.items(), key=lambda item: -item[1]):
        print(f"  {seconds / calls * 1e6:7.1f} µs  {seconds / total:5.1%}  {group}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--pg-url", default=PG_URL)
    args = parser.parse_args()
    for target, url in (
        ("postgresql", args.pg_url),
        ("sqlite", f"sqlite:///{tempfile.mkdtemp()}/profile.db"),
    ):
        profile_backend(target, url, args.calls)


def profile_backend(target: str, url: str, calls: int) -> None:
    engine = create_state_engine(url)
    schema = "dpone_bench_profile" if target == "postgresql" else None
    xmin = XMinStateStorage(engine, schema=schema)
    runs = RunStateStorage(engine, schema=schema)
    xmin.create_tables()
    runs.create_tables()
    for day in range(20):
        when = T0 - timedelta(days=day)
        runs.save_run_state(RunState("dag", "s", "t", "ts", "tt", "full", when, "success", T0))
    state = XMinState(1)
    print(f"\n== {target}")
    profile("save_state", lambda: xmin.save_state("s", "t", state), calls)
    profile("load_state", lambda: xmin.load_state("s", "t"), calls)
    profile(
        "get_run_states_by_dag (20 rows)",
        lambda: runs.get_run_states_by_dag("dag", limit=20),
        calls,
    )
    if schema:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    engine.dispose()


if __name__ == "__main__":
    main()
