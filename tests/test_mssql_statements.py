"""SQL Server, offline: every statement the library emits, as T-SQL, checked three ways.

1. It equals its golden file in ``tests/golden/mssql/`` (reviewed by hand; each file says why
   the statement is correct, under concurrency too). After an intended change, rewrite them
   with ``DPONE_STATE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_mssql_statements.py`` and
   review the diff.
2. It parses as T-SQL with sqlglot (``read="tsql"``); an unparsed ``Command`` is a failure.
3. Its structure is asserted: ``WITH (HOLDLOCK)`` on every MERGE, ``TOP n`` for limits,
   values only as bound parameters typed like their columns, the column types of the DDL and
   the 900-byte clustered key limit.

The statements come from the storages' own code (``tests/mssql_offline.py``); the behaviour
suite runs them on a real server when ``DPONE_STATE_TEST_MSSQL_URL`` is set.
"""

from __future__ import annotations

import os
import re
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlglot
from sqlalchemy.ext.compiler import compiles
from sqlglot import exp

from dpone_state import KeyCollisionError, RunState, XMinState, XMinStateStorage
from dpone_state.ddl import CreateSchemaIfMissing
from dpone_state.tables import build_tables
from dpone_state.upsert import INCOMING, MergeSyntax, Upsert, compile_merge
from tests.mssql_offline import (
    Captured,
    CapturingRuns,
    CapturingXMin,
    capture,
    compile_only_engine,
    ddl,
    emit,
)

GOLDEN = Path(__file__).parent / "golden" / "mssql"
UPDATE_GOLDEN = os.environ.get("DPONE_STATE_UPDATE_GOLDEN") == "1"
#: SQL Server refuses a statement with more bound parameters than this.
SQL_SERVER_MAX_PARAMETERS = 2100

ENGINE = compile_only_engine()
XMIN = CapturingXMin(ENGINE)
RUNS = CapturingRuns(ENGINE)

# Distinctive values: none of them may appear in the SQL text (they travel as parameters).
SCHEMA, TABLE, DAG = "src_schema_q7", "src_table_q7", "dag_q7"
T0 = datetime(2026, 5, 6, 7, 8, 9, 654321, tzinfo=timezone.utc)
RUN = RunState(DAG, "pub_q7", "orders_q7", "dwh_q7", "tgt_q7", "merge_q7", T0, "running", T0)

_MERGE_NOTE = (
    "MERGE with HOLDLOCK (= SERIALIZABLE on the target table, for this statement): the lookup "
    "of the key takes key-range update locks (RangeS-U) that are held to the end of the "
    "transaction, so the match and the insert are one atomic step. A concurrent MERGE of the "
    "same key waits on that lock (U locks are incompatible with each other, so the two do not "
    "deadlock on it) and then finds the committed row and updates it: no primary-key "
    "violation, no lost update. Without HOLDLOCK two first writers of one key both see no row "
    "and both insert.",
)
_ROWCOUNT_NOTE = (
    "The driver's row count (SQLRowCount; SET NOCOUNT OFF is set on every connection) is the "
    "number of rows the MERGE inserted or updated: 1 when it wrote, 0 when the guard failed.",
)


@dataclass(frozen=True)
class Case:
    """One statement the library sends: the call that sends it and what a reviewer checks."""

    call: str
    run: Callable[[], object]
    kind: type[exp.Expression]
    notes: tuple[str, ...]


CASES: dict[str, Case] = {
    "save_state": Case(
        "XMinStateStorage.save_state(schema, table, state)  # last writer wins",
        lambda: XMIN.save_state(SCHEMA, TABLE, XMinState(42)),
        exp.Merge,
        (
            *_MERGE_NOTE,
            "On a match the four values and __dpone__updated_at change and revision goes up by "
            "one (target.revision + 1, read under the lock); __dpone__loaded_at keeps the first "
            "insert's time. A new row starts at revision 1. A matched tombstone (a deleted "
            "checkpoint, revision -(r + 1)) becomes a new checkpoint at r + 2 with this save's "
            "__dpone__loaded_at: a revision is never reused.",
        ),
    ),
    "save_state_cas_insert": Case(
        "XMinStateStorage.save_state(schema, table, state, expected_revision=0)",
        lambda: XMIN.save_state(SCHEMA, TABLE, XMinState(42), expected_revision=0),
        exp.Merge,
        (
            *_MERGE_NOTE,
            "Compare-and-set for 'no checkpoint yet (or a legacy one, revision 0, or a deleted one, "
            "revision < 0)': inserts a new row, or updates a matched row only WHEN MATCHED AND "
            "target.revision <= 0. The guard is "
            "evaluated on the row locked by HOLDLOCK, so of two racing writers exactly one writes; "
            "the other sees revision 1 and writes nothing.",
            *_ROWCOUNT_NOTE,
        ),
    ),
    "save_state_cas_update": Case(
        "XMinStateStorage.save_state(schema, table, state, expected_revision=N)  # N > 0",
        lambda: XMIN.save_state(SCHEMA, TABLE, XMinState(42), expected_revision=3),
        exp.Update,
        (
            "Compare-and-set on an existing checkpoint: a plain UPDATE guarded by revision = N. "
            "Under READ COMMITTED (the default) SQL Server reads the target row with an update (U) "
            "lock, which a concurrent UPDATE of the same row waits for; after the first commits, "
            "the second re-evaluates its WHERE clause on the committed row (revision is now N+1) "
            "and updates nothing (row count 0 -> RevisionConflictError). Under "
            "READ_COMMITTED_SNAPSHOT the target of an UPDATE is still read with U locks and the "
            "latest committed version, so the same holds. A missing row also gives 0.",
        ),
    ),
    "save_states": Case(
        "XMinStateStorage.save_states({(schema, table): state, (schema, other): state})",
        lambda: XMIN.save_states(
            {(SCHEMA, TABLE): XMinState(42), (SCHEMA, "other_q7"): XMinState(43)}
        ),
        exp.Merge,
        (
            *_MERGE_NOTE,
            "The bulk path: up to 232 rows in one VALUES table (2100 parameters at most), "
            "last writer wins per key, one statement, one transaction. Rows are sent in key "
            "order, so two bulk writers lock shared keys in the same order (no deadlock between "
            "them); keys SQL Server would compare as equal (case on a legacy case-insensitive "
            "collation) are refused before sending (KeyCollisionError).",
        ),
    ),
    "save_state_receipt_insert": Case(
        "XMinStateStorage.save_state(schema, table, state, expected_revision=0, load_id=id)",
        lambda: XMIN.save_state(
            SCHEMA, TABLE, XMinState(42), expected_revision=0, load_id="load_q7"
        ),
        exp.Merge,
        (
            *_MERGE_NOTE,
            "The compare-and-set insert of save_state_cas_insert that also writes the receipt "
            "last_load_id (inserted, and set on the guarded update). Run on the caller's "
            "connection (connection=conn) it commits with the load's transaction.",
            *_ROWCOUNT_NOTE,
        ),
    ),
    "save_state_receipt_update": Case(
        "XMinStateStorage.save_state(schema, table, state, expected_revision=N, load_id=id)",
        lambda: XMIN.save_state(
            SCHEMA, TABLE, XMinState(42), expected_revision=3, load_id="load_q7"
        ),
        exp.Update,
        (
            "The guarded UPDATE of save_state_cas_update that also sets the receipt "
            "last_load_id; the U lock it takes is held to the end of the caller's transaction, "
            "so a probe of the row waits for that transaction to end.",
        ),
    ),
    "probe": Case(
        "XMinStateStorage.probe(schema, table, load_id, expected_revision=N)",
        lambda: XMIN.probe(SCHEMA, TABLE, "load_q7", expected_revision=3),
        exp.Select,
        (
            "A primary-key seek of the receipt and the revision. Under locking READ COMMITTED "
            "(the default) it waits for an uncommitted checkpoint write (its X lock) of the "
            "row, so a commit in flight is not read around; under READ_COMMITTED_SNAPSHOT it "
            "reads the last committed version (SQLAlchemy renders no FOR UPDATE here).",
        ),
    ),
    "load_state": Case(
        "XMinStateStorage.load_state(schema, table)",
        lambda: XMIN.load_state(SCHEMA, TABLE),
        exp.Select,
        (
            "A primary-key seek; READ COMMITTED sees only committed checkpoints; a tombstone "
            "(revision < 0) is no checkpoint.",
        ),
    ),
    "delete_state": Case(
        "XMinStateStorage.delete_state(schema, table)",
        lambda: XMIN.delete_state(SCHEMA, TABLE),
        exp.Update,
        (
            "Leaves a tombstone by primary key: revision becomes -(revision + 1), so the next "
            "checkpoint of the key continues above every revision it had (no ABA); the row count "
            "(0 or 1) says whether a live checkpoint existed.",
        ),
    ),
    "save_run_state": Case(
        "RunStateStorage.save_run_state(run)",
        lambda: RUNS.save_run_state(RUN),
        exp.Merge,
        (
            *_MERGE_NOTE,
            "On a match only the outcome columns change (state, ended_at, duration_min, "
            "error_message, the four counts, load_strategy, __dpone__updated_at); started_at, "
            "process_name and the source/target names keep their first values. id is never "
            "written: the identity numbers new rows (legacy IDENTITY(1,1) tables included).",
        ),
    ),
    "update_run_state": Case(
        "RunStateStorage.update_run_state(run)  # the same upsert: a new run is inserted",
        lambda: RUNS.update_run_state(RUN),
        exp.Merge,
        (*_MERGE_NOTE, "Identical to save_run_state by design (the legacy UPDATE lost new runs)."),
    ),
    "get_run_state": Case(
        "RunStateStorage.get_run_state(dag_id, execution_date)",
        lambda: RUNS.get_run_state(DAG, T0),
        exp.Select,
        ("A primary-key seek on (dag_id, execution_date).",),
    ),
    "get_run_states_by_dag": Case(
        "RunStateStorage.get_run_states_by_dag(dag_id)  # limit=100",
        lambda: RUNS.get_run_states_by_dag(DAG),
        exp.Select,
        (
            "TOP n with ORDER BY execution_date DESC: the newest runs first, a range scan of the "
            "primary key (dag_id, execution_date) read backwards. n is rendered into the text "
            "(SQLAlchemy's mssql dialect does so for TOP: ODBC drivers do not all accept a "
            "parameter there); it is an int checked to be 1..10000 before it gets here, so "
            "nothing from the caller reaches the SQL text.",
        ),
    ),
    "get_run_states_by_dag_at": Case(
        "RunStateStorage.get_run_states_by_dag(dag_id, execution_date, limit=25)",
        lambda: RUNS.get_run_states_by_dag(DAG, T0, limit=25),
        exp.Select,
        ("dpone's meaning: the runs at exactly execution_date.",),
    ),
    "get_run_states_by_dag_before": Case(
        "RunStateStorage.get_run_states_by_dag(dag_id, before=date, limit=25)",
        lambda: RUNS.get_run_states_by_dag(DAG, before=T0, limit=25),
        exp.Select,
        ("Paging back through history: runs strictly before `before`, newest first.",),
    ),
    "delete_old_states": Case(
        "RunStateStorage.delete_old_states(days_to_keep=30)  # sent until a batch is short",
        lambda: RUNS.delete_old_states(30),
        exp.Delete,
        (
            "Retention by execution_date (index ix_<table>_execution_date), 4000 rows per "
            "statement, each in its own transaction, repeated until one deletes fewer: each row "
            "takes a key lock in the clustered index and one in the retention index, and SQL "
            "Server escalates a statement to a table lock (blocking every run upsert) once it "
            "holds about 5000 locks on one index. The row counts add up to the runs deleted.",
        ),
    ),
    "delete_old_states_batch": Case(
        "RunStateStorage.delete_old_states(days_to_keep=30, batch_size=100)",
        lambda: RUNS.delete_old_states(30, batch_size=100),
        exp.Delete,
        ("The same loop with batch_size rows per statement (TOP (n): a checked int >= 1).",),
    ),
}


def parse_tsql(sql: str) -> exp.Expression:
    """The statement parsed as T-SQL: exactly one, no part left unparsed as a Command."""
    trees = [tree for tree in sqlglot.parse(sql, read="tsql") if tree is not None]
    assert len(trees) == 1, sql
    tree = trees[0]
    unparsed = [node.sql("tsql") for node in tree.find_all(exp.Command)]
    assert unparsed == [], f"sqlglot left {unparsed} unparsed in:\n{sql}"
    return tree


def _comment(lines: tuple[str, ...] | list[str]) -> str:
    out: list[str] = []
    for line in lines:
        out.extend(
            textwrap.wrap(line, 96, initial_indent="-- ", subsequent_indent="--   ") or ["--"]
        )
    return "\n".join(out)


def _normalized(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.sql"
    if UPDATE_GOLDEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_normalized(text) + "\n", encoding="utf-8")
    assert path.exists(), f"no golden file {path}; create it with DPONE_STATE_UPDATE_GOLDEN=1"
    assert _normalized(path.read_text(encoding="utf-8")) == _normalized(text), (
        f"{path.name} differs from what the library emits; if intended, rewrite it with "
        "DPONE_STATE_UPDATE_GOLDEN=1 and review the diff"
    )


def _shown(value: object) -> str:
    if isinstance(value, datetime):  # the test's fixed time, or the clock's (varies per run)
        return value.isoformat() if value == T0 else "<current UTC time>"
    return repr(value)


def golden_text(case: Case, sql: str, parameters: list[tuple[str, str, object]]) -> str:
    header = [
        f"dpone-state on SQL Server (mssql+pyodbc): {case.call}",
        "One statement per call, sent exactly as below; ? are pyodbc parameters.",
        "",
        *case.notes,
        "",
        "Parameters, in order (name: type declared to the server by the engine's "
        "do_setinputsizes hook, NULLs included = value in this call):",
    ]
    header += [
        f"  {i}. {name}: {sql_type} = {_shown(value)}"
        for i, (name, sql_type, value) in enumerate(parameters, 1)
    ]
    return f"{_comment(header)}\n{sql}\n"


@pytest.mark.parametrize("name", list(CASES))
def test_statement_matches_golden_and_parses(name: str) -> None:
    case = CASES[name]
    emitted = emit(ENGINE, capture(case.run))
    tree = parse_tsql(emitted.sql)
    assert isinstance(tree, case.kind), type(tree)
    check_golden(name, golden_text(case, emitted.sql, emitted.parameters))
    # Values travel only as parameters: none of the call's values is in the text.
    for value in (SCHEMA, TABLE, DAG, "pub_q7", "merge_q7", "42", "654321"):
        assert value not in emitted.sql
    values = [value for _, _, value in emitted.parameters]
    assert emitted.sql.count("?") == len(values)
    if isinstance(tree, exp.Merge):
        target = tree.this
        hints = [hint.sql("tsql") for hint in target.args.get("hints") or []]
        assert hints == ["WITH (HOLDLOCK)"], hints
        assert emitted.sql.rstrip().endswith(";")  # T-SQL requires MERGE to be terminated
        assert "NULL" not in emitted.sql  # NULLs are typed parameters too


def test_every_storage_method_has_a_golden_statement() -> None:
    methods = {"save_state", "save_states", "load_state", "delete_state"}
    methods |= {"save_run_state", "update_run_state", "get_run_state"}
    methods |= {"get_run_states_by_dag", "delete_old_states"}
    assert methods <= set(CASES)
    expected = {f"{name}.sql" for name in CASES} | {f"{name}.sql" for name in DDL_CASES}
    assert {path.name for path in GOLDEN.glob("*.sql")} == expected


def test_parameters_are_typed_like_their_columns() -> None:
    emitted = emit(ENGINE, capture(CASES["save_run_state"].run))
    types = {name: sql_type for name, sql_type, _ in emitted.parameters}
    values = {name: value for name, _, value in emitted.parameters}
    assert values["p_ended_at"] is None and types["p_ended_at"] == "DATETIME2(7)"
    assert values["p_rows_read"] is None and types["p_rows_read"] == "BIGINT"
    assert types["p_error_message"] == "NVARCHAR(max)"
    assert types["p_duration_min"] == "FLOAT"
    assert types["p_execution_date"] == "DATETIME2(7)"
    assert values["p_dag_id"] == DAG and types["p_dag_id"] == "NVARCHAR(4000)"
    assert types["p_state"] == types["p_process_name"] == "NVARCHAR(4000)"


def test_every_parameter_of_every_statement_is_declared() -> None:
    """No parameter is left for the driver to infer (a NULL would cost a describe round trip,
    a string a plan per length)."""
    for case in CASES.values():
        emitted = emit(ENGINE, capture(case.run))
        undeclared = [name for name, sql_type, _ in emitted.parameters if "infers" in sql_type]
        assert undeclared == [], (case.call, undeclared)


def test_the_compare_and_set_guard_reads_the_target_row() -> None:
    tree = parse_tsql(emit(ENGINE, capture(CASES["save_state_cas_insert"].run)).sql)
    whens = tree.args["whens"].expressions
    matched = [when for when in whens if when.args.get("matched")]
    assert len(matched) == 1
    guard = matched[0].args["condition"]
    # Revision 0 or below: none yet, a legacy row, or a deleted checkpoint (a tombstone).
    assert guard.sql("tsql") == "target.revision <= ?"
    updates = {eq.this.sql("tsql"): eq.expression.sql("tsql") for eq in matched[0].args["then"]}
    assert updates["revision"] == (
        "CASE WHEN (target.revision < ?) THEN ? - target.revision ELSE target.revision + ? END"
    )
    assert updates["xmin_value"] == "incoming.xmin_value"
    # The first save's time stays, unless the row is a tombstone (a new checkpoint).
    assert updates["__dpone__loaded_at"] == (
        "CASE WHEN (target.revision < ?) THEN incoming.__dpone__loaded_at "
        "ELSE target.__dpone__loaded_at END"
    )
    unguarded = parse_tsql(emit(ENGINE, capture(CASES["save_state"].run)).sql)
    assert all(w.args.get("condition") is None for w in unguarded.args["whens"].expressions)


def test_limits_are_top_n_with_order_by() -> None:
    for limit in (1, 37, 10_000):
        sql = emit(
            ENGINE, capture(lambda limit=limit: RUNS.get_run_states_by_dag(DAG, limit=limit))
        ).sql
        tree = parse_tsql(sql)
        assert sql.startswith(f"SELECT TOP {limit} ")
        assert tree.args["limit"].expression.sql("tsql") == str(limit)
        assert tree.args["order"].sql("tsql").endswith("execution_date DESC")
        assert "OFFSET" not in sql and "LIMIT" not in sql


def test_identifiers_are_quoted() -> None:
    xmin = CapturingXMin(ENGINE, schema="etl state", table="x]min")
    sql = emit(ENGINE, capture(lambda: xmin.save_state(SCHEMA, TABLE, XMinState(1)))).sql
    assert sql.startswith("MERGE INTO [etl state].[x]]min] WITH (HOLDLOCK) AS target")
    parse_tsql(sql)
    runs = CapturingRuns(ENGINE, schema="select", table="order")
    sql = emit(ENGINE, capture(lambda: runs.get_run_states_by_dag(DAG))).sql
    assert "FROM [select].[order]" in sql
    parse_tsql(sql)


class _SelectSourceUpsert(Upsert):
    """The ``SELECT … UNION ALL`` source form (BigQuery's), compiled here for SQL Server."""

    inherit_cache = True


@compiles(_SelectSourceUpsert, "mssql")
def _compile_select_source(
    element: _SelectSourceUpsert, compiler: sa.sql.compiler.SQLCompiler, **kw: object
) -> str:
    syntax = MergeSyntax(target_hint="WITH (HOLDLOCK)", terminator=";", source_rows="select")
    return compile_merge(element, compiler, syntax, **kw)


def test_multi_row_merge_in_both_source_forms() -> None:
    table = build_tables(dialect_name="mssql").xmin
    rows = [
        {"source_schema": "a", "source_table": "t1", "xmin_value": 1, "frozen_xid": None},
        {"source_schema": "a", "source_table": "t2", "xmin_value": 2, "frozen_xid": 7},
    ]
    update = {"xmin_value": INCOMING, "revision": table.c.revision + 1}
    for cls, source in ((Upsert, exp.Values), (_SelectSourceUpsert, exp.Subquery)):
        statement = cls(table, rows, key=["source_schema", "source_table"], update=update)
        compiled = statement.compile(dialect=ENGINE.dialect)
        tree = parse_tsql(compiled.string)
        assert isinstance(tree, exp.Merge)
        assert isinstance(tree.args["using"], source), repr(tree.args["using"])[:200]
        params = compiled.construct_params()
        assert [params[name] for name in compiled.positiontup or []] == [
            "a",
            "t1",
            1,
            None,
            "a",
            "t2",
            2,
            7,
            1,
        ]


def test_rows_with_different_columns_are_refused() -> None:
    table = build_tables(dialect_name="mssql").xmin
    rows = [
        {"source_schema": "a", "source_table": "t1", "xmin_value": 1},
        {"source_schema": "a", "source_table": "t2"},
    ]
    with pytest.raises(ValueError, match="same columns"):  # refused when built, not compiled
        Upsert(table, rows, key=["source_schema", "source_table"], update={})


# --- create_tables() DDL -------------------------------------------------------------------

#: SQL Server type of every column of new tables (what the issue asks for, checked by parsing).
EXPECTED_TYPES = {
    "xmin": {
        "source_schema": "NVARCHAR(128)",
        "source_table": "NVARCHAR(128)",
        "xmin_value": "BIGINT",
        "is_initial": "BIT",
        "wraparound_detected": "BIT",
        "frozen_xid": "BIGINT",
        "__dpone__loaded_at": "DATETIME2",
        "__dpone__updated_at": "DATETIME2",
        "revision": "BIGINT",
        "extraction_identity": "NVARCHAR(1000)",
        "source_fingerprint": "NVARCHAR(1000)",
        "last_load_id": "NVARCHAR(128)",
    },
    "runs": {
        "id": "BIGINT",
        "dag_id": "NVARCHAR(400)",
        "source_schema": "NVARCHAR(256)",
        "source_table": "NVARCHAR(256)",
        "target_schema": "NVARCHAR(256)",
        "target_table": "NVARCHAR(256)",
        "load_strategy": "NVARCHAR(64)",
        "state": "NVARCHAR(32)",
        "execution_date": "DATETIME2",
        "started_at": "DATETIME2",
        "ended_at": "DATETIME2",
        "duration_min": "FLOAT",
        "error_message": "NVARCHAR(MAX)",
        "rows_read": "BIGINT",
        "rows_written": "BIGINT",
        "rows_updated": "BIGINT",
        "rows_deleted": "BIGINT",
        "__dpone__loaded_at": "DATETIME2",
        "__dpone__updated_at": "DATETIME2",
        "process_name": "NVARCHAR(512)",
    },
}
#: Bytes of a key column in an index row: NVARCHAR(n) at most 2n, DATETIME2(7) 8, BIGINT 8.
_FIXED_BYTES = {"DATETIME2": 8, "BIGINT": 8}
CLUSTERED_KEY_LIMIT = 900

DDL_CASES = {
    "create_tables_xmin": ("XMinStateStorage.create_tables()", lambda: XMIN.table),
    "create_tables_runs": ("RunStateStorage.create_tables()", lambda: RUNS.table),
}


def _create_tables_ddl(table: sa.Table) -> list[str]:
    # create_tables(): the guarded CREATE SCHEMA (dynamic SQL: CREATE SCHEMA must be alone in
    # its batch) when has_schema() says it is missing, then metadata.create_all().
    assert table.schema is not None
    schema = str(CreateSchemaIfMissing(table.schema).compile(dialect=ENGINE.dialect))
    return [schema, *ddl(ENGINE, table.metadata)]


def _key_bytes(sql_type: str) -> int:
    match = re.fullmatch(r"NVARCHAR\((\d+)\)", sql_type)
    return 2 * int(match.group(1)) if match else _FIXED_BYTES[sql_type]


@pytest.mark.parametrize("name", list(DDL_CASES))
def test_create_tables_ddl(name: str) -> None:
    call, table_of = DDL_CASES[name]
    table = table_of()
    statements = _create_tables_ddl(table)
    notes = [
        f"dpone-state on SQL Server (mssql+pyodbc): {call}",
        "Sent in this order, in one transaction; production databases are provisioned by the "
        "migrations instead. Keys of new tables compare exactly (BIN2 collation) and fit the "
        "900-byte clustered key limit; timestamps are UTC DATETIME2 with SYSUTCDATETIME() "
        "defaults.",
    ]
    check_golden(name, _comment(notes) + "\n" + ";\n\n".join(statements) + ";\n")
    guard = f"IF SCHEMA_ID(N'{table.schema}') IS NULL\nBEGIN\n    EXEC sp_executesql N'"
    assert statements[0].startswith(guard)
    inner = statements[0][len(guard) :].split("';", 1)[0].replace("''", "'")
    trees = [parse_tsql(sql) for sql in [inner, *statements[1:]]]
    assert all(isinstance(tree, exp.Create) for tree in trees)
    assert trees[0].args["kind"] == "SCHEMA"
    create = trees[1]
    columns = {col.name: col for col in create.this.expressions if isinstance(col, exp.ColumnDef)}
    types = {name: col.args["kind"].sql("tsql") for name, col in columns.items()}
    assert types == EXPECTED_TYPES["xmin" if "xmin" in name else "runs"]
    for col_name, col in columns.items():
        constraints = col.sql("tsql")
        if types[col_name] == "DATETIME2" and col_name.startswith("__dpone__"):
            assert "DEFAULT SYSUTCDATETIME()" in constraints
    pk = next(c for c in create.this.expressions if isinstance(c, exp.Constraint))
    pk_columns = [ident.name for ident in pk.find(exp.PrimaryKey).expressions]  # type: ignore[union-attr]
    assert pk.name == f"pk_{table.name}_{'source' if 'xmin' in name else 'dag_execution'}"
    for key in pk_columns:
        if types[key].startswith("NVARCHAR"):
            assert "COLLATE Latin1_General_100_BIN2" in columns[key].sql("tsql"), key
    key_bytes = sum(_key_bytes(types[key]) for key in pk_columns)
    assert key_bytes <= CLUSTERED_KEY_LIMIT, (pk_columns, key_bytes)
    if "runs" in name:
        assert "IDENTITY" in columns["id"].sql("tsql")
        assert isinstance(trees[2], exp.Create) and trees[2].args["kind"] == "INDEX"
        assert trees[2].sql("tsql").startswith(f"CREATE INDEX ix_{table.name}_execution_date")


class _RecordingXMin(XMinStateStorage):
    """Records every statement ``save_states`` sends (its return value is not read)."""

    sent: list[Captured]

    def _write(self, statement: object, params: Mapping[str, object]) -> None:  # type: ignore[override]
        self.sent.append(Captured(statement, dict(params)))


def test_bulk_saves_stay_within_sql_servers_2100_parameters() -> None:
    storage = _RecordingXMin(ENGINE)
    storage.sent = []
    states = {("public", f"t{i}"): XMinState(i) for i in range(1200)}
    assert storage.save_states(states) == 1200
    emitted = [emit(ENGINE, captured) for captured in storage.sent]
    assert all(len(e.parameters) <= SQL_SERVER_MAX_PARAMETERS for e in emitted)
    tables = [value for e in emitted for name, _, value in e.parameters if "source_table" in name]
    assert sorted(tables) == sorted(f"t{i}" for i in range(1200))
    assert len(emitted) == 7  # 1200 rows, 11 parameters each: 190 rows per statement
    parse_tsql(emitted[0].sql)


def test_bulk_saves_refuse_keys_sql_server_compares_as_equal() -> None:
    """On a legacy case-insensitive table two such keys fail the whole batch (Msg 8672 / 2627);
    the collision is found before anything is sent, and named."""
    storage = _RecordingXMin(ENGINE)
    storage.sent = []
    states = {("Public", "Orders"): XMinState(1), ("public", "orders"): XMinState(2)}
    states[("public", "other")] = XMinState(3)
    with pytest.raises(KeyCollisionError) as raised:
        storage.save_states(states)
    assert storage.sent == []
    assert raised.value.keys == [(("Public", "Orders"), ("public", "orders"))]
    assert "'Public', 'Orders'" in str(raised.value)


def test_bulk_rows_are_sent_in_key_order() -> None:
    """Two bulk writers lock shared keys in one order: no deadlock between them."""
    storage = _RecordingXMin(ENGINE)
    storage.sent = []
    storage.save_states(
        {("b", "2"): XMinState(1), ("a", "9"): XMinState(2), ("b", "1"): XMinState(3)}
    )
    (emitted,) = [emit(ENGINE, captured) for captured in storage.sent]
    keys = [
        value
        for name, _, value in emitted.parameters
        if name.startswith(("p_source_schema", "p_source_table"))
    ]
    assert keys == ["a", "9", "b", "1", "b", "2"]


def test_doctor_warns_on_case_insensitive_keys_and_datetime_columns() -> None:
    """What reflection returns for dpone's legacy SQL Server table with the server's default
    collation and ``datetime`` columns (a DBA's variant of the v1 layout)."""
    from sqlalchemy.dialects import mssql  # noqa: PLC0415

    from dpone_state.doctor import mssql_column_warnings  # noqa: PLC0415

    table = XMIN.table
    columns = {
        name: {"name": name, "type": mssql.NVARCHAR(256, collation="SQL_Latin1_General_CP1_CI_AS")}
        for name in ("source_schema", "source_table")
    }
    columns["__dpone__loaded_at"] = {"name": "__dpone__loaded_at", "type": mssql.DATETIME()}
    columns["__dpone__updated_at"] = {"name": "__dpone__updated_at", "type": mssql.DATETIME2()}
    warnings = mssql_column_warnings("mssql", table, columns)
    assert len(warnings) == 3, warnings
    assert "SQL_Latin1_General_CP1_CI_AS" in warnings[0] and "Key collation" in warnings[0]
    assert "__dpone__loaded_at is datetime" in warnings[2]
    exact = {
        name: {"name": name, "type": mssql.NVARCHAR(128, collation="Latin1_General_100_BIN2")}
        for name in ("source_schema", "source_table")
    }
    assert mssql_column_warnings("mssql", table, exact) == []
    assert mssql_column_warnings("postgresql", table, columns) == []
