"""The runtime's side of the demo: checkpoint a table and record a run (provisioned beforehand
by `dpone-state upgrade`, see examples/demo.sh)."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from dpone_state import (
    RunState,
    RunStateStatus,
    SqliteRunStateStorage,
    SqliteXMinStateStorage,
    XMinState,
    default_url,
)


def main() -> None:
    url = os.environ.get("DPONE_STATE_URL") or "sqlite:///demo/dpone_state.db"
    if not url.startswith("sqlite"):
        url = default_url()
    xmin = SqliteXMinStateStorage(url)
    runs = SqliteRunStateStorage(url)
    print(f"state database: {xmin!r}")

    previous = xmin.load_state("public", "orders")
    print(f"checkpoint before this run: {previous}")
    anchor = (previous.xmin_value if previous else 1_000) + 250
    expected = previous.revision if previous else 0
    xmin.save_state("public", "orders", XMinState(anchor), expected_revision=expected)
    saved = xmin.load_state("public", "orders")
    assert saved is not None
    print(f"saved checkpoint public.orders = {saved.xmin_value} (revision {saved.revision})")

    now = datetime.now(timezone.utc).replace(microsecond=0)
    run = RunState(
        dag_id="demo_orders",
        source_schema="public",
        source_table="orders",
        target_schema="dwh",
        target_table="orders",
        load_strategy="incremental_merge",
        execution_date=now,
        state=RunStateStatus.RUNNING,
        started_at=now,
        process_name="demo",
    )
    runs.save_run_state(run)
    finished = RunState(
        **{
            **run.__dict__,
            "state": RunStateStatus.SUCCESS,
            "ended_at": now + timedelta(minutes=2),
            "duration_min": 2.0,
            "rows_read": 250,
            "rows_written": 250,
        }
    )
    runs.update_run_state(finished)
    print(f"recorded run demo_orders @ {now.isoformat()}: running -> success")

    print("last runs of demo_orders (newest first):")
    for state in runs.get_run_states_by_dag("demo_orders", limit=5):
        print(
            f"  {state.execution_date.isoformat()}  {state.state.value:<8} "
            f"rows_read={state.rows_read}  duration_min={state.duration_min}"
        )
    pruned = runs.delete_old_states(days_to_keep=30)
    print(f"pruned {pruned} run(s) older than 30 days")


if __name__ == "__main__":
    main()
