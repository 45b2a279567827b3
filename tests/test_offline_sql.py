"""The offline scripts for DBAs (``alembic upgrade head --sql``): shipped, fresh, valid T-SQL.

The PostgreSQL script is also run against the real server (tests/test_migrations.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlglot
from sqlalchemy.dialects import mssql
from sqlalchemy.schema import CreateTable
from sqlglot import exp

from dpone_state import build_tables, migrate

SQL_DIR = Path(migrate.SCRIPT_LOCATION) / "sql"
REFRESH = "regenerate them with `make sql` and commit the result"


@pytest.mark.parametrize("dialect", migrate.OFFLINE_DIALECTS)
def test_shipped_offline_script_is_up_to_date(dialect: str) -> None:
    shipped = SQL_DIR / f"{dialect}.sql"
    assert shipped.exists(), f"{shipped} is missing; {REFRESH}"
    assert shipped.read_text(encoding="utf-8") == migrate.offline_sql(dialect), (
        f"{shipped} is stale (the migrations changed); {REFRESH}"
    )


#: The first line of every batch after BEGIN TRANSACTION (sqlglot cannot parse THROW).
ABORTED_GUARD = migrate._MSSQL_ABORTED.rstrip("\n")


#: sqlglot cannot parse THROW: each one is read as a SELECT (checked separately).
THROW = re.compile(r"THROW 50000, N'(?:[^']|'')*', 1")


def _batches(script: str) -> list[str]:
    """The script's batches (split at ``GO``), without comment lines and the abort guard, each
    THROW read as ``SELECT 1``."""
    batches = re.split(r"^GO\s*$", script, flags=re.MULTILINE)
    cleaned = (
        "\n".join(
            line
            for line in batch.splitlines()
            if not line.lstrip().startswith("--") and line != ABORTED_GUARD
        )
        for batch in batches
    )
    return [THROW.sub("SELECT 1", batch.strip()) for batch in cleaned if batch.strip()]


def _assert_parsed(sql: str) -> list[exp.Expression]:
    """Parse T-SQL; fail on an unparsed ``Command``, and parse dynamic SQL it executes too."""
    trees = [tree for tree in sqlglot.parse(sql, read="tsql") if tree is not None]
    assert trees, sql
    for tree in trees:
        for node in tree.walk():
            assert not isinstance(node, exp.Command), f"not parsed as T-SQL: {node.sql()!r}"
            if isinstance(node, exp.ExecuteSql):
                for argument in node.expressions:
                    assert isinstance(argument, exp.National), node.sql()
                    _assert_parsed(argument.name)
    return trees


def test_sql_server_script_parses_as_tsql_statement_by_statement() -> None:
    script = (SQL_DIR / "mssql.sql").read_text(encoding="utf-8")
    batches = _batches(script)
    statements = [tree for batch in batches for tree in _assert_parsed(batch)]
    # sqlglot reads some unknown statements as an alias instead of a Command: only the kinds
    # of statement this script is made of may appear, and IF blocks hold only DDL.
    allowed = (exp.IfBlock, exp.Set, exp.Transaction, exp.Create, exp.Alter, exp.Update)
    for tree in statements:
        assert isinstance(tree, (*allowed, exp.Commit)), tree.sql("tsql")
        if isinstance(tree, exp.IfBlock):
            body = [e for e in tree.args["true"].expressions if not isinstance(e, exp.EndStatement)]
            kinds = (exp.Create, exp.Alter, exp.ExecuteSql, exp.Insert, exp.IfBlock)
            thrown = [e for e in body if isinstance(e, exp.Select)]  # a THROW (see THROW)
            assert all(e.sql("tsql") == "SELECT 1" for e in thrown), body
            assert body and all(isinstance(e, kinds) for e in body if e not in thrown)
    kinds = [type(_assert_parsed(batch)[0]).__name__ for batch in batches]
    # guarded schema | XACT_ABORT, BEGIN + guarded version table | 2 guarded tables |
    # guarded version insert | 2 guarded columns | guarded index | version update |
    # 2 guarded columns (0003) | version update | process_name widened (0004) |
    # version update | guarded receipt column (0005) | version update |
    # version update (0006: BigQuery only) | COMMIT
    assert kinds.count("IfBlock") == 10, kinds
    assert len(batches) == 18, batches
    # The two tables are adopted only when they are dpone's v1 shape (else THROW).
    assert len(re.findall(r"exists but is not dpone''s v1 state table", script)) == 2


def test_sql_server_script_is_safe_to_rerun_and_to_fail() -> None:
    """Rerun: the version table and its first row are created only where missing (every other
    step was guarded already). Failure: XACT_ABORT rolls the transaction back and every later
    batch refuses to run, so a client that continues after an error (sqlcmd without -b, SSMS)
    applies nothing more. The header says how to run it."""
    for name in ("mssql.sql", "mssql-downgrade.sql"):
        script = (SQL_DIR / name).read_text(encoding="utf-8")
        assert f"sqlcmd -b -S SERVER -d DATABASE -i {name}" in script
        raw = re.split(r"^GO\s*$", script, flags=re.MULTILINE)
        begin = next(i for i, batch in enumerate(raw) if "BEGIN TRANSACTION;" in batch)
        assert "SET XACT_ABORT ON;\nBEGIN TRANSACTION;" in raw[begin]
        later = [batch for batch in raw[begin + 1 :] if batch.strip()]
        assert later and all(ABORTED_GUARD in batch for batch in later), name
        for batch in _batches(script):
            _assert_parsed(batch)
    script = (SQL_DIR / "mssql.sql").read_text(encoding="utf-8")
    assert (
        "IF OBJECT_ID(N'etl_state.dpone_state_alembic_version', N'U') IS NULL\nBEGIN\n"
        "CREATE TABLE etl_state.dpone_state_alembic_version"
    ) in script
    assert (
        "IF NOT EXISTS (SELECT 1 FROM etl_state.dpone_state_alembic_version)\nBEGIN\n"
        "INSERT INTO etl_state.dpone_state_alembic_version"
    ) in script
    assert "Safe to run again" in script


def test_shipped_downgrade_script_is_up_to_date() -> None:
    shipped = SQL_DIR / "mssql-downgrade.sql"
    assert shipped.read_text(encoding="utf-8") == migrate.offline_downgrade_sql("mssql"), REFRESH
    script = shipped.read_text(encoding="utf-8")
    assert "ALTER TABLE etl_state.etl_xmin_state DROP COLUMN revision;" in script
    assert "DROP TABLE" not in script  # back to dpone's legacy tables: the rows stay


def test_sql_server_script_has_the_types_and_names() -> None:
    script = (SQL_DIR / "mssql.sql").read_text(encoding="utf-8")
    assert script.startswith(migrate.MSSQL_UPGRADE_HEADER)
    assert script[len(migrate.MSSQL_UPGRADE_HEADER) :].startswith(
        "IF SCHEMA_ID(N'etl_state') IS NULL\nBEGIN\n"
        "    EXEC sp_executesql N'CREATE SCHEMA etl_state';\nEND;\n\nGO\n"
    )
    for text in (
        "source_schema NVARCHAR(128) COLLATE Latin1_General_100_BIN2 NOT NULL",
        "dag_id NVARCHAR(400) COLLATE Latin1_General_100_BIN2 NOT NULL",
        "target_table NVARCHAR(256) NOT NULL",
        "error_message NVARCHAR(max) NULL",
        "execution_date DATETIME2 NOT NULL",
        "is_initial BIT NOT NULL CONSTRAINT df_etl_xmin_state_is_initial DEFAULT 0",
        "CONSTRAINT df_etl_run_state___dpone__loaded_at DEFAULT SYSUTCDATETIME()",
        "ADD revision BIGINT NOT NULL CONSTRAINT df_etl_xmin_state_revision DEFAULT 0",
        "id BIGINT NOT NULL IDENTITY",
        "CONSTRAINT pk_etl_xmin_state_source PRIMARY KEY (source_schema, source_table)",
        "CONSTRAINT pk_etl_run_state_dag_execution PRIMARY KEY (dag_id, execution_date)",
        "CREATE INDEX ix_etl_run_state_execution_date ON etl_state.etl_run_state",
        "CREATE TABLE etl_state.dpone_state_alembic_version",
        "IF OBJECT_ID(N'etl_state.etl_xmin_state', N'U') IS NULL",
        "IF COL_LENGTH(N'etl_state.etl_run_state', N'process_name') IS NULL",
        "ADD extraction_identity NVARCHAR(1000) NULL",
        "ADD source_fingerprint NVARCHAR(1000) NULL",
    ):
        assert text in script, text
    # Never an unnamed constraint: every DEFAULT and PRIMARY KEY carries a CONSTRAINT name.
    assert len(re.findall(r"\bDEFAULT\b", script)) == 7
    assert len(re.findall(r"CONSTRAINT \w+ DEFAULT\b", script)) == 7
    assert len(re.findall(r"PRIMARY KEY", script)) == len(
        re.findall(r"CONSTRAINT \w+ PRIMARY KEY", script)
    )
    # SQL Server spellings only
    for word in ("TEXT", "TIMESTAMP", "BOOLEAN", "DOUBLE", "VARCHAR(max)", "IF NOT EXISTS etl"):
        assert not re.search(rf"(?<![\w(N]){re.escape(word)}\b", script), word
    assert script.rstrip().endswith("COMMIT;\n\nGO")


def test_postgres_script_is_guarded_and_transactional() -> None:
    script = (SQL_DIR / "postgresql.sql").read_text(encoding="utf-8")
    assert script.startswith("CREATE SCHEMA IF NOT EXISTS etl_state;\n\nBEGIN;\n")
    assert "CREATE TABLE IF NOT EXISTS etl_state.etl_xmin_state" in script
    assert "ADD COLUMN IF NOT EXISTS revision BIGINT DEFAULT 0 NOT NULL" in script
    assert "CREATE INDEX IF NOT EXISTS ix_etl_run_state_execution_date" in script
    assert script.rstrip().endswith("COMMIT;")


def test_offline_script_uses_configured_names() -> None:
    script = migrate.offline_sql("mssql", schema="state", xmin_table="cp", run_table="runs")
    assert "IF SCHEMA_ID(N'state') IS NULL" in script
    assert "CONSTRAINT pk_cp_source PRIMARY KEY" in script
    assert "CONSTRAINT df_cp_revision DEFAULT 0" in script
    assert "ix_runs_execution_date" in script
    assert "state.dpone_state_alembic_version" in script
    for batch in _batches(script):
        _assert_parsed(batch)


def test_create_tables_ddl_names_sql_server_defaults_too() -> None:
    """``create_tables()`` compiles through the same hook (dpone_state.ddl) as the migrations."""
    tables = build_tables(dialect_name="mssql")
    ddl = str(CreateTable(tables.xmin).compile(dialect=mssql.dialect()))
    assert "revision BIGINT NOT NULL CONSTRAINT df_etl_xmin_state_revision DEFAULT 0" in ddl
    assert len(re.findall(r"\bDEFAULT\b", ddl)) == len(re.findall(r"CONSTRAINT \w+ DEFAULT", ddl))
