"""One run of the exactly-once loop in a process of its own, killed (SIGKILL) at a chosen step.

``python -m tests.exactly_once_child '<json>'`` with ``source_url``, ``source_schema``,
``source_table``, ``target_url``, ``target_schema`` (``null`` on SQLite), ``step``. The rows
are appended (no key: a second copy would show) to ``<target_schema>.loaded``; the checkpoint
lives in the target's database. Prints ``{"outcome": ..., "rows": ...}`` when not killed.

Steps: ``before_load``, ``mid_load`` (after the first batch), ``after_load`` (every row
written, no checkpoint yet), ``before_commit`` (checkpoint written, COMMIT not sent),
``during_commit`` (a kill racing the COMMIT), ``after_commit`` (committed, the caller not
told), ``none``. With ``"two_step": true`` the run commits the target first and saves the
checkpoint after it (the at-least-once loop) instead of ``load_exactly_once``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from dpone_state import XMinExtractor, XMinStateStorage, create_state_engine, load_exactly_once
from dpone_state.xmin import XMIN_KEY

STEPS = (
    "before_load",
    "mid_load",
    "after_load",
    "before_commit",
    "during_commit",
    "after_commit",
)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)  # never reached


def loaded_table(schema: str | None) -> sa.Table:
    return sa.Table(
        "loaded",
        sa.MetaData(),
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("source_xmin", sa.BigInteger, nullable=False),
        schema=schema,
    )


def main(spec: dict[str, Any]) -> None:
    step = spec["step"]
    target = create_state_engine(spec["target_url"])
    source = create_state_engine(spec["source_url"])
    storage = XMinStateStorage(target, schema=spec["target_schema"])
    table = loaded_table(spec["target_schema"])

    commit = target.dialect.do_commit

    def do_commit(dbapi_connection: Any) -> None:
        if step == "before_commit":
            _die()
        if step == "during_commit":
            delay = random.random() * 0.002  # a race on purpose
            threading.Timer(delay, _die).start()
        commit(dbapi_connection)
        if step in ("after_commit", "during_commit"):
            _die()

    target.dialect.do_commit = do_commit  # type: ignore[method-assign]

    def load(connection: Connection, batches: Iterator[Sequence[RowMapping]]) -> None:
        if step == "before_load":
            _die()
        for number, batch in enumerate(batches):
            connection.execute(
                table.insert(), [{"id": r["id"], "source_xmin": r[XMIN_KEY]} for r in batch]
            )
            if step == "mid_load" and number == 0:
                _die()
        if step == "after_load":
            _die()

    extraction = XMinExtractor(source, storage).extract(
        spec["source_schema"], spec["source_table"], columns=["id"], batch_size=3
    )
    if spec.get("two_step"):  # the at-least-once loop: commit the target, then the checkpoint
        with target.begin() as connection:
            load(connection, extraction.batches())
        extraction.commit()
        print(json.dumps({"outcome": "two step", "rows": extraction.rows_read}))
        return
    result = load_exactly_once(extraction, load, target)
    print(json.dumps({"outcome": result.outcome, "rows": result.rows}))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
