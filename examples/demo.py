"""The runtime's side of `make demo`: what a pipeline does with its state, told step by step.

The tables were provisioned beforehand by `dpone-state upgrade` (examples/demo.sh). Every step
works on the database named by DPONE_STATE_URL and can be run again: the checkpoint moves on,
the same daily run is updated, and the prune deletes the two old runs this run backfilled.
"""

from __future__ import annotations

import os
from datetime import datetime, time, timedelta, timezone

from dpone_state import (
    RevisionConflictError,
    RunState,
    RunStateStatus,
    RunStateStorage,
    XMinState,
    XMinStateStorage,
)

DAG = "orders_daily"


def show(checkpoint: XMinState | None) -> str:
    if checkpoint is None:
        return "none (the first run reads the table in full)"
    return f"xmin {checkpoint.xmin_value:,}, revision {checkpoint.revision}"


def run_row(day: datetime, state: RunStateStatus, rows: int | None = None) -> RunState:
    """The run of DAG on ``day`` (02:00 UTC, a daily schedule), in ``state``."""
    finished = state is not RunStateStatus.RUNNING
    return RunState(
        dag_id=DAG,
        source_schema="public",
        source_table="orders",
        target_schema="dwh",
        target_table="orders",
        load_strategy="incremental_merge",
        execution_date=day,
        state=state,
        started_at=day,
        ended_at=day + timedelta(minutes=2) if finished else None,
        duration_min=2.0 if finished else None,
        rows_read=rows,
        rows_written=rows,
        process_name="demo",
    )


def main() -> None:
    url = os.environ["DPONE_STATE_URL"]
    checkpoints = XMinStateStorage(url)  # SQLite: no schema, tables in the file itself
    runs = RunStateStorage(url)

    print("\n== 2. Checkpoint: the runtime read public.orders and saves how far it got")
    before = checkpoints.load_state("public", "orders")
    print(f"   stored before this run: {show(before)}")
    anchor = (before.xmin_value if before else 1_000) + 250
    checkpoints.save_state(
        "public", "orders", XMinState(anchor), expected_revision=before.revision if before else 0
    )
    print(f"   saved after the load:   {show(checkpoints.load_state('public', 'orders'))}")

    print("\n== 3. Compare-and-set: two workers read the same checkpoint; both try to save")
    read = checkpoints.load_state("public", "orders")
    assert read is not None
    print(f"   worker A and worker B both read {show(read)}")
    checkpoints.save_state(
        "public", "orders", XMinState(read.xmin_value + 100), expected_revision=read.revision
    )
    print(f"   worker A saves xmin {read.xmin_value + 100:,}: ok")
    try:
        checkpoints.save_state(
            "public", "orders", XMinState(read.xmin_value + 40), expected_revision=read.revision
        )
    except RevisionConflictError as conflict:
        print(f"   worker B saves xmin {read.xmin_value + 40:,}: RevisionConflictError caught")
        print(f"     ({conflict})")
    else:
        raise SystemExit("demo: worker B's stale save was not refused")
    print(f"   stored now: {show(checkpoints.load_state('public', 'orders'))} (A's, untouched)")

    print("\n== 4. Runs: today's run goes running -> success; last month's backfill is recorded")
    today = datetime.combine(datetime.now(timezone.utc).date(), time(2), tzinfo=timezone.utc)
    runs.save_run_state(run_row(today, RunStateStatus.RUNNING))
    runs.update_run_state(run_row(today, RunStateStatus.SUCCESS, rows=250))
    for days_ago in (45, 40):
        runs.save_run_state(run_row(today - timedelta(days=days_ago), RunStateStatus.SUCCESS, 90))
    print(f"   {'execution_date (UTC)':<22}{'state':<9}{'rows':>6}  duration")
    for run in runs.get_run_states_by_dag(DAG, limit=5):  # newest first
        rows = "-" if run.rows_read is None else str(run.rows_read)
        minutes = "-" if run.duration_min is None else f"{run.duration_min:g} min"
        print(
            f"   {run.execution_date:%Y-%m-%d %H:%M}{'':<6}{run.state.value:<9}{rows:>6}  {minutes}"
        )

    print("\n== 5. Retention: delete runs older than 30 days")
    deleted = runs.delete_old_states(days_to_keep=30)
    left = len(runs.get_run_states_by_dag(DAG, limit=100))
    print(f"   deleted {deleted} run(s) (the exact count); {left} left for {DAG}")
    if deleted != 2:
        raise SystemExit(f"demo: expected to prune the 2 backfilled runs, pruned {deleted}")


if __name__ == "__main__":
    main()
