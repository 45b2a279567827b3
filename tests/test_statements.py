"""Every storage method is exactly one SQL statement: no existence check, no DDL, no pre-read."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

import pytest
import sqlglot
from sqlglot import exp

from dpone_state import RevisionConflictError, RunState, XMinState
from tests.backends import recorded
from tests.conftest import StateDB

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
RUN = RunState("dag", "s", "t", "ts", "tt", "full", T0, "running", T0)


CALLS: dict[str, Callable[[StateDB], object]] = {
    "save_state": lambda db: db.xmin().save_state("s", "t", XMinState(1)),
    "save_state_cas_insert": lambda db: db.xmin().save_state(
        "s", "new", XMinState(1), expected_revision=0
    ),
    "save_state_cas_update": lambda db: db.xmin().save_state(
        "s", "t", XMinState(2), expected_revision=1
    ),
    "load_state": lambda db: db.xmin().load_state("s", "t"),
    "delete_state": lambda db: db.xmin().delete_state("s", "t"),
    "save_run_state": lambda db: db.runs().save_run_state(RUN),
    "update_run_state": lambda db: db.runs().update_run_state(RUN),
    "get_run_state": lambda db: db.runs().get_run_state("dag", T0),
    "get_run_states_by_dag": lambda db: db.runs().get_run_states_by_dag("dag"),
    "delete_old_states": lambda db: db.runs().delete_old_states(30),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_one_statement_per_call(db: StateDB, call: str) -> None:
    db.xmin().save_state("s", "t", XMinState(1))  # revision 1 for the CAS update
    with recorded(db.engine) as statements:
        CALLS[call](db)
    assert len(statements) == 1, statements


def test_a_conflict_is_one_statement_too(db: StateDB) -> None:
    db.xmin().save_state("s", "t", XMinState(1))
    with recorded(db.engine) as statements, pytest.raises(RevisionConflictError):
        db.xmin().save_state("s", "t", XMinState(1), expected_revision=0)
    assert len(statements) == 1, statements


def test_values_reach_sql_only_as_bound_parameters(db: StateDB) -> None:
    evil = "x'; DROP TABLE etl_xmin_state; --"
    run = RunState(evil, evil, evil, evil, evil, "full", T0, "running", T0, error_message=evil)
    with recorded(db.engine) as statements:
        db.xmin().save_state(evil, evil, XMinState(1))
        db.xmin().load_state(evil, evil)
        db.runs().save_run_state(run)
        db.runs().get_run_states_by_dag(evil)
        db.xmin().save_state(evil, "new", XMinState(1), expected_revision=0)
    assert len(statements) == 5
    for sql in statements:
        if sql.startswith("BEGIN TRANSACTION"):  # BigQuery's locked first write: literals
            assert_only_literals(sql)
        else:
            assert "DROP TABLE" not in sql
    assert db.xmin().load_state(evil, evil) is not None


def assert_only_literals(script: str) -> None:
    """BigQuery's locked script carries values as literals (the emulator passes no parameters to
    multi-statement queries), spelled so that nothing in a value can end one: parsed as
    GoogleSQL it is exactly the script's own statements, and no string literal in it holds a
    quote, a backslash or a ``%`` (those characters travel as ``CHR(n)``)."""
    parsed = sqlglot.parse(script.replace("%%", "%"), read="bigquery")  # the DB-API's unescape
    kinds = [type(statement).__name__ for statement in parsed if statement is not None]
    # lock, lock-row check, revision check, the upsert: nothing else, whatever the values hold
    assert kinds == ["Transaction", "Update", "Select", "Select", "Merge", "Commit"], kinds
    strings = [lit.this for st in parsed if st for lit in st.find_all(exp.Literal) if lit.is_string]
    assert strings and not [text for text in strings if set(text) & set("'\\%\"")], strings
